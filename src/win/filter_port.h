// Plain C++ over fltlib.dll's communication-port calls; knows nothing of Node-API.
#pragma once

#include <windows.h>

#include <cstdint>
#include <string>
#include <vector>

#include "win/unique_handle.h"

namespace fltport {

// fltlib carries the context in an extended attribute whose value length is a USHORT and whose
// own header takes 0x17 bytes, so 0xFFE8 is the largest context that can reach the kernel.
constexpr size_t kMaxConnectionContextBytes = 0xFFE8;
// Port names are UNICODE_STRINGs: at most 32767 UTF-16 units.
constexpr size_t kMaxPortNameUnits = 32767;

struct ConnectRequest {
  std::wstring name;
  std::vector<uint8_t> context;
  bool syncHandle = false;
  bool inheritHandle = false;
};

// FilterConnectCommunicationPort; on success `port` owns the new handle.
HRESULT ConnectFilterPort(const ConnectRequest& request, UniqueHandle* port);

// The full path of the fltlib.dll this process loaded (the emulator's, the system's or Wine's).
std::wstring LoadedFltlibPath();

}  // namespace fltport
