#include "win/filter_manager.h"

#include <fltuser.h>

#include <algorithm>
#include <cstring>

#include "win/filter_port.h"
#include "win/unique_handle.h"

namespace fltport {

namespace {

// A first buffer that holds any one entry with names of ordinary length; fltlib says when an
// entry needs more (ERROR_INSUFFICIENT_BUFFER / ERROR_MORE_DATA with the size it needs, as
// fltmc relies on), and the buffer grows up to kMaxInformationBytes. The largest entry the
// filter manager can produce (three names of at most 255 and one of 1024 UTF-16 units plus
// the fixed part) is far below that bound, so reaching it means a fltlib that keeps asking.
constexpr DWORD kInitialInformationBytes = 1024;
constexpr DWORD kMaxInformationBytes = 1024 * 1024;

const HRESULT kNoMoreItems = HRESULT_FROM_WIN32(ERROR_NO_MORE_ITEMS);

// Wine marks its own PE modules with this text right after the DOS header. Wine's fltlib.dll
// exports every filter-manager function, but most are stubs that raise a non-continuable
// exception (the process ends) and the rest pretend to succeed: none of them is treated as
// present.
bool IsWineBuiltin(HMODULE module) {
  static constexpr char kMarker[] = "Wine builtin DLL";
  return std::memcmp(reinterpret_cast<const char*>(module) + 0x40, kMarker, sizeof(kMarker) - 1) == 0;
}

// The fltlib.dll the addon imports its port functions from (already loaded with it), or null
// when its management functions are not to be called.
HMODULE FltlibModule() {
  static const HMODULE module = [] {
    HMODULE loaded = GetModuleHandleW(L"fltlib.dll");
    return loaded != nullptr && IsWineBuiltin(loaded) ? nullptr : loaded;
  }();
  return module;
}

// Resolves fltlib's `name` into `*function` (declared type `Function`, from fltuser.h), or
// reports ERROR_PROC_NOT_FOUND named after it.
template <typename Function>
bool Resolve(const char* name, Function** function, Failure* failure) {
  HMODULE module = FltlibModule();
  FARPROC address = module == nullptr ? nullptr : GetProcAddress(module, name);
  if (address == nullptr) {
    *failure = Failure::FromWin32(name, ERROR_PROC_NOT_FOUND);
    return false;
  }
  *function = reinterpret_cast<Function*>(reinterpret_cast<void*>(address));
  return true;
}

// Fills `*buffer` through `call(data, bytes, &returned)`, growing it while fltlib says it is
// too small. On success the buffer holds the bytes fltlib says it returned (never more than
// it was given).
template <typename Call>
HRESULT CallGrowing(Call call, InformationBuffer* buffer) {
  DWORD bytes = kInitialInformationBytes;
  for (;;) {
    buffer->assign(bytes, 0);
    DWORD returned = 0;
    HRESULT hr = call(buffer->data(), bytes, &returned);
    if (SUCCEEDED(hr)) {
      buffer->resize(std::min(returned, bytes));
      return hr;
    }
    if (!IsBufferTooSmall(hr) || bytes == kMaxInformationBytes) return hr;
    bytes = std::min<DWORD>(std::max<DWORD>(returned, bytes * 2), kMaxInformationBytes);
  }
}

// A handle fltlib gave (an enumeration's, FilterCreate's) with the call that closes it.
class FltlibHandle {
 public:
  using Close = HRESULT WINAPI(HANDLE);
  explicit FltlibHandle(Close* close) : close_(close) {}
  FltlibHandle(const FltlibHandle&) = delete;
  FltlibHandle& operator=(const FltlibHandle&) = delete;
  ~FltlibHandle() {
    if (handle_ != INVALID_HANDLE_VALUE && handle_ != nullptr) close_(handle_);
  }
  HANDLE* Out() { return &handle_; }
  HANDLE Get() const { return handle_; }

 private:
  Close* close_;
  HANDLE handle_ = INVALID_HANDLE_VALUE;
};

// The three calls of one enumeration, resolved.
template <typename First, typename Next>
struct Enumeration {
  First* first = nullptr;
  Next* next = nullptr;
  FltlibHandle::Close* close = nullptr;
  const char* firstName;
  const char* nextName;
};

template <typename First, typename Next>
bool ResolveEnumeration(const char* firstName, const char* nextName, const char* closeName,
                        Enumeration<First, Next>* calls, Failure* failure) {
  calls->firstName = firstName;
  calls->nextName = nextName;
  return Resolve(firstName, &calls->first, failure) && Resolve(nextName, &calls->next, failure) &&
         Resolve(closeName, &calls->close, failure);
}

// One enumeration: `first(data, bytes, &returned, &handle)`, then `next(handle, data, bytes,
// &returned)` until ERROR_NO_MORE_ITEMS. Whether a failed first call (a buffer too small, say)
// can leave a handle open is not documented; fltlib is taken to return one only on success
// (unverified on Windows). Whether a FindNext that found the buffer too small moves on to the
// next entry is not documented either; fltmc retries it with a bigger buffer, as here.
template <typename First, typename Next, typename CallFirst, typename CallNext>
bool Enumerate(const Enumeration<First, Next>& calls, CallFirst callFirst, CallNext callNext,
               std::vector<InformationBuffer>* entries, Failure* failure) {
  FltlibHandle handle(calls.close);
  InformationBuffer entry;
  HRESULT hr = CallGrowing(
      [&](void* data, DWORD bytes, DWORD* returned) { return callFirst(data, bytes, returned, handle.Out()); }, &entry);
  const char* failedCall = calls.firstName;
  while (SUCCEEDED(hr)) {
    entries->push_back(std::move(entry));
    hr = CallGrowing([&](void* data, DWORD bytes, DWORD* returned) { return callNext(handle.Get(), data, bytes, returned); },
                     &entry);
    failedCall = calls.nextName;
  }
  if (hr == kNoMoreItems) return true;
  *failure = Failure::FromHResult(failedCall, hr);
  return false;
}

}  // namespace

bool FindFilters(uint32_t informationClass, std::vector<InformationBuffer>* entries, Failure* failure) {
  Enumeration<decltype(::FilterFindFirst), decltype(::FilterFindNext)> calls;
  if (!ResolveEnumeration("FilterFindFirst", "FilterFindNext", "FilterFindClose", &calls, failure)) return false;
  auto cls = static_cast<FILTER_INFORMATION_CLASS>(informationClass);
  return Enumerate(
      calls, [&](void* data, DWORD bytes, DWORD* returned, HANDLE* handle) { return calls.first(cls, data, bytes, returned, handle); },
      [&](HANDLE handle, void* data, DWORD bytes, DWORD* returned) { return calls.next(handle, cls, data, bytes, returned); },
      entries, failure);
}

bool FindInstances(const std::wstring& filterName, uint32_t informationClass, std::vector<InformationBuffer>* entries,
                   Failure* failure) {
  Enumeration<decltype(::FilterInstanceFindFirst), decltype(::FilterInstanceFindNext)> calls;
  if (!ResolveEnumeration("FilterInstanceFindFirst", "FilterInstanceFindNext", "FilterInstanceFindClose", &calls, failure)) {
    return false;
  }
  auto cls = static_cast<INSTANCE_INFORMATION_CLASS>(informationClass);
  return Enumerate(
      calls,
      [&](void* data, DWORD bytes, DWORD* returned, HANDLE* handle) {
        return calls.first(filterName.c_str(), cls, data, bytes, returned, handle);
      },
      [&](HANDLE handle, void* data, DWORD bytes, DWORD* returned) { return calls.next(handle, cls, data, bytes, returned); },
      entries, failure);
}

bool FindVolumes(uint32_t informationClass, std::vector<InformationBuffer>* entries, Failure* failure) {
  Enumeration<decltype(::FilterVolumeFindFirst), decltype(::FilterVolumeFindNext)> calls;
  if (!ResolveEnumeration("FilterVolumeFindFirst", "FilterVolumeFindNext", "FilterVolumeFindClose", &calls, failure)) {
    return false;
  }
  auto cls = static_cast<FILTER_VOLUME_INFORMATION_CLASS>(informationClass);
  return Enumerate(
      calls, [&](void* data, DWORD bytes, DWORD* returned, HANDLE* handle) { return calls.first(cls, data, bytes, returned, handle); },
      [&](HANDLE handle, void* data, DWORD bytes, DWORD* returned) { return calls.next(handle, cls, data, bytes, returned); },
      entries, failure);
}

bool FindVolumeInstances(const std::wstring& volumeName, uint32_t informationClass,
                         std::vector<InformationBuffer>* entries, Failure* failure) {
  Enumeration<decltype(::FilterVolumeInstanceFindFirst), decltype(::FilterVolumeInstanceFindNext)> calls;
  if (!ResolveEnumeration("FilterVolumeInstanceFindFirst", "FilterVolumeInstanceFindNext",
                          "FilterVolumeInstanceFindClose", &calls, failure)) {
    return false;
  }
  auto cls = static_cast<INSTANCE_INFORMATION_CLASS>(informationClass);
  return Enumerate(
      calls,
      [&](void* data, DWORD bytes, DWORD* returned, HANDLE* handle) {
        return calls.first(volumeName.c_str(), cls, data, bytes, returned, handle);
      },
      [&](HANDLE handle, void* data, DWORD bytes, DWORD* returned) { return calls.next(handle, cls, data, bytes, returned); },
      entries, failure);
}

bool GetFilterInformation(const std::wstring& filterName, uint32_t informationClass, InformationBuffer* information,
                          Failure* failure) {
  decltype(::FilterCreate)* create = nullptr;
  decltype(::FilterGetInformation)* get = nullptr;
  FltlibHandle::Close* close = nullptr;
  if (!Resolve("FilterCreate", &create, failure) || !Resolve("FilterGetInformation", &get, failure) ||
      !Resolve("FilterClose", &close, failure)) {
    return false;
  }
  FltlibHandle filter(close);
  HRESULT hr = create(filterName.c_str(), filter.Out());
  if (FAILED(hr)) {
    *failure = Failure::FromHResult("FilterCreate", hr);
    return false;
  }
  auto cls = static_cast<FILTER_INFORMATION_CLASS>(informationClass);
  hr = CallGrowing(
      [&](void* data, DWORD bytes, DWORD* returned) { return get(filter.Get(), cls, data, bytes, returned); }, information);
  if (SUCCEEDED(hr)) return true;
  *failure = Failure::FromHResult("FilterGetInformation", hr);
  return false;
}

namespace {

// FilterLoad and FilterUnload need SeLoadDriverPrivilege enabled, and an elevated
// administrator holds it disabled (fltmc enables it before it calls them). While one of these
// lives, the pool thread impersonates the process's own token with the privilege enabled: the
// process token stays as it was, and the kernel's privilege check sees the thread's token
// (unverified on Windows). Without the privilege (not elevated) nothing is enabled and the call
// itself fails with ERROR_PRIVILEGE_NOT_HELD.
class LoadDriverPrivilege {
 public:
  LoadDriverPrivilege() {
    if (!ImpersonateSelf(SecurityImpersonation)) return;
    impersonating_ = true;
    HANDLE token = nullptr;
    if (!OpenThreadToken(GetCurrentThread(), TOKEN_ADJUST_PRIVILEGES, TRUE, &token)) return;
    UniqueHandle owned(token);
    TOKEN_PRIVILEGES privileges{};
    privileges.PrivilegeCount = 1;
    privileges.Privileges[0].Attributes = SE_PRIVILEGE_ENABLED;
    if (LookupPrivilegeValueW(nullptr, SE_LOAD_DRIVER_NAME, &privileges.Privileges[0].Luid)) {
      AdjustTokenPrivileges(owned.Get(), FALSE, &privileges, 0, nullptr, nullptr);
    }
  }
  LoadDriverPrivilege(const LoadDriverPrivilege&) = delete;
  LoadDriverPrivilege& operator=(const LoadDriverPrivilege&) = delete;
  ~LoadDriverPrivilege() {
    if (impersonating_) RevertToSelf();
  }

 private:
  bool impersonating_ = false;
};

// A call that takes the filter's name only and needs SeLoadDriverPrivilege (FilterLoad,
// FilterUnload).
bool CallWithLoadDriverPrivilege(const char* name, const std::wstring& filterName, Failure* failure) {
  HRESULT(WINAPI * function)(LPCWSTR) = nullptr;
  if (!Resolve(name, &function, failure)) return false;
  HRESULT hr;
  {
    LoadDriverPrivilege privilege;
    hr = function(filterName.c_str());
  }
  if (SUCCEEDED(hr)) return true;
  *failure = Failure::FromHResult(name, hr);
  return false;
}

const wchar_t* OptionalName(const std::wstring& name) { return name.empty() ? nullptr : name.c_str(); }

}  // namespace

bool LoadFilter(const std::wstring& filterName, Failure* failure) { return CallWithLoadDriverPrivilege("FilterLoad", filterName, failure); }

bool UnloadFilter(const std::wstring& filterName, Failure* failure) {
  return CallWithLoadDriverPrivilege("FilterUnload", filterName, failure);
}

bool Attach(const AttachRequest& request, std::wstring* createdInstanceName, Failure* failure) {
  // The created name is at most INSTANCE_NAME_MAX_CHARS units; the size is passed in bytes.
  wchar_t created[kMaxInstanceNameUnits + 1] = {};
  const DWORD createdBytes = sizeof(created) - sizeof(wchar_t);
  HRESULT hr;
  const char* call;
  if (request.altitude.empty()) {
    decltype(::FilterAttach)* attach = nullptr;
    call = "FilterAttach";
    if (!Resolve(call, &attach, failure)) return false;
    hr = attach(request.filterName.c_str(), request.volumeName.c_str(), OptionalName(request.instanceName), createdBytes,
                created);
  } else {
    decltype(::FilterAttachAtAltitude)* attach = nullptr;
    call = "FilterAttachAtAltitude";
    if (!Resolve(call, &attach, failure)) return false;
    hr = attach(request.filterName.c_str(), request.volumeName.c_str(), request.altitude.c_str(),
                OptionalName(request.instanceName), createdBytes, created);
  }
  if (FAILED(hr)) {
    *failure = Failure::FromHResult(call, hr);
    return false;
  }
  // The last unit stays NUL whatever fltlib wrote.
  createdInstanceName->assign(created, wcsnlen(created, kMaxInstanceNameUnits));
  return true;
}

bool Detach(const std::wstring& filterName, const std::wstring& volumeName, const std::wstring& instanceName,
            Failure* failure) {
  decltype(::FilterDetach)* detach = nullptr;
  if (!Resolve("FilterDetach", &detach, failure)) return false;
  HRESULT hr = detach(filterName.c_str(), volumeName.c_str(), OptionalName(instanceName));
  if (SUCCEEDED(hr)) return true;
  *failure = Failure::FromHResult("FilterDetach", hr);
  return false;
}

bool GetDosName(const std::wstring& volumeName, std::wstring* dosName, Failure* failure) {
  decltype(::FilterGetDosName)* get = nullptr;
  if (!Resolve("FilterGetDosName", &get, failure)) return false;
  // FilterGetDosName says ERROR_INSUFFICIENT_BUFFER without the size it needs: the buffer
  // doubles up to the longest path a name can be (32767 units).
  for (DWORD units = MAX_PATH;; units = std::min<DWORD>(units * 2, 32768)) {
    std::wstring buffer(units, L'\0');
    HRESULT hr = get(volumeName.c_str(), buffer.data(), units);
    if (SUCCEEDED(hr)) {
      buffer[units - 1] = L'\0';
      dosName->assign(buffer.c_str());
      return true;
    }
    if (!IsBufferTooSmall(hr) || units == 32768) {
      *failure = Failure::FromHResult("FilterGetDosName", hr);
      return false;
    }
  }
}

}  // namespace fltport
