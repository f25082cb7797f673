#include "win/ntdll.h"

namespace fltport {

FARPROC NtdllExport(const char* name) {
  HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
  return ntdll == nullptr ? nullptr : GetProcAddress(ntdll, name);
}

std::string WineVersion() {
  using WineGetVersion = const char*(__cdecl*)();
  FARPROC address = NtdllExport("wine_get_version");
  if (address == nullptr) return {};
  const char* version = reinterpret_cast<WineGetVersion>(reinterpret_cast<void*>(address))();
  return version == nullptr ? std::string() : std::string(version);
}

}  // namespace fltport
