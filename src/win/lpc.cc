#include "win/lpc.h"

#include <sddl.h>
#include <winternl.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <utility>

#include "win/ntdll.h"
#include "win/unique_handle.h"

namespace fltport {

namespace {

constexpr uint16_t kLpcPortClosed = 5;
constexpr uint16_t kLpcConnectionRequest = 10;
// Message types live in the low byte of PORT_MESSAGE.Type; the high byte carries flags
// (LPC_KERNELMODE_MESSAGE and friends).
constexpr uint16_t kLpcTypeMask = 0x00FF;
// How long the receiving thread waits before it looks at the stop flag again. Closing a handle
// another thread is blocked on does not reliably wake it, and the handle value could be reused
// under it, so the thread polls and closes the port itself.
constexpr LONGLONG kReceivePoll100ns = 250 * 10000;

// PORT_VIEW and REMOTE_PORT_VIEW, x64 layout (phnt ntlpcapi.h).
struct PortView {
  ULONG length;
  HANDLE sectionHandle;
  ULONG sectionOffset;
  SIZE_T viewSize;
  PVOID viewBase;
  PVOID viewRemoteBase;
};
struct RemotePortView {
  ULONG length;
  SIZE_T viewSize;
  PVOID viewBase;
};
static_assert(sizeof(PortView) == 48 && sizeof(RemotePortView) == 24, "x64 PORT_VIEW layouts");

using NtCloseFn = LONG(NTAPI*)(HANDLE);
using NtConnectPortFn = LONG(NTAPI*)(PHANDLE, PUNICODE_STRING, PSECURITY_QUALITY_OF_SERVICE, PortView*,
                                     RemotePortView*, PULONG, PVOID, PULONG);
using NtSecureConnectPortFn = LONG(NTAPI*)(PHANDLE, PUNICODE_STRING, PSECURITY_QUALITY_OF_SERVICE, PortView*, PSID,
                                           RemotePortView*, PULONG, PVOID, PULONG);
using NtRequestWaitReplyPortFn = LONG(NTAPI*)(HANDLE, PVOID, PVOID);
using NtRequestPortFn = LONG(NTAPI*)(HANDLE, PVOID);
using NtCreatePortFn = LONG(NTAPI*)(PHANDLE, POBJECT_ATTRIBUTES, ULONG, ULONG, ULONG);
using NtAcceptConnectPortFn = LONG(NTAPI*)(PHANDLE, PVOID, PVOID, BOOLEAN, PortView*, RemotePortView*);
using NtCompleteConnectPortFn = LONG(NTAPI*)(HANDLE);
using NtReplyPortFn = LONG(NTAPI*)(HANDLE, PVOID);

bool Succeeded(LONG status) { return status >= 0; }

UNICODE_STRING CountedString(const std::wstring& text) {
  UNICODE_STRING counted;
  counted.Length = static_cast<USHORT>(text.size() * sizeof(wchar_t));
  counted.MaximumLength = counted.Length;
  counted.Buffer = const_cast<wchar_t*>(text.c_str());
  return counted;
}

// A pagefile-backed section for a port view. The kernel maps it while connecting or accepting;
// the mapping keeps the section alive, so this handle closes right after the call.
bool CreateViewSection(size_t bytes, UniqueHandle* section, Failure* failure) {
  uint64_t size = bytes;
  HANDLE created = CreateFileMappingW(INVALID_HANDLE_VALUE, nullptr, PAGE_READWRITE, static_cast<DWORD>(size >> 32),
                                      static_cast<DWORD>(size), nullptr);
  if (created == nullptr) {
    *failure = Failure::FromLastError("CreateFileMappingW");
    return false;
  }
  section->Reset(created);
  return true;
}

PortView NewPortView(HANDLE section, size_t bytes) {
  PortView view{};
  view.length = sizeof(view);
  view.sectionHandle = section;
  view.viewSize = bytes;
  return view;
}

RemotePortView NewRemotePortView() {
  RemotePortView view{};
  view.length = sizeof(view);
  return view;
}

PortMessageHeader HeaderOf(const std::vector<uint8_t>& message) {
  PortMessageHeader header;
  std::memcpy(&header, message.data(), sizeof(header));
  return header;
}

// The part of a receive or reply buffer the kernel filled: TotalLength, within the buffer.
void TrimToTotalLength(std::vector<uint8_t>* buffer) {
  size_t total = HeaderOf(*buffer).totalLength;
  buffer->resize(std::clamp(total, kPortMessageBytes, buffer->size()));
}

}  // namespace

bool LpcView::Read(size_t offset, uint8_t* out, size_t length, Failure* failure) const {
  SIZE_T done = 0;
  if (length == 0) return true;
  if (!ReadProcessMemory(GetCurrentProcess(), base_ + offset, out, length, &done) || done != length) {
    *failure = Failure::FromLastError("ReadProcessMemory");
    return false;
  }
  return true;
}

bool LpcView::Write(size_t offset, const uint8_t* data, size_t length, Failure* failure) const {
  SIZE_T done = 0;
  if (length == 0) return true;
  if (!WriteProcessMemory(GetCurrentProcess(), base_ + offset, data, length, &done) || done != length) {
    *failure = Failure::FromLastError("WriteProcessMemory");
    return false;
  }
  return true;
}

PortHandle& PortHandle::operator=(PortHandle&& other) noexcept {
  if (this != &other) {
    Reset();
    handle_ = other.handle_;
    close_ = other.close_;
    other.handle_ = nullptr;
  }
  return *this;
}

void PortHandle::Reset() {
  if (handle_ != nullptr) close_(handle_);
  handle_ = nullptr;
}

bool CheckPortMessage(const std::vector<uint8_t>& message, size_t maxLength, std::string* problem) {
  if (message.size() < kPortMessageBytes) {
    *problem = "a message must hold at least its " + std::to_string(kPortMessageBytes) + "-byte PORT_MESSAGE header";
    return false;
  }
  if (message.size() > maxLength) {
    *problem = "a message on this port must be at most " + std::to_string(maxLength) + " bytes, header included";
    return false;
  }
  PortMessageHeader header = HeaderOf(message);
  if (header.totalLength != message.size() || header.dataLength + kPortMessageBytes != message.size()) {
    *problem = "TotalLength must be the message's size and DataLength the bytes after the header";
    return false;
  }
  return true;
}

bool RequireNtdll(const char* const* names, size_t count, Failure* failure) {
  for (size_t i = 0; i < count; ++i) {
    FARPROC unused;
    if (!ResolveNtdll(names[i], &unused, failure)) return false;
  }
  return true;
}

bool ParseSid(const std::wstring& text, std::vector<uint8_t>* sid) {
  // ConvertStringSidToSidW reads up to the first NUL ("S-1-5-18\0junk" is not a SID), and Wine's
  // accepts an empty string.
  if (text.empty() || text.find(L'\0') != std::wstring::npos) return false;
  PSID parsed = nullptr;
  if (!ConvertStringSidToSidW(text.c_str(), &parsed)) return false;
  std::unique_ptr<void, decltype(&LocalFree)> owned(parsed, &LocalFree);
  const auto* bytes = static_cast<const uint8_t*>(parsed);
  sid->assign(bytes, bytes + GetLengthSid(parsed));
  return true;
}

bool LpcClient::Connect(const LpcConnectRequest& request, std::shared_ptr<LpcClient>* client, Failure* failure) {
  NtCloseFn close = nullptr;
  NtConnectPortFn connect = nullptr;
  NtSecureConnectPortFn secureConnect = nullptr;
  bool secure = !request.serverSid.empty();
  if (!ResolveNtdll("NtClose", &close, failure)) return false;
  if (secure ? !ResolveNtdll("NtSecureConnectPort", &secureConnect, failure)
             : !ResolveNtdll("NtConnectPort", &connect, failure)) {
    return false;
  }

  UniqueHandle section;
  PortView view{};
  if (request.viewBytes != 0) {
    if (!CreateViewSection(request.viewBytes, &section, failure)) return false;
    view = NewPortView(section.Get(), request.viewBytes);
  }
  RemotePortView serverView = NewRemotePortView();

  SECURITY_QUALITY_OF_SERVICE qos{};
  qos.Length = sizeof(qos);
  qos.ImpersonationLevel = static_cast<SECURITY_IMPERSONATION_LEVEL>(request.impersonation);
  qos.ContextTrackingMode = request.dynamicTracking ? SECURITY_DYNAMIC_TRACKING : SECURITY_STATIC_TRACKING;
  qos.EffectiveOnly = request.effectiveOnly ? TRUE : FALSE;

  UNICODE_STRING name = CountedString(request.name);
  // In and out: the kernel sends this many bytes and returns the server's answer in the same
  // buffer, cut to the same length (ReactOS; UNCONFIRMED that Windows lets it grow).
  std::vector<uint8_t> info(request.connectionInfo);
  ULONG infoLength = static_cast<ULONG>(info.size());
  ULONG maxMessageLength = 0;
  HANDLE port = nullptr;
  PortView* viewArgument = request.viewBytes != 0 ? &view : nullptr;
  PVOID infoArgument = info.empty() ? nullptr : info.data();
  PULONG infoLengthArgument = info.empty() ? nullptr : &infoLength;
  LONG status;
  if (secure) {
    std::vector<uint8_t> sid(request.serverSid);
    status = secureConnect(&port, &name, &qos, viewArgument, sid.data(), &serverView, &maxMessageLength, infoArgument,
                           infoLengthArgument);
  } else {
    status = connect(&port, &name, &qos, viewArgument, &serverView, &maxMessageLength, infoArgument, infoLengthArgument);
  }
  if (!Succeeded(status)) {
    *failure = Failure::FromNtStatus(secure ? "NtSecureConnectPort" : "NtConnectPort", status);
    return false;
  }

  std::shared_ptr<LpcClient> connected(new LpcClient());
  connected->port_ = PortHandle(port, close);
  connected->maxMessageLength_ = maxMessageLength;
  info.resize(std::min<size_t>(infoLength, info.size()));
  connected->serverInfo_ = std::move(info);
  if (request.viewBytes != 0) connected->view_ = LpcView(view.viewBase, view.viewSize);
  if (serverView.viewBase != nullptr) connected->serverView_ = LpcView(serverView.viewBase, serverView.viewSize);
  *client = std::move(connected);
  return true;
}

bool LpcClient::Request(std::vector<uint8_t> message, std::vector<uint8_t>* reply, Failure* failure) {
  NtRequestWaitReplyPortFn requestWaitReply = nullptr;
  if (!ResolveNtdll("NtRequestWaitReplyPort", &requestWaitReply, failure)) return false;
  reply->assign(std::max(kPortReceiveBytes, maxMessageLength_), 0);
  LONG status = requestWaitReply(port_.Get(), message.data(), reply->data());
  if (!Succeeded(status)) {
    *failure = Failure::FromNtStatus("NtRequestWaitReplyPort", status);
    return false;
  }
  TrimToTotalLength(reply);
  return true;
}

bool LpcClient::Post(std::vector<uint8_t> message, Failure* failure) {
  NtRequestPortFn request = nullptr;
  if (!ResolveNtdll("NtRequestPort", &request, failure)) return false;
  LONG status = request(port_.Get(), message.data());
  if (!Succeeded(status)) {
    *failure = Failure::FromNtStatus("NtRequestPort", status);
    return false;
  }
  return true;
}

struct LpcServer::Connection {
  PortHandle port;
  NtCompleteConnectPortFn complete = nullptr;
  bool completed = false;  // under LpcServer::mutex_
};

bool LpcServer::Create(const std::wstring& name, ULONG maxConnectionInfoLength, ULONG maxMessageLength,
                       std::shared_ptr<LpcServer>* server, Failure* failure) {
  NtCloseFn close = nullptr;
  NtCreatePortFn create = nullptr;
  if (!ResolveNtdll("NtClose", &close, failure) || !ResolveNtdll("NtCreatePort", &create, failure)) return false;

  UNICODE_STRING counted = CountedString(name);
  OBJECT_ATTRIBUTES attributes{};
  attributes.Length = sizeof(attributes);
  attributes.ObjectName = &counted;
  // The only attribute ports accept (PORT_VALID_OBJECT_ATTRIBUTES). No security descriptor:
  // the port gets the default DACL of this process's token.
  attributes.Attributes = OBJ_CASE_INSENSITIVE;
  HANDLE port = nullptr;
  LONG status = create(&port, &attributes, maxConnectionInfoLength, maxMessageLength, 0);
  if (!Succeeded(status)) {
    *failure = Failure::FromNtStatus("NtCreatePort", status);
    return false;
  }
  std::shared_ptr<LpcServer> created(new LpcServer());
  created->port_ = PortHandle(port, close);
  created->close_ = close;
  created->maxMessageLength_ = maxMessageLength;
  // Resolved now, not in the thread: a missing wait call must fail create(), not a later event.
  if (!ResolveNtdll("NtReplyWaitReceivePortEx", &created->receive_, failure)) return false;
  *server = std::move(created);
  return true;
}

bool LpcServer::Start(std::shared_ptr<LpcServerListener> listener, Failure* failure) {
  listener_ = std::move(listener);
  auto self = new std::shared_ptr<LpcServer>(shared_from_this());
  // A small stack: the thread only waits and copies messages of at most 688 bytes.
  HANDLE thread = CreateThread(nullptr, 64 * 1024, &LpcServer::ThreadMain, self, STACK_SIZE_PARAM_IS_A_RESERVATION, nullptr);
  if (thread == nullptr) {
    *failure = Failure::FromLastError("CreateThread");
    delete self;
    return false;
  }
  // The thread owns its reference to the server and ends on its own after Stop().
  CloseHandle(thread);
  return true;
}

DWORD WINAPI LpcServer::ThreadMain(void* context) {
  std::unique_ptr<std::shared_ptr<LpcServer>> self(static_cast<std::shared_ptr<LpcServer>*>(context));
  (*self)->Receive();
  return 0;
}

void LpcServer::Stop() {
  std::map<uint64_t, std::shared_ptr<Connection>> connections;
  {
    std::lock_guard<SrwMutex> lock(mutex_);
    stopping_ = true;
    connections.swap(connections_);
  }
  for (auto& connection : connections) Drop(std::move(connection.second));
}

void LpcServer::Receive() noexcept {
  Failure failure;
  bool failed = false;
  // Nothing may leave this thread: an exception here would end the process. Allocation is all
  // that can throw; it ends the server like a failed wait would.
  try {
    failed = !ReceiveUntilStopped(&failure);
  } catch (const std::bad_alloc&) {
    failure = Failure::FromHResult("NtReplyWaitReceivePortEx", E_OUTOFMEMORY);
    failed = true;
  } catch (...) {
    failure = Failure::FromHResult("NtReplyWaitReceivePortEx", E_UNEXPECTED);
    failed = true;
  }
  Shutdown(failed ? &failure : nullptr);
}

bool LpcServer::ReceiveUntilStopped(Failure* failure) {
  LARGE_INTEGER timeout;
  timeout.QuadPart = -kReceivePoll100ns;
  while (!stopping_) {
    std::vector<uint8_t> buffer(kPortReceiveBytes, 0);
    PVOID context = nullptr;
    LONG status = receive_(port_.Get(), &context, nullptr, buffer.data(), &timeout);
    if (!Succeeded(status)) {
      *failure = Failure::FromNtStatus("NtReplyWaitReceivePortEx", status);
      return false;
    }
    // STATUS_TIMEOUT (0x102) and the other success codes that are not STATUS_SUCCESS (alerts,
    // APCs) bring no message.
    if (status != 0) continue;
    TrimToTotalLength(&buffer);
    PortMessageHeader header = HeaderOf(buffer);
    uint64_t connectionId = reinterpret_cast<uint64_t>(context);
    if ((header.type & kLpcTypeMask) == kLpcConnectionRequest) {
      std::lock_guard<SrwMutex> lock(mutex_);
      pending_[header.messageId] = buffer;
    } else if ((header.type & kLpcTypeMask) == kLpcPortClosed && connectionId != 0) {
      ClientClosed(connectionId);
    }
    listener_->Received(LpcReceived{connectionId, std::move(buffer)});
  }
  return true;
}

void LpcServer::Shutdown(const Failure* failure) noexcept {
  std::map<ULONG, std::vector<uint8_t>> pending;
  {
    std::lock_guard<SrwMutex> lock(mutex_);
    stopping_ = true;
    pending.swap(pending_);
  }
  for (auto& request : pending) {
    Failure ignored;
    // A client waiting in NtConnectPort gets STATUS_PORT_CONNECTION_REFUSED instead of hanging.
    // The request itself becomes the answer, without connection info (nothing here may allocate).
    std::vector<uint8_t>& answer = request.second;
    PortMessageHeader header = HeaderOf(answer);
    header.dataLength = 0;
    header.totalLength = static_cast<uint16_t>(kPortMessageBytes);
    std::memcpy(answer.data(), &header, sizeof(header));
    RefuseTaken(answer, &ignored);
  }
  port_.Reset();
  try {
    listener_->Ended(failure);
  } catch (...) {
    // Out of memory telling JS: the port is closed all the same.
  }
  listener_.reset();
}

bool LpcServer::TakePending(const std::vector<uint8_t>& message, Failure* failure) {
  std::lock_guard<SrwMutex> lock(mutex_);
  if (stopping_) {
    *failure = Failure::Fltport("NtAcceptConnectPort", "ERR_FLTPORT_CLOSED", "the server port is closed");
    return false;
  }
  auto found = pending_.find(HeaderOf(message).messageId);
  if (found == pending_.end()) {
    *failure = Failure::Fltport("NtAcceptConnectPort", "ERR_FLTPORT_ALREADY_REPLIED",
                                "this connection request was already answered");
    return false;
  }
  pending_.erase(found);
  return true;
}

bool LpcServer::Accept(std::vector<uint8_t> message, size_t viewBytes, LpcAccepted* accepted, Failure* failure) {
  if (!TakePending(message, failure)) return false;
  // From here this call alone answers the request, and whatever fails refuses it: a request
  // neither accepted nor refused would keep its client in NtConnectPort until the server closes.
  bool answered = false;
  if (AcceptTaken(message, viewBytes, accepted, failure, &answered)) return true;
  if (!answered) {
    Failure ignored;
    RefuseTaken(message, &ignored);
  }
  return false;
}

bool LpcServer::Refuse(std::vector<uint8_t> message, Failure* failure) {
  return TakePending(message, failure) && RefuseTaken(message, failure);
}

bool LpcServer::RefuseTaken(const std::vector<uint8_t>& message, Failure* failure) noexcept {
  NtAcceptConnectPortFn acceptConnect = nullptr;
  if (!ResolveNtdll("NtAcceptConnectPort", &acceptConnect, failure)) return false;
  // A copy on the stack, not the heap: shutdown refuses from the receiving thread, where nothing
  // may throw. The kernel reads only the header and the connection info after it.
  std::array<uint8_t, kPortMessageBytes + kMaxLpcConnectionInfoBytes> answer{};
  std::memcpy(answer.data(), message.data(), std::min(message.size(), answer.size()));
  HANDLE port = nullptr;
  LONG status = acceptConnect(&port, nullptr, answer.data(), FALSE, nullptr, nullptr);
  if (!Succeeded(status)) {
    *failure = Failure::FromNtStatus("NtAcceptConnectPort", status);
    return false;
  }
  return true;
}

bool LpcServer::AcceptTaken(const std::vector<uint8_t>& message, size_t viewBytes, LpcAccepted* accepted,
                            Failure* failure, bool* answered) {
  // Every step that can fail before the kernel call comes first.
  NtAcceptConnectPortFn acceptConnect = nullptr;
  NtCompleteConnectPortFn complete = nullptr;
  if (!ResolveNtdll("NtAcceptConnectPort", &acceptConnect, failure) ||
      !ResolveNtdll("NtCompleteConnectPort", &complete, failure)) {
    return false;
  }
  UniqueHandle section;
  PortView view{};
  if (viewBytes != 0) {
    if (!CreateViewSection(viewBytes, &section, failure)) return false;
    view = NewPortView(section.Get(), viewBytes);
  }
  RemotePortView clientView = NewRemotePortView();
  uint64_t connectionId = 0;
  {
    std::lock_guard<SrwMutex> lock(mutex_);
    connectionId = nextConnectionId_++;
    accepting_.insert(connectionId);
  }
  std::vector<uint8_t> answer(message);
  HANDLE port = nullptr;
  // The connection id travels as the communication port's PortContext: NtReplyWaitReceivePortEx
  // hands it back with every message that comes through this connection.
  LONG status = acceptConnect(&port, reinterpret_cast<PVOID>(connectionId), answer.data(), TRUE,
                              viewBytes != 0 ? &view : nullptr, &clientView);
  bool clientGone = false;
  {
    std::lock_guard<SrwMutex> lock(mutex_);
    accepting_.erase(connectionId);
    clientGone = closedWhileAccepting_.erase(connectionId) != 0;
  }
  if (!Succeeded(status)) {
    // A failure after the kernel took the request answers the client itself; an earlier one
    // (a bad parameter) leaves it waiting: the caller's refusal covers that, and is refused in
    // turn where the kernel already answered (ReactOS ntoskrnl/lpc/complete.c).
    *failure = Failure::FromNtStatus("NtAcceptConnectPort", status);
    return false;
  }
  *answered = true;

  auto connection = std::make_shared<Connection>();
  connection->port = PortHandle(port, close_);
  connection->complete = complete;
  {
    std::lock_guard<SrwMutex> lock(mutex_);
    if (!stopping_ && !clientGone) {
      connections_.emplace(connectionId, connection);
      connection.reset();
    }
  }
  if (connection != nullptr) {
    // Stopped while the call ran (the receiving thread's shutdown no longer sees this one), or
    // the client closed its port already: nobody will use this connection.
    Drop(std::move(connection));
    *failure = Failure::Fltport("NtAcceptConnectPort", "ERR_FLTPORT_CLOSED",
                                clientGone ? "the client closed its port before the connection was completed"
                                           : "the server port is closed");
    return false;
  }
  accepted->connectionId = connectionId;
  if (viewBytes != 0) accepted->view = LpcView(view.viewBase, view.viewSize);
  if (clientView.viewBase != nullptr) accepted->clientView = LpcView(clientView.viewBase, clientView.viewSize);
  return true;
}

void LpcServer::ClientClosed(uint64_t connectionId) {
  std::shared_ptr<Connection> connection;
  {
    std::lock_guard<SrwMutex> lock(mutex_);
    if (accepting_.count(connectionId) != 0) {
      closedWhileAccepting_.insert(connectionId);
      return;
    }
    auto found = connections_.find(connectionId);
    // A completed connection is the JS side's: it closes it when it takes the LPC_PORT_CLOSED.
    if (found == connections_.end() || found->second->completed) return;
    connection = std::move(found->second);
    connections_.erase(found);
  }
  // Accepted, not yet completed: the JS side may not know of it yet and would drop the message;
  // its Complete() now fails with ERR_FLTPORT_CLOSED instead.
  Drop(std::move(connection));
}

bool LpcServer::Complete(uint64_t connectionId, Failure* failure) {
  std::shared_ptr<Connection> connection;
  {
    std::lock_guard<SrwMutex> lock(mutex_);
    auto found = connections_.find(connectionId);
    if (found != connections_.end() && !found->second->completed) {
      connection = found->second;
      connection->completed = true;
    }
  }
  if (connection == nullptr) {
    *failure = Failure::Fltport("NtCompleteConnectPort", "ERR_FLTPORT_CLOSED", "the connection is closed");
    return false;
  }
  LONG status = connection->complete(connection->port.Get());
  if (!Succeeded(status)) {
    *failure = Failure::FromNtStatus("NtCompleteConnectPort", status);
    return false;
  }
  return true;
}

bool LpcServer::Reply(uint64_t connectionId, std::vector<uint8_t> message, Failure* failure) {
  NtReplyPortFn reply = nullptr;
  if (!ResolveNtdll("NtReplyPort", &reply, failure)) return false;
  std::shared_ptr<Connection> connection;
  {
    std::lock_guard<SrwMutex> lock(mutex_);
    auto found = connections_.find(connectionId);
    if (found != connections_.end()) connection = found->second;
  }
  if (connection == nullptr) {
    *failure = Failure::Fltport("NtReplyPort", "ERR_FLTPORT_CLOSED", "the connection is closed");
    return false;
  }
  LONG status = reply(connection->port.Get(), message.data());
  if (!Succeeded(status)) {
    *failure = Failure::FromNtStatus("NtReplyPort", status);
    return false;
  }
  return true;
}

void LpcServer::CloseConnection(uint64_t connectionId) {
  std::shared_ptr<Connection> connection;
  {
    std::lock_guard<SrwMutex> lock(mutex_);
    auto found = connections_.find(connectionId);
    if (found == connections_.end()) return;
    connection = std::move(found->second);
    connections_.erase(found);
  }
  Drop(std::move(connection));
}

void LpcServer::Drop(std::shared_ptr<Connection> connection) {
  // Out of the table, no other thread reads or flips `completed` any more (Complete() flips it
  // only under the mutex, while the connection is in the table), so no lock is needed here.
  bool complete = !connection->completed;
  connection->completed = true;
  if (complete) connection->complete(connection->port.Get());
}

}  // namespace fltport
