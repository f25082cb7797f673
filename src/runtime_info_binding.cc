// runtimeInfo(): what this process runs on, for diagnostics and for tests that must tell Wine
// from Windows.
#include "runtime_info_binding.h"

#include "win/failure.h"
#include "win/filter_port.h"
#include "win/ntdll.h"

namespace fltport {

namespace {

// The LPC calls fltport binds; Wine lacks some of them.
constexpr const char* kLpcEntryPoints[] = {
    "NtConnectPort",         "NtSecureConnectPort",    "NtRequestWaitReplyPort", "NtRequestPort",
    "NtCreatePort",          "NtListenPort",           "NtAcceptConnectPort",    "NtCompleteConnectPort",
    "NtReplyWaitReceivePort", "NtReplyWaitReceivePortEx", "NtReplyPort",       "NtClose",
};

Napi::Value RuntimeInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object result = Napi::Object::New(env);
  std::string wine = WineVersion();
  result.Set("wineVersion", wine.empty() ? env.Null() : Napi::String::New(env, wine));
  std::wstring fltlib = LoadedFltlibPath();
  result.Set("fltlibPath", fltlib.empty() ? env.Null() : Napi::String::New(env, Utf8FromWide(fltlib.data(), fltlib.size())));
  Napi::Object entryPoints = Napi::Object::New(env);
  for (const char* name : kLpcEntryPoints) entryPoints.Set(name, Napi::Boolean::New(env, NtdllExport(name) != nullptr));
  result.Set("ntdllEntryPoints", entryPoints);
  return result;
}

}  // namespace

void InitRuntimeInfo(Napi::Env env, Napi::Object exports) {
  exports.Set("runtimeInfo", Napi::Function::New<RuntimeInfo>(env, "runtimeInfo"));
}

}  // namespace fltport
