// The JS-facing side of filter communication ports.
#include "filter_port_binding.h"

#include <memory>
#include <utility>

#include "addon_data.h"
#include "js_values.h"
#include "win/failure.h"
#include "win/filter_port.h"

namespace fltport {

namespace {

class FilterPortHandle : public Napi::ObjectWrap<FilterPortHandle> {
 public:
  static Napi::Function DefineClass(Napi::Env env) {
    return ObjectWrap<FilterPortHandle>::DefineClass(env, "FilterPortHandle",
                                                     {InstanceMethod<&FilterPortHandle::Close>("close")});
  }

  explicit FilterPortHandle(const Napi::CallbackInfo& info) : ObjectWrap<FilterPortHandle>(info) {}

  void Adopt(UniqueHandle port) { port_ = std::move(port); }

 private:
  // Closing a port handle does not wait on the kernel; a garbage-collected wrapper closes it in
  // its destructor through UniqueHandle.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    port_.Reset();
    return info.Env().Undefined();
  }

  UniqueHandle port_;
};

class ConnectJob : public CompletionQueue::Job {
 public:
  ConnectJob(Napi::Env env, ConnectRequest request, std::shared_ptr<CompletionQueue> completions)
      : deferred_(Napi::Promise::Deferred::New(env)),
        request_(std::move(request)),
        completions_(std::move(completions)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

  // Runs on a Windows thread-pool thread.
  static void CALLBACK Run(PTP_CALLBACK_INSTANCE, void* context) {
    std::unique_ptr<ConnectJob> job(static_cast<ConnectJob*>(context));
    job->result_ = ConnectFilterPort(job->request_, &job->port_);
    std::shared_ptr<CompletionQueue> completions = job->completions_;
    completions->Post(std::move(job), true);
  }

  void Reject(Napi::Env env, const Failure& failure) { deferred_.Reject(FailureToJs(env, failure).Value()); }

  void Settle(Napi::Env env) override {
    if (FAILED(result_)) return Reject(env, Failure::FromHResult("FilterConnectCommunicationPort", result_));
    Napi::Object wrapper = GetAddonData(env)->filterPortClass.New({});
    FilterPortHandle::Unwrap(wrapper)->Adopt(std::move(port_));
    deferred_.Resolve(wrapper);
  }

 private:
  Napi::Promise::Deferred deferred_;
  ConnectRequest request_;
  std::shared_ptr<CompletionQueue> completions_;
  HRESULT result_ = E_FAIL;
  UniqueHandle port_;
};

// filterConnect(name, context | null, syncHandle, inheritHandle): Promise<FilterPortHandle>
Napi::Value FilterConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ConnectRequest request;
  if (!ReadPortName(info[0], kMaxPortNameUnits, &request.name) ||
      !ReadOptionalBytes(info[1], "context", kMaxConnectionContextBytes, &request.context) ||
      !ReadBoolean(info[2], "syncHandle", &request.syncHandle) ||
      !ReadBoolean(info[3], "inheritHandle", &request.inheritHandle)) {
    return env.Undefined();
  }
  AddonData* data = GetAddonData(env);
  auto job = std::make_unique<ConnectJob>(env, std::move(request), data->completions);
  Napi::Promise promise = job->Promise();
  data->completions->KeepAlive(env);
  if (!TrySubmitThreadpoolCallback(&ConnectJob::Run, job.get(), nullptr)) {
    data->completions->LetGo(env);
    job->Reject(env, Failure::FromLastError("TrySubmitThreadpoolCallback"));
    return promise;
  }
  job.release();  // owned by the thread-pool callback now
  return promise;
}

}  // namespace

void InitFilterPort(Napi::Env env, Napi::Object exports) {
  GetAddonData(env)->filterPortClass = Napi::Persistent(FilterPortHandle::DefineClass(env));
  exports.Set("filterConnect", Napi::Function::New<FilterConnect>(env, "filterConnect"));
}

}  // namespace fltport
