// Plain C++ over fltlib.dll's communication-port calls; knows nothing of Node-API.
#pragma once

#include <windows.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "win/unique_handle.h"

namespace fltport {

// fltlib carries the context in an extended attribute whose value length is a USHORT and whose
// own header takes 0x17 bytes, so 0xFFE8 is the largest context that can reach the kernel.
constexpr size_t kMaxConnectionContextBytes = 0xFFE8;
// Port names are UNICODE_STRINGs: at most 32767 UTF-16 units.
constexpr size_t kMaxPortNameUnits = 32767;
// sizeof(FILTER_MESSAGE_HEADER) and sizeof(FILTER_REPLY_HEADER) on every 64-bit Windows.
constexpr DWORD kMessageHeaderBytes = 16;
constexpr DWORD kReplyHeaderBytes = 16;
// Largest read buffer, send output and reply payload accepted: far above what a minifilter
// exchanges, low enough that a wrong number cannot make the process allocate gigabytes.
constexpr uint32_t kMaxPayloadBytes = 64 * 1024 * 1024;

struct ConnectRequest {
  std::wstring name;
  std::vector<uint8_t> context;
  bool syncHandle = false;
  bool inheritHandle = false;
};

// A message as FilterGetMessage delivered it: FILTER_MESSAGE_HEADER + payload.
struct ReceivedMessage {
  // The one place where what the kernel says about a completed read is trusted: `error` and
  // `bytes` are the completion's status and byte count, `buffer` the `capacity` bytes the read
  // went into. S_OK when `message` now holds the message; otherwise the failure the read stands
  // for (see the .cc): a count below a header or beyond the buffer is a failure, never a crash.
  static HRESULT FromRead(ULONG error, ULONG bytes, const uint8_t* buffer, DWORD capacity,
                          ReceivedMessage* message) noexcept;

  uint64_t id = 0;
  // FILTER_MESSAGE_HEADER.ReplyLength as user mode sees it (0: no reply expected), capped at
  // kReplyHeaderBytes + kMaxPayloadBytes: more than any reply fltport sends.
  uint32_t replyLength = 0;
  std::vector<uint8_t> payload;
};

// A FilterGetMessage failure that a bigger buffer may cure: the message is larger than the read.
bool IsBufferTooSmall(HRESULT hr);
// A FilterGetMessage failure that concerns one message only (the port still works).
bool IsMessageFailure(HRESULT hr);

// One overlapped FilterGetMessage. The completion arrives on a thread-pool thread.
class ReadOperation {
 public:
  virtual ~ReadOperation() = default;
  // Runs on a thread-pool thread: must not throw.
  virtual void ReadCompleted(ULONG error, ULONG bytes) noexcept = 0;

 private:
  friend class FilterConnection;
  struct Overlapped : OVERLAPPED {
    ReadOperation* owner;
  };
  Overlapped overlapped_{};
};

// An open client port and the thread-pool I/O object its reads complete through. Shared by
// everything in flight on it, so the handle closes only after the last call that uses it.
class FilterConnection {
 public:
  // FilterConnectCommunicationPort.
  static HRESULT Connect(const ConnectRequest& request, std::shared_ptr<FilterConnection>* connection);
  ~FilterConnection();
  FilterConnection(const FilterConnection&) = delete;
  FilterConnection& operator=(const FilterConnection&) = delete;

  bool Overlapped() const { return io_ != nullptr; }

  // Starts FilterGetMessage into `buffer`; S_OK means operation->ReadCompleted will be called
  // exactly once (also after a synchronous warning such as ERROR_MORE_DATA, which then comes
  // with the completion), anything else is the synchronous failure and no completion follows.
  HRESULT StartRead(ReadOperation* operation, uint8_t* buffer, DWORD bytes);
  void CancelRead(ReadOperation* operation);
  void CancelAllReads();

  // FilterSendMessage: blocks until the minifilter's MessageNotify returns; `*returned` is at
  // most `outputBytes`.
  HRESULT Send(const uint8_t* input, DWORD inputBytes, uint8_t* output, DWORD outputBytes, DWORD* returned);
  // FilterReplyMessage with `reply` = FILTER_REPLY_HEADER + payload, sent as exactly `bytes`.
  HRESULT Reply(uint8_t* reply, DWORD bytes);

 private:
  explicit FilterConnection(UniqueHandle port) : port_(std::move(port)) {}
  static void CALLBACK OnIoCompleted(PTP_CALLBACK_INSTANCE, void*, void* overlapped, ULONG result, ULONG_PTR bytes,
                                     PTP_IO) noexcept;

  UniqueHandle port_;
  PTP_IO io_ = nullptr;
};

// The full path of the fltlib.dll this process loaded (the emulator's, the system's or Wine's).
std::wstring LoadedFltlibPath();

}  // namespace fltport
