#include "win/failure.h"

#include <utility>

namespace fltport {

Failure Failure::FromHResult(const char* syscall, HRESULT hr) {
  Failure failure;
  failure.syscall = syscall;
  failure.kind = CodeKind::kHResult;
  failure.code = static_cast<uint32_t>(hr);
  return failure;
}

Failure Failure::FromNtStatus(const char* syscall, LONG status) {
  Failure failure;
  failure.syscall = syscall;
  failure.kind = CodeKind::kNtStatus;
  failure.code = static_cast<uint32_t>(status);
  return failure;
}

Failure Failure::FromWin32(const char* syscall, DWORD error) {
  return FromHResult(syscall, HRESULT_FROM_WIN32(error));
}

Failure Failure::FromLastError(const char* syscall) { return FromWin32(syscall, GetLastError()); }

Failure Failure::Fltport(const char* syscall, const char* fltportCode, std::string detail) {
  Failure failure;
  failure.syscall = syscall;
  failure.fltportCode = fltportCode;
  failure.detail = std::move(detail);
  return failure;
}

std::string Utf8FromWide(const wchar_t* text, size_t length) {
  if (length == 0) return {};
  int bytes = WideCharToMultiByte(CP_UTF8, 0, text, static_cast<int>(length), nullptr, 0, nullptr, nullptr);
  std::string out(static_cast<size_t>(bytes), '\0');
  WideCharToMultiByte(CP_UTF8, 0, text, static_cast<int>(length), out.data(), bytes, nullptr, nullptr);
  return out;
}

namespace {

std::string FormatFrom(DWORD flags, HMODULE module, DWORD code) {
  wchar_t* buffer = nullptr;
  DWORD length = FormatMessageW(flags | FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_IGNORE_INSERTS, module, code,
                                0, reinterpret_cast<wchar_t*>(&buffer), 0, nullptr);
  if (length == 0 || buffer == nullptr) return {};
  while (length > 0 && (buffer[length - 1] == L'\r' || buffer[length - 1] == L'\n' || buffer[length - 1] == L' ')) {
    --length;
  }
  std::string text = Utf8FromWide(buffer, length);
  LocalFree(buffer);
  return text;
}

}  // namespace

std::string SystemMessage(CodeKind kind, uint32_t code) {
  if (kind == CodeKind::kNtStatus) {
    return FormatFrom(FORMAT_MESSAGE_FROM_HMODULE, GetModuleHandleW(L"ntdll.dll"), code);
  }
  std::string text = FormatFrom(FORMAT_MESSAGE_FROM_SYSTEM, nullptr, code);
  // Filter-manager HRESULTs (facility 0x1F) have their text in fltlib.dll's message table.
  if (text.empty()) text = FormatFrom(FORMAT_MESSAGE_FROM_HMODULE, GetModuleHandleW(L"fltlib.dll"), code);
  return text;
}

}  // namespace fltport
