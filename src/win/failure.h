// A failed Windows call, as plain data that any thread can carry to the JS thread.
#pragma once

#include <windows.h>

#include <cstdint>
#include <string>

namespace fltport {

enum class CodeKind { kHResult, kNtStatus };

struct Failure {
  const char* syscall = "";
  CodeKind kind = CodeKind::kHResult;
  uint32_t code = 0;
  // Set instead of a code when the call could not be made at all (e.g. a missing entry point).
  const char* fltportCode = nullptr;
  std::string detail;

  static Failure FromHResult(const char* syscall, HRESULT hr);
  static Failure FromNtStatus(const char* syscall, LONG status);
  static Failure FromLastError(const char* syscall);
  static Failure FromWin32(const char* syscall, DWORD error);
  static Failure Fltport(const char* syscall, const char* fltportCode, std::string detail);
};

// The system's text for a code (FormatMessage, also from fltlib's and ntdll's message tables),
// UTF-8 without the trailing line break; empty when the system has none.
std::string SystemMessage(CodeKind kind, uint32_t code);

std::string Utf8FromWide(const wchar_t* text, size_t length);

}  // namespace fltport
