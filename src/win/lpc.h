// Plain C++ over ntdll's LPC port calls; knows nothing of Node-API. Messages cross this layer as
// whole PORT_MESSAGEs (header + data): lib/port-message.ts encodes and decodes them, this layer
// checks that their lengths are consistent before the kernel reads them.
//
// Every ntdll entry point is resolved when first needed (win/ntdll.h): Wine exports only some of
// them, and a static import would stop the addon from loading at all.
#pragma once

#include <windows.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "win/failure.h"
#include "win/srw_mutex.h"

namespace fltport {

// sizeof(PORT_MESSAGE) on 64-bit Windows (24 on x86, which fltport does not build for).
constexpr size_t kPortMessageBytes = 40;
// PORT_MAXIMUM_MESSAGE_LENGTH on 64-bit: the largest message, header included.
constexpr size_t kMaxPortMessageLength = 512;
constexpr size_t kMaxPortPayloadBytes = kMaxPortMessageLength - kPortMessageBytes;
// LPC_MAX_CONNECTION_INFO_SIZE: 16 * sizeof(ULONG_PTR).
constexpr size_t kMaxLpcConnectionInfoBytes = 16 * sizeof(ULONG_PTR);
// Receive buffers hold the largest thing the kernel delivers: a connection request carrying the
// largest connection info (PORT_TOTAL_MAXIMUM_MESSAGE_LENGTH, rounded up to 16 as ntdll does).
constexpr size_t kPortReceiveBytes = (kMaxPortMessageLength + kPortMessageBytes + kMaxLpcConnectionInfoBytes + 15) & ~size_t{15};
// A shared view is a pagefile-backed section: 1 GiB is far above any sane LPC transfer and keeps
// a wrong number from committing the machine's memory.
constexpr size_t kMaxLpcViewBytes = size_t{1} << 30;
// Port names are UNICODE_STRINGs: at most 32767 UTF-16 units.
constexpr size_t kMaxLpcPortNameUnits = 32767;

// PORT_MESSAGE, x64 layout (phnt ntlpcapi.h). The unions are flattened into the members
// fltport reads or writes.
struct PortMessageHeader {
  uint16_t dataLength;
  uint16_t totalLength;
  uint16_t type;
  uint16_t dataInfoOffset;
  HANDLE uniqueProcess;
  HANDLE uniqueThread;
  ULONG messageId;
  SIZE_T clientViewSizeOrCallbackId;
};
static_assert(sizeof(PortMessageHeader) == kPortMessageBytes, "PORT_MESSAGE must be 40 bytes on 64-bit Windows");

// Shared memory mapped into this process for a port. Copies go through
// ReadProcessMemory/WriteProcessMemory on this process: if the kernel unmapped the view (the
// peer tore the port down), the copy fails with an error instead of crashing the process.
class LpcView {
 public:
  LpcView() = default;
  LpcView(void* base, size_t bytes) : base_(static_cast<uint8_t*>(base)), bytes_(bytes) {}
  size_t Bytes() const { return base_ == nullptr ? 0 : bytes_; }
  // Callers check offset + length <= Bytes().
  bool Read(size_t offset, uint8_t* out, size_t length, Failure* failure) const;
  bool Write(size_t offset, const uint8_t* data, size_t length, Failure* failure) const;

 private:
  uint8_t* base_ = nullptr;
  size_t bytes_ = 0;
};

// An LPC port handle, closed with NtClose.
class PortHandle {
 public:
  using CloseFunction = LONG(NTAPI*)(HANDLE);
  PortHandle() = default;
  PortHandle(HANDLE handle, CloseFunction close) : handle_(handle), close_(close) {}
  PortHandle(const PortHandle&) = delete;
  PortHandle& operator=(const PortHandle&) = delete;
  PortHandle(PortHandle&& other) noexcept : handle_(other.handle_), close_(other.close_) { other.handle_ = nullptr; }
  PortHandle& operator=(PortHandle&& other) noexcept;
  ~PortHandle() { Reset(); }

  HANDLE Get() const { return handle_; }
  void Reset();

 private:
  HANDLE handle_ = nullptr;
  CloseFunction close_ = nullptr;
};

enum class ImpersonationLevel : uint8_t { kAnonymous = 0, kIdentification = 1, kImpersonation = 2, kDelegation = 3 };

struct LpcConnectRequest {
  std::wstring name;
  std::vector<uint8_t> connectionInfo;
  ImpersonationLevel impersonation = ImpersonationLevel::kImpersonation;
  bool dynamicTracking = true;
  bool effectiveOnly = false;
  // Non-empty (a SID from ParseSid): NtSecureConnectPort, which fails unless the server runs
  // as this SID.
  std::vector<uint8_t> serverSid;
  // Non-zero: a client view (PORT_VIEW) of this many bytes.
  size_t viewBytes = 0;
};

// A connected client port. Shared by every call in flight on it: the handle closes after the
// last of them returns, never while another thread may still pass it to the kernel.
class LpcClient {
 public:
  // NtConnectPort / NtSecureConnectPort; blocks until the server accepts or refuses.
  static bool Connect(const LpcConnectRequest& request, std::shared_ptr<LpcClient>* client, Failure* failure);

  // The largest message the port takes, header included (NtConnectPort's MaxMessageLength).
  size_t MaxMessageLength() const { return maxMessageLength_; }
  const std::vector<uint8_t>& ServerConnectionInfo() const { return serverInfo_; }
  const LpcView& View() const { return view_; }
  const LpcView& ServerView() const { return serverView_; }

  // NtRequestWaitReplyPort: `message` is a whole PORT_MESSAGE; `reply` receives the whole reply.
  bool Request(std::vector<uint8_t> message, std::vector<uint8_t>* reply, Failure* failure);
  // NtRequestPort: a datagram.
  bool Post(std::vector<uint8_t> message, Failure* failure);

 private:
  LpcClient() = default;

  PortHandle port_;
  size_t maxMessageLength_ = 0;
  std::vector<uint8_t> serverInfo_;
  LpcView view_;
  LpcView serverView_;
};

// One message taken off a server port by its receiving thread.
struct LpcReceived {
  // The PortContext of the communication port it came through: a connection id, 0 for none.
  uint64_t connectionId = 0;
  std::vector<uint8_t> message;
};

// What a server port's receiving thread reports. Called on that thread.
class LpcServerListener {
 public:
  virtual ~LpcServerListener() = default;
  virtual void Received(LpcReceived received) = 0;
  // Last call: the thread has ended (stopped, or the wait failed with `failure`).
  virtual void Ended(const Failure* failure) = 0;
};

struct LpcAccepted {
  uint64_t connectionId = 0;
  LpcView view;        // the server's own section, when accept asked for one
  LpcView clientView;  // the client's section as mapped into this process
};

// A named connection port and the dedicated thread blocked in NtReplyWaitReceivePortEx on it
// (a long wait per port has no place on shared pool threads).
class LpcServer : public std::enable_shared_from_this<LpcServer> {
 public:
  // NtCreatePort. Both lengths are what NtCreatePort takes (message length with the header).
  static bool Create(const std::wstring& name, ULONG maxConnectionInfoLength, ULONG maxMessageLength,
                     std::shared_ptr<LpcServer>* server, Failure* failure);
  LpcServer(const LpcServer&) = delete;
  LpcServer& operator=(const LpcServer&) = delete;

  // Starts the receiving thread; the listener hears of every message until Ended().
  bool Start(std::shared_ptr<LpcServerListener> listener, Failure* failure);
  // Closes every connection now (each handle once the calls in flight on it returned, which
  // unmaps its views: callers stop using them first) and asks the thread to end. Within one
  // poll interval the thread refuses the connection requests still unanswered, closes the
  // port and calls Ended(). Accept, Complete and Reply fail with ERR_FLTPORT_CLOSED from now on.
  void Stop();

  // NtAcceptConnectPort for a connection request the thread received. `message` is that
  // request's header with the server's connection info as data.
  bool Accept(std::vector<uint8_t> message, size_t viewBytes, LpcAccepted* accepted, Failure* failure);
  bool Refuse(std::vector<uint8_t> message, Failure* failure);
  // NtCompleteConnectPort: lets the accepted client's NtConnectPort return.
  bool Complete(uint64_t connectionId, Failure* failure);
  // NtReplyPort on the connection's communication port.
  bool Reply(uint64_t connectionId, std::vector<uint8_t> message, Failure* failure);
  void CloseConnection(uint64_t connectionId);

  size_t MaxMessageLength() const { return maxMessageLength_; }

 private:
  struct Connection;
  using ReceiveFunction = LONG(NTAPI*)(HANDLE, PVOID*, PVOID, PVOID, PLARGE_INTEGER);

  LpcServer() = default;
  static DWORD WINAPI ThreadMain(void* context);
  void Receive() noexcept;
  // False when the wait failed (`failure` says how); true once stopped.
  bool ReceiveUntilStopped(Failure* failure);
  void Shutdown(const Failure* failure) noexcept;
  // Takes the connection request that `message` answers out of the table, so that exactly one
  // of accept, refuse and shutdown answers it.
  bool TakePending(const std::vector<uint8_t>& message, Failure* failure);
  // NtAcceptConnectPort for a taken request. `answered` tells whether the kernel call went
  // through (the client has its answer even when a later step failed).
  bool AcceptTaken(const std::vector<uint8_t>& message, size_t viewBytes, LpcAccepted* accepted, Failure* failure,
                   bool* answered);
  bool RefuseTaken(const std::vector<uint8_t>& message, Failure* failure) noexcept;
  // The receiving thread took an LPC_PORT_CLOSED for this connection.
  void ClientClosed(uint64_t connectionId);
  // Closes a connection; one that was accepted but never completed is completed first, so that
  // its client's NtConnectPort returns instead of waiting for ever.
  static void Drop(std::shared_ptr<Connection> connection);

  PortHandle port_;
  PortHandle::CloseFunction close_ = nullptr;
  ReceiveFunction receive_ = nullptr;
  size_t maxMessageLength_ = 0;
  std::shared_ptr<LpcServerListener> listener_;
  std::atomic<bool> stopping_{false};

  SrwMutex mutex_;
  // Connection requests received and not yet answered, by MessageId.
  std::map<ULONG, std::vector<uint8_t>> pending_;
  std::map<uint64_t, std::shared_ptr<Connection>> connections_;
  // Connections inside NtAcceptConnectPort, and those of them whose client closed meanwhile.
  std::set<uint64_t> accepting_;
  std::set<uint64_t> closedWhileAccepting_;
  uint64_t nextConnectionId_ = 1;
};

// A SID in string form ("S-1-5-18", or an SDDL alias such as "SY") as bytes for
// LpcConnectRequest::serverSid (ConvertStringSidToSidW); false if invalid.
bool ParseSid(const std::wstring& text, std::vector<uint8_t>* sid);

// Whether `message` is a well-formed PORT_MESSAGE of at most `maxLength` bytes: TotalLength is
// its size and DataLength counts the bytes after the header. If not, `problem` says why.
bool CheckPortMessage(const std::vector<uint8_t>& message, size_t maxLength, std::string* problem);

// The first of `names` this ntdll does not export, as a missing-entry-point failure.
bool RequireNtdll(const char* const* names, size_t count, Failure* failure);

}  // namespace fltport
