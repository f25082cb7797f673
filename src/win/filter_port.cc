#include "win/filter_port.h"

#include <fltuser.h>

#ifndef FLT_PORT_FLAG_SYNC_HANDLE
#define FLT_PORT_FLAG_SYNC_HANDLE 0x00000001
#endif

namespace fltport {

HRESULT ConnectFilterPort(const ConnectRequest& request, UniqueHandle* port) {
  SECURITY_ATTRIBUTES inheritable{sizeof(SECURITY_ATTRIBUTES), nullptr, TRUE};
  HANDLE handle = INVALID_HANDLE_VALUE;
  HRESULT hr = FilterConnectCommunicationPort(
      request.name.c_str(), request.syncHandle ? FLT_PORT_FLAG_SYNC_HANDLE : 0,
      request.context.empty() ? nullptr : request.context.data(), static_cast<WORD>(request.context.size()),
      request.inheritHandle ? &inheritable : nullptr, &handle);
  if (SUCCEEDED(hr)) port->Reset(handle);
  return hr;
}

std::wstring LoadedFltlibPath() {
  HMODULE module = GetModuleHandleW(L"fltlib.dll");
  if (module == nullptr) return {};
  wchar_t path[MAX_PATH * 4];
  DWORD length = GetModuleFileNameW(module, path, static_cast<DWORD>(sizeof(path) / sizeof(path[0])));
  return std::wstring(path, length);
}

}  // namespace fltport
