#include "win/filter_port.h"

#include <fltuser.h>

#include <cstring>
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
  // Every read holds a reference, so no completion can be outstanding here.
  if (io_ != nullptr) CloseThreadpoolIo(io_);
}

void CALLBACK FilterConnection::OnIoCompleted(PTP_CALLBACK_INSTANCE, void*, void* overlapped, ULONG result,
                                              ULONG_PTR bytes, PTP_IO) {
  auto* read = static_cast<ReadOperation::Overlapped*>(static_cast<OVERLAPPED*>(overlapped));
  read->owner->ReadCompleted(result, static_cast<ULONG>(bytes));
}

HRESULT FilterConnection::StartRead(ReadOperation* operation, uint8_t* buffer, DWORD bytes) {
  operation->overlapped_ = {};
  operation->overlapped_.owner = operation;
  StartThreadpoolIo(io_);
  HRESULT hr = FilterGetMessage(port_.Get(), reinterpret_cast<PFILTER_MESSAGE_HEADER>(buffer), bytes,
                                &operation->overlapped_);
  // A read that completes at once still queues its completion (the port is not set to skip it).
  if (hr == S_OK || hr == HRESULT_FROM_WIN32(ERROR_IO_PENDING)) return S_OK;
  CancelThreadpoolIo(io_);
  return hr;
}

void FilterConnection::CancelRead(ReadOperation* operation) { CancelIoEx(port_.Get(), &operation->overlapped_); }

void FilterConnection::CancelAllReads() { CancelIoEx(port_.Get(), nullptr); }

HRESULT FilterConnection::Send(const uint8_t* input, DWORD inputBytes, uint8_t* output, DWORD outputBytes,
                               DWORD* returned) {
  *returned = 0;
  return FilterSendMessage(port_.Get(), const_cast<uint8_t*>(input), inputBytes, output, outputBytes, returned);
}

HRESULT FilterConnection::Reply(uint8_t* reply, DWORD bytes) {
  return FilterReplyMessage(port_.Get(), reinterpret_cast<PFILTER_REPLY_HEADER>(reply), bytes);
}

ReceivedMessage ReceivedMessage::Parse(const uint8_t* buffer, ULONG bytes) {
  ReceivedMessage message;
  std::memcpy(&message.replyLength, buffer, sizeof(message.replyLength));
  std::memcpy(&message.id, buffer + 8, sizeof(message.id));
  message.payload.assign(buffer + kMessageHeaderBytes, buffer + bytes);
  return message;
}

HRESULT ReadResult(ULONG error, ULONG bytes) {
  switch (error) {
    // A read that completed with less than a header: the emulator's way of saying the buffer
    // was too small (Windows fails the read with this error itself).
    case ERROR_SUCCESS:
      return bytes >= kMessageHeaderBytes ? S_OK : HRESULT_FROM_WIN32(ERROR_INSUFFICIENT_BUFFER);
    // The emulator's transport reports a vanished kernel side as a broken pipe; Windows reports
    // STATUS_PORT_DISCONNECTED, which user mode sees as ERROR_INVALID_HANDLE.
    case ERROR_BROKEN_PIPE:
    case ERROR_PIPE_NOT_CONNECTED:
      return HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE);
    default:
      return HRESULT_FROM_WIN32(error);
  }
}

std::wstring LoadedFltlibPath() {
  HMODULE module = GetModuleHandleW(L"fltlib.dll");
  if (module == nullptr) return {};
  wchar_t path[MAX_PATH * 4];
  DWORD length = GetModuleFileNameW(module, path, static_cast<DWORD>(sizeof(path) / sizeof(path[0])));
  return std::wstring(path, length);
}

}  // namespace fltport
