// ntdll.dll entry points resolved at run time. Several are undocumented and Wine lacks some
// (NtReplyPort, NtRequestPort, every NtAlpc*): a static import of any of them would stop the
// addon from loading at all, so callers ask for each one when it is first needed.
#pragma once

#include <windows.h>

#include <string>

#include "win/failure.h"

namespace fltport {

// The address of an ntdll export, or nullptr.
FARPROC NtdllExport(const char* name);

// Resolves `name` into `*function`, or describes the missing entry point in `*failure`.
template <typename Function>
bool ResolveNtdll(const char* name, Function* function, Failure* failure) {
  FARPROC address = NtdllExport(name);
  if (address == nullptr) {
    *failure = Failure::Fltport(name, "ERR_FLTPORT_MISSING_ENTRY_POINT",
                                std::string("ntdll.dll does not export ") + name + " on this system");
    return false;
  }
  *function = reinterpret_cast<Function>(reinterpret_cast<void*>(address));
  return true;
}

// Wine's version when running under Wine (ntdll exports wine_get_version there), else empty.
std::string WineVersion();

}  // namespace fltport
