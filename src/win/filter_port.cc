#include "win/filter_port.h"

#include <fltuser.h>

#include <cstring>
#include <new>
#include <utility>

#ifndef FLT_PORT_FLAG_SYNC_HANDLE
#define FLT_PORT_FLAG_SYNC_HANDLE 0x00000001
#endif

namespace fltport {

HRESULT FilterConnection::Connect(const ConnectRequest& request, std::shared_ptr<FilterConnection>* connection) {
  SECURITY_ATTRIBUTES inheritable{sizeof(SECURITY_ATTRIBUTES), nullptr, TRUE};
  HANDLE handle = INVALID_HANDLE_VALUE;
  HRESULT hr = FilterConnectCommunicationPort(
      request.name.c_str(), request.syncHandle ? FLT_PORT_FLAG_SYNC_HANDLE : 0,
      request.context.empty() ? nullptr : request.context.data(), static_cast<WORD>(request.context.size()),
      request.inheritHandle ? &inheritable : nullptr, &handle);
  if (FAILED(hr)) return hr;
  std::shared_ptr<FilterConnection> opened(new FilterConnection(UniqueHandle(handle)));
  if (!request.syncHandle) {
    opened->io_ = CreateThreadpoolIo(handle, &FilterConnection::OnIoCompleted, nullptr, nullptr);
    if (opened->io_ == nullptr) return HRESULT_FROM_WIN32(GetLastError());
  }
  *connection = std::move(opened);
  return S_OK;
}

FilterConnection::~FilterConnection() {
  // Every read holds a reference, so no completion can be outstanding here. The handle closes
  // first, then the I/O object: the order CloseThreadpoolIo's documentation asks for.
  port_.Reset();
  if (io_ != nullptr) CloseThreadpoolIo(io_);
}

void CALLBACK FilterConnection::OnIoCompleted(PTP_CALLBACK_INSTANCE, void*, void* overlapped, ULONG result,
                                              ULONG_PTR bytes, PTP_IO) noexcept {
  auto* read = static_cast<ReadOperation::Overlapped*>(static_cast<OVERLAPPED*>(overlapped));
  // A count beyond a ULONG is as wrong as one beyond the buffer: FromRead refuses both.
  ULONG count = bytes > MAXDWORD ? MAXDWORD : static_cast<ULONG>(bytes);
  read->owner->ReadCompleted(result, count);
}

HRESULT FilterConnection::StartRead(ReadOperation* operation, uint8_t* buffer, DWORD bytes) {
  operation->overlapped_ = {};
  operation->overlapped_.owner = operation;
  StartThreadpoolIo(io_);
  HRESULT hr = FilterGetMessage(port_.Get(), reinterpret_cast<PFILTER_MESSAGE_HEADER>(buffer), bytes,
                                &operation->overlapped_);
  // A read that completes at once still queues its completion (the port is not set to skip it),
  // and so does one that completes at once with a warning: STATUS_BUFFER_OVERFLOW, which user
  // mode sees as ERROR_MORE_DATA, is not an NT error, so the I/O manager still posts the packet.
  // Only an error status means that no completion follows.
  if (hr == S_OK || hr == HRESULT_FROM_WIN32(ERROR_IO_PENDING) || hr == HRESULT_FROM_WIN32(ERROR_MORE_DATA)) return S_OK;
  CancelThreadpoolIo(io_);
  return hr;
}

void FilterConnection::CancelRead(ReadOperation* operation) { CancelIoEx(port_.Get(), &operation->overlapped_); }

void FilterConnection::CancelAllReads() { CancelIoEx(port_.Get(), nullptr); }

HRESULT FilterConnection::Send(const uint8_t* input, DWORD inputBytes, uint8_t* output, DWORD outputBytes,
                               DWORD* returned) {
  *returned = 0;
  HRESULT hr = FilterSendMessage(port_.Get(), const_cast<uint8_t*>(input), inputBytes, output, outputBytes, returned);
  // lpBytesReturned comes from the minifilter's MessageNotify: never more than the buffer holds.
  if (*returned > outputBytes) *returned = outputBytes;
  return hr;
}

HRESULT FilterConnection::Reply(uint8_t* reply, DWORD bytes) {
  return FilterReplyMessage(port_.Get(), reinterpret_cast<PFILTER_REPLY_HEADER>(reply), bytes);
}

HRESULT ReceivedMessage::FromRead(ULONG error, ULONG bytes, const uint8_t* buffer, DWORD capacity,
                                  ReceivedMessage* message) noexcept {
  // A vanished kernel side is STATUS_PORT_DISCONNECTED, ERROR_INVALID_HANDLE here; a buffer too
  // small for the next message fails the read with ERROR_INSUFFICIENT_BUFFER.
  if (error != ERROR_SUCCESS) return HRESULT_FROM_WIN32(error);
  // Less than a header, or more than the buffer holds: nothing in it can be trusted.
  if (bytes < kMessageHeaderBytes || bytes > capacity) return HRESULT_FROM_WIN32(ERROR_INVALID_DATA);
  uint32_t replyLength = 0;
  std::memcpy(&replyLength, buffer, sizeof(replyLength));
  std::memcpy(&message->id, buffer + 8, sizeof(message->id));
  // ReplyLength as the kernel sends it, made safe to reply by (fltmgr never sends these; a buggy
  // one or a corrupt header might):
  // - 1..15, less than a FILTER_REPLY_HEADER: no reply can fit, so none is expected (0); the
  //   smallest reply would already be more than the kernel can take.
  // - beyond what any reply carries (0xFFFFFFFF, say): capped, since replying with less than
  //   the kernel could take is safe, and nothing then sizes a reply from a number near 4 GiB.
  if (replyLength < kReplyHeaderBytes) {
    message->replyLength = 0;
  } else if (replyLength > kReplyHeaderBytes + kMaxPayloadBytes) {
    message->replyLength = kReplyHeaderBytes + kMaxPayloadBytes;
  } else {
    message->replyLength = replyLength;
  }
  // The only allocation on this path: its failure fails this read, not the process.
  try {
    message->payload.assign(buffer + kMessageHeaderBytes, buffer + bytes);
  } catch (const std::bad_alloc&) {
    return E_OUTOFMEMORY;
  }
  return S_OK;
}

bool IsBufferTooSmall(HRESULT hr) {
  return hr == HRESULT_FROM_WIN32(ERROR_INSUFFICIENT_BUFFER) || hr == HRESULT_FROM_WIN32(ERROR_MORE_DATA);
}

bool IsMessageFailure(HRESULT hr) {
  return IsBufferTooSmall(hr) || hr == HRESULT_FROM_WIN32(ERROR_INVALID_DATA) || hr == E_OUTOFMEMORY;
}

std::wstring LoadedFltlibPath() {
  HMODULE module = GetModuleHandleW(L"fltlib.dll");
  if (module == nullptr) return {};
  wchar_t path[MAX_PATH * 4];
  DWORD length = GetModuleFileNameW(module, path, static_cast<DWORD>(sizeof(path) / sizeof(path[0])));
  return std::wstring(path, length);
}

}  // namespace fltport
