// The JS-facing side of filter communication ports. Every promise made here settles exactly
// once; lib/filter-port.ts layers close and abort semantics on top.
#include "filter_port_binding.h"

#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "addon_data.h"
#include "js_values.h"
#include "pool_job.h"
#include "win/failure.h"
#include "win/filter_port.h"
#include "win/message_stream.h"

namespace fltport {

namespace {

// Reads one stream keeps in the kernel (lib/filter-port.ts MAX_PENDING).
constexpr uint32_t kMaxPendingReads = 1024;
// The read buffers one port may hold at once, counted as the API's bufferBytes (the header
// aside): a receive() holds its bufferBytes, a messages() or serve() loop pending x
// maxBufferBytes (each of its reads may grow that far). A buffer is allocated whole.
constexpr uint64_t kMaxReadBytesPerPort = 256 * 1024 * 1024;

// The API's bufferBytes of a read buffer of `bufferBytes` (at least the header).
uint64_t ReadBytesOf(uint32_t bufferBytes) { return bufferBytes - kMessageHeaderBytes; }

class ReadJob;
struct StreamState;

// What one open port shares with its reads in flight. JS thread only, except `connection`,
// which in-flight calls hold their own references to.
struct PortState : EnvResource {
  PortState(std::shared_ptr<FilterConnection> opened, std::shared_ptr<CompletionQueue> queue)
      : connection(std::move(opened)), completions(queue), hold(std::move(queue)) {}

  // Pending reads and calls in flight keep the event loop alive while the port is referenced
  // (ref/unref), as a socket's reads and writes do.
  void UpdateKeepAlive(Napi::Env env) { hold.SetBusy(env, !reads.empty() || !streams.empty() || callsInFlight > 0); }

  bool FitsReads(uint64_t bytes) const { return readBytes + bytes <= kMaxReadBytesPerPort; }

  void Teardown() override;

  // Cancels every read; the handle is released once the last of them has completed.
  void BeginClose();

  void FinishCloseIfDrained() {
    if (!closing || !reads.empty() || !streams.empty() || connection == nullptr) return;
    // Sends still inside the kernel hold their own references; the handle closes after them.
    connection.reset();
    for (Napi::Promise::Deferred& waiter : closeWaiters) waiter.Resolve(waiter.Env().Undefined());
    closeWaiters.clear();
  }

  std::shared_ptr<FilterConnection> connection;
  std::shared_ptr<CompletionQueue> completions;
  std::unordered_map<uint32_t, ReadJob*> reads;
  std::unordered_set<std::shared_ptr<StreamState>> streams;
  std::vector<Napi::Promise::Deferred> closeWaiters;
  LoopHold hold;
  uint64_t readBytes = 0;      // held by `reads` and `streams` (ReadBytesOf)
  uint32_t callsInFlight = 0;  // sends and replies
  bool closing = false;
};

// A read, or a stream's reads, asked for `bytes` more than the port's reads may hold.
Napi::Error ReadBudgetError(Napi::Env env, const PortState& port, uint64_t bytes) {
  Napi::RangeError error = Napi::RangeError::New(
      env, "the reads of one port may hold at most " + std::to_string(kMaxReadBytesPerPort) +
               " bytes at once (a receive() its bufferBytes, a messages() or serve() loop pending x maxBufferBytes); "
               "this port's reads hold " + std::to_string(port.readBytes) + " and this call asks for " +
               std::to_string(bytes) + " more");
  error.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  return error;
}

// A read buffer could not be allocated (E_OUTOFMEMORY, named after the call it was for).
Napi::Error ReadBufferError(Napi::Env env) {
  return FailureToJs(env, Failure::FromHResult("FilterGetMessage", E_OUTOFMEMORY));
}

// { id: bigint, replyLength: number, data: Buffer }
Napi::Object MessageToJs(Napi::Env env, const ReceivedMessage& received) {
  Napi::Object message = Napi::Object::New(env);
  message.Set("id", Napi::BigInt::New(env, received.id));
  message.Set("replyLength", Napi::Number::New(env, received.replyLength));
  // A copy into a Node-owned buffer: Electron refuses external buffers.
  message.Set("data", Napi::Buffer<uint8_t>::Copy(env, received.payload.data(), received.payload.size()));
  return message;
}

// One overlapped FilterGetMessage: a thread-pool completion posts it back to the JS thread.
class ReadJob : public CompletionQueue::Job, public ReadOperation {
 public:
  ReadJob(Napi::Env env, std::shared_ptr<PortState> port, uint32_t readId, std::unique_ptr<uint8_t[]> buffer,
          uint32_t bufferBytes)
      : deferred_(Napi::Promise::Deferred::New(env)),
        port_(std::move(port)),
        connection_(port_->connection),
        work_(port_->completions),
        readId_(readId),
        buffer_(std::move(buffer)),
        bufferBytes_(bufferBytes) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }
  // A read that could not start: no completion follows.
  void Reject(const Napi::Error& error) { deferred_.Reject(error.Value()); }
  HRESULT Start() {
    if (buffer_ == nullptr) return E_OUTOFMEMORY;
    return connection_->StartRead(this, buffer_.get(), bufferBytes_);
  }
  void Cancel() { connection_->CancelRead(this); }

  void ReadCompleted(ULONG error, ULONG bytes) noexcept override {
    error_ = error;
    bytes_ = bytes;
    std::shared_ptr<CompletionQueue> completions = port_->completions;
    completions->Post(std::unique_ptr<Job>(this));
  }

  void Settle(Napi::Env env) override {
    port_->reads.erase(readId_);
    port_->readBytes -= ReadBytesOf(bufferBytes_);
    port_->UpdateKeepAlive(env);
    connection_.reset();
    ReceivedMessage message;
    HRESULT result = ReceivedMessage::FromRead(error_, bytes_, buffer_.get(), bufferBytes_, &message);
    if (result == S_OK) {
      Napi::Object object = MessageToJs(env, message);
      // Building it failed (a setter on Object.prototype threw, memory ran out): that is the outcome.
      if (env.IsExceptionPending()) {
        deferred_.Reject(env.GetAndClearPendingException().Value());
      } else {
        deferred_.Resolve(object);
      }
    } else {
      deferred_.Reject(FailureToJs(env, Failure::FromHResult("FilterGetMessage", result)).Value());
    }
    port_->FinishCloseIfDrained();
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<PortState> port_;
  std::shared_ptr<FilterConnection> connection_;
  CompletionQueue::WorkHold work_;
  uint32_t readId_;
  std::unique_ptr<uint8_t[]> buffer_;
  uint32_t bufferBytes_;
  ULONG error_ = ERROR_SUCCESS;
  ULONG bytes_ = 0;
};

// One messages() loop's MessageStream as the JS thread sees it. Released on the JS thread only:
// the stream's own callback refers to it weakly.
struct StreamState {
  std::shared_ptr<MessageStream> stream;
  std::shared_ptr<PortState> port;
  Napi::FunctionReference onMessages;
  Napi::FunctionReference onEnd;
  uint64_t readBytes = 0;  // counted in port->readBytes until the end
};

void PortState::BeginClose() {
  if (connection == nullptr || closing) return;
  closing = true;
  for (const std::shared_ptr<StreamState>& stream : streams) stream->stream->Stop();
  connection->CancelAllReads();
}

void PortState::Teardown() {
  closing = true;
  for (const std::shared_ptr<StreamState>& state : streams) {
    state->stream->Stop();
    state->stream.reset();  // it lives on while its cancelled reads complete
    state->onMessages.Reset();
    state->onEnd.Reset();
    state->port.reset();
  }
  streams.clear();
  if (connection != nullptr) connection->CancelAllReads();
  connection.reset();
  reads.clear();  // each read owns itself; its completion releases it
  closeWaiters.clear();
}

// Hands what a stream has ready to JS: onMessages(batch), then onEnd(error | null) once.
class StreamDeliveryJob : public CompletionQueue::Job {
 public:
  explicit StreamDeliveryJob(std::weak_ptr<StreamState> state) : state_(std::move(state)) {}

  void Settle(Napi::Env env) override {
    std::shared_ptr<StreamState> state = state_.lock();
    if (state == nullptr || state->stream == nullptr) return;
    MessageStream::Batch batch = state->stream->Take();
    if (!batch.messages.empty() || !batch.unreadable.empty()) {
      Napi::Array messages = Napi::Array::New(env, batch.messages.size());
      for (uint32_t i = 0; i < batch.messages.size(); ++i) messages.Set(i, MessageToJs(env, batch.messages[i]));
      // Messages that could not be read: errors with the largest buffer tried (header included).
      Napi::Array unreadable = Napi::Array::New(env, batch.unreadable.size());
      for (uint32_t i = 0; i < batch.unreadable.size(); ++i) {
        Napi::Error error = FailureToJs(env, Failure::FromHResult("FilterGetMessage", batch.unreadable[i].error));
        error.Set("bufferBytes", Napi::Number::New(env, batch.unreadable[i].bufferBytes));
        unreadable.Set(i, error.Value());
      }
      state->onMessages.Call({messages, unreadable});
      RaisePending(env);
    }
    if (!batch.ended) return;
    state->stream.reset();
    state->onMessages.Reset();
    Napi::FunctionReference onEnd = std::move(state->onEnd);
    std::shared_ptr<PortState> port = std::move(state->port);
    port->streams.erase(state);
    port->readBytes -= state->readBytes;
    port->UpdateKeepAlive(env);
    onEnd.Call({batch.error == S_OK ? env.Null() : FailureToJs(env, Failure::FromHResult("FilterGetMessage", batch.error)).Value()});
    RaisePending(env);
    port->FinishCloseIfDrained();
  }

 private:
  std::weak_ptr<StreamState> state_;
};

// Marks the JS objects that are MessageStreamHandles.
constexpr napi_type_tag kMessageStreamTag = {0x6a2f5c1e9b7d4e03ull, 0x8c41f0d2a5b36e97ull};

class MessageStreamHandle : public Napi::ObjectWrap<MessageStreamHandle> {
 public:
  static Napi::Function DefineClass(Napi::Env env) {
    return ObjectWrap<MessageStreamHandle>::DefineClass(
        env, "MessageStreamHandle",
        {InstanceMethod<&MessageStreamHandle::Consumed>("consumed"), InstanceMethod<&MessageStreamHandle::Stop>("stop")});
  }

  explicit MessageStreamHandle(const Napi::CallbackInfo& info) : ObjectWrap<MessageStreamHandle>(info) {
    // What FilterPortHandle::ReadStream recognizes the handle by (a failure leaves it unusable there).
    napi_type_tag_object(info.Env(), info.This(), &kMessageStreamTag);
  }

  void Adopt(std::shared_ptr<StreamState> state) { state_ = std::move(state); }
  // Null once the stream has ended.
  std::shared_ptr<MessageStream> Stream() const { return state_ == nullptr ? nullptr : state_->stream; }

 private:
  // consumed(count): the consumer is done with `count` messages; room for that many reads again.
  Napi::Value Consumed(const Napi::CallbackInfo& info) {
    uint32_t count = 0;
    if (!ReadUint32(info[0], "count", 0, UINT32_MAX, &count)) return info.Env().Undefined();
    if (state_ != nullptr && state_->stream != nullptr) state_->stream->Consumed(count);
    return info.Env().Undefined();
  }

  // stop(): cancels the reads; onMessages may still run with what they delivered, then onEnd.
  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (state_ != nullptr && state_->stream != nullptr) state_->stream->Stop();
    return info.Env().Undefined();
  }

  std::shared_ptr<StreamState> state_;
};

// A call on an open port: it holds the event loop through the port, so that unref() lets go
// of it as of a socket's writes.
class PortCallJob : public PoolJob {
 public:
  PortCallJob(Napi::Env env, std::shared_ptr<PortState> port)
      : PoolJob(env), connection_(port->connection), port_(std::move(port)) {}

 protected:
  void Started(Napi::Env env) override {
    ++port_->callsInFlight;
    port_->UpdateKeepAlive(env);
  }
  void Finished(Napi::Env env) override {
    --port_->callsInFlight;
    port_->UpdateKeepAlive(env);
    connection_.reset();
  }

  std::shared_ptr<FilterConnection> connection_;

 private:
  std::shared_ptr<PortState> port_;
};

class SendJob : public PortCallJob {
 public:
  SendJob(Napi::Env env, std::shared_ptr<PortState> port, std::vector<uint8_t> input, uint32_t outputBytes)
      : PortCallJob(env, std::move(port)), input_(std::move(input)), output_(outputBytes) {}

 protected:
  // MessageNotify returns when the driver decides.
  bool MayBlock() const override { return true; }

  bool Call(Failure* failure) override {
    HRESULT hr = connection_->Send(input_.empty() ? nullptr : input_.data(), static_cast<DWORD>(input_.size()),
                                   output_.empty() ? nullptr : output_.data(), static_cast<DWORD>(output_.size()),
                                   &returned_);
    return Succeeded(hr, "FilterSendMessage", failure);
  }

  Napi::Value Result(Napi::Env env) override {
    // FilterConnection::Send bounds lpBytesReturned by the output buffer.
    return Napi::Buffer<uint8_t>::Copy(env, output_.data(), returned_);
  }

 private:
  std::vector<uint8_t> input_;
  std::vector<uint8_t> output_;
  DWORD returned_ = 0;
};

class ReplyJob : public PortCallJob {
 public:
  // `stream`: the stream whose read the message holds (serve()), which gets it back once the reply
  // is made; null when the message holds none.
  ReplyJob(Napi::Env env, std::shared_ptr<PortState> port, std::vector<uint8_t> reply, bool settleLazily,
           std::shared_ptr<MessageStream> stream)
      : PortCallJob(env, std::move(port)),
        reply_(std::move(reply)),
        settleLazily_(settleLazily),
        stream_(std::move(stream)) {}

 protected:
  bool Call(Failure* failure) override {
    HRESULT hr = connection_->Reply(reply_.data(), static_cast<DWORD>(reply_.size()));
    if (stream_ != nullptr) {
      stream_->Replied();
      stream_.reset();
    }
    return Succeeded(hr, "FilterReplyMessage", failure);
  }
  // A job that never reached Call() (no thread-pool work object): the read comes back all the same.
  void Finished(Napi::Env env) override {
    if (stream_ != nullptr) stream_->Consumed(1);
    PortCallJob::Finished(env);
  }
  // The kernel has the reply once Call() returns; when nobody waits on the outcome (serve()),
  // it can ride on the next wake-up: a scanner replies to every message, and half of its JS
  // thread's wake-ups were these.
  bool CanWait() const override { return settleLazily_; }

 private:
  std::vector<uint8_t> reply_;
  bool settleLazily_;
  std::shared_ptr<MessageStream> stream_;
};

// An overlapped handle is bound to this process's thread-pool I/O: a child's I/O on an inherited
// copy would complete into that callback with an OVERLAPPED of the child's (a crash here), and
// the copy would keep the connection open after close().
Napi::Error InheritHandleError(Napi::Env env) {
  Napi::TypeError error = Napi::TypeError::New(
      env, "inheritHandle requires syncHandle: an overlapped port handle cannot be shared with a child process");
  error.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_VALUE"));
  return error;
}

Napi::Error SyncHandleError(Napi::Env env) {
  return FltportErrorToJs(env, "ERR_FLTPORT_SYNC_HANDLE", "a port connected with syncHandle cannot receive messages");
}

class FilterPortHandle : public Napi::ObjectWrap<FilterPortHandle> {
 public:
  static Napi::Function DefineClass(Napi::Env env) {
    return ObjectWrap<FilterPortHandle>::DefineClass(
        env, "FilterPortHandle",
        {InstanceMethod<&FilterPortHandle::Read>("read"), InstanceMethod<&FilterPortHandle::CancelRead>("cancelRead"),
         InstanceMethod<&FilterPortHandle::Stream>("stream"),
         InstanceMethod<&FilterPortHandle::Send>("send"), InstanceMethod<&FilterPortHandle::Reply>("reply"),
         InstanceMethod<&FilterPortHandle::Close>("close"), InstanceMethod<&FilterPortHandle::Ref>("ref"),
         InstanceMethod<&FilterPortHandle::Unref>("unref")});
  }

  explicit FilterPortHandle(const Napi::CallbackInfo& info) : ObjectWrap<FilterPortHandle>(info) {}

  void Adopt(Napi::Env env, std::shared_ptr<FilterConnection> connection) {
    state_ = std::make_shared<PortState>(std::move(connection), GetAddonData(env)->completions);
    GetAddonData(env)->Track(state_);
  }

  // Garbage collected without close(): cancel the reads; the handle goes with the last of them.
  void Finalize(Napi::Env env) override {
    if (state_ == nullptr) return;
    state_->hold.SetReferenced(env, false);
    state_->BeginClose();
    state_->FinishCloseIfDrained();
  }

 private:
  bool Closed() const { return state_ == nullptr || state_->closing || state_->connection == nullptr; }

  // read(bufferBytes, readId): Promise<{ id: bigint, replyLength: number, data: Buffer }>
  Napi::Value Read(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t bufferBytes = 0;
    uint32_t readId = 0;
    if (!ReadUint32(info[0], "bufferBytes", kMessageHeaderBytes, kMessageHeaderBytes + kMaxPayloadBytes, &bufferBytes) ||
        !ReadUint32(info[1], "readId", 0, UINT32_MAX, &readId)) {
      return env.Undefined();
    }
    if (Closed()) return RejectedPromise(env, ClosedPortError(env));
    if (!state_->connection->Overlapped()) return RejectedPromise(env, SyncHandleError(env));
    if (state_->reads.count(readId) != 0) {
      return RejectedPromise(env, FltportErrorToJs(env, "ERR_INVALID_ARG_VALUE", "readId is already in use"));
    }
    if (!state_->FitsReads(ReadBytesOf(bufferBytes))) {
      return RejectedPromise(env, ReadBudgetError(env, *state_, ReadBytesOf(bufferBytes)));
    }
    std::unique_ptr<uint8_t[]> buffer(new (std::nothrow) uint8_t[bufferBytes]);
    if (buffer == nullptr) return RejectedPromise(env, ReadBufferError(env));
    auto read = std::make_unique<ReadJob>(env, state_, readId, std::move(buffer), bufferBytes);
    Napi::Promise promise = read->Promise();
    HRESULT hr = read->Start();
    if (FAILED(hr)) {
      read->Reject(FailureToJs(env, Failure::FromHResult("FilterGetMessage", hr)));
      return promise;
    }
    state_->reads.emplace(readId, read.release());  // the completion owns it now
    state_->readBytes += ReadBytesOf(bufferBytes);
    state_->UpdateKeepAlive(env);
    return promise;
  }

  // stream(bufferBytes, pending, onMessages(messages, unreadable), onEnd, maxBufferBytes | undefined,
  // holdForReply): MessageStreamHandle. Without maxBufferBytes a read never grows. holdForReply: a
  // read whose message expects a reply waits for reply(..., stream) or consumed() (serve()).
  Napi::Value Stream(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t bufferBytes = 0;
    uint32_t pending = 0;
    uint32_t maxBufferBytes = 0;
    if (!ReadUint32(info[0], "bufferBytes", kMessageHeaderBytes, kMessageHeaderBytes + kMaxPayloadBytes, &bufferBytes) ||
        !ReadUint32(info[1], "pending", 1, kMaxPendingReads, &pending) || !ReadFunction(info[2], "onMessages") ||
        !ReadFunction(info[3], "onEnd")) {
      return env.Undefined();
    }
    if (info[4].IsUndefined()) {
      maxBufferBytes = bufferBytes;
    } else if (!ReadUint32(info[4], "maxBufferBytes", bufferBytes, kMessageHeaderBytes + kMaxPayloadBytes, &maxBufferBytes)) {
      return env.Undefined();
    }
    bool holdForReply = false;
    if (!ReadBoolean(info[5], "holdForReply", &holdForReply)) return env.Undefined();
    if (Closed()) {
      ClosedPortError(env).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (!state_->connection->Overlapped()) {
      SyncHandleError(env).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    // Counted as if every read had grown to maxBufferBytes: each may, for a message of that size.
    uint64_t streamBytes = ReadBytesOf(maxBufferBytes) * pending;
    if (!state_->FitsReads(streamBytes)) {
      ReadBudgetError(env, *state_, streamBytes).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto state = std::make_shared<StreamState>();
    std::shared_ptr<CompletionQueue> completions = state_->completions;
    std::weak_ptr<StreamState> weak = state;
    // The hold goes with the stream, once its last read has completed.
    CompletionQueue::WorkHold work(completions);
    state->stream = MessageStream::Start(state_->connection, bufferBytes, maxBufferBytes, pending, holdForReply, [completions, weak, work]() {
      completions->Post(std::make_unique<StreamDeliveryJob>(weak));
    });
    if (state->stream == nullptr) {
      ReadBufferError(env).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    state->port = state_;
    state->readBytes = streamBytes;
    state_->readBytes += streamBytes;
    state->onMessages = Napi::Persistent(info[2].As<Napi::Function>());
    state->onEnd = Napi::Persistent(info[3].As<Napi::Function>());
    state_->streams.insert(state);
    state_->UpdateKeepAlive(env);
    Napi::Object wrapper = GetAddonData(env)->messageStreamClass.New({});
    if (env.IsExceptionPending()) {
      state->stream->Stop();  // its end then takes it out of `streams`
      return env.Undefined();
    }
    MessageStreamHandle::Unwrap(wrapper)->Adopt(std::move(state));
    return wrapper;
  }

  Napi::Value CancelRead(const Napi::CallbackInfo& info) {
    uint32_t readId = 0;
    if (!ReadUint32(info[0], "readId", 0, UINT32_MAX, &readId)) return info.Env().Undefined();
    if (state_ != nullptr) {
      auto found = state_->reads.find(readId);
      if (found != state_->reads.end()) found->second->Cancel();
    }
    return info.Env().Undefined();
  }

  // send(data, replyBytes): Promise<Buffer> of exactly lpBytesReturned bytes.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<uint8_t> input;
    uint32_t replyBytes = 0;
    if (!ReadOptionalBytes(info[0], "data", kMaxPayloadBytes, &input) ||
        !ReadUint32(info[1], "replyBytes", 0, kMaxPayloadBytes, &replyBytes)) {
      return env.Undefined();
    }
    if (Closed()) return RejectedPromise(env, ClosedPortError(env));
    return PoolJob::Submit(env, std::make_unique<SendJob>(env, state_, std::move(input), replyBytes));
  }

  // reply(messageId, status, payload | null, settleLazily, stream | null): Promise<void>; sends
  // header + payload exactly. settleLazily: the promise settles with the JS thread's next wake-up
  // instead of waking it (serve()). stream: the message's read is held for this reply (serve()).
  Napi::Value Reply(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t messageId = 0;
    int32_t status = 0;
    const uint8_t* payload = nullptr;
    size_t payloadBytes = 0;
    bool settleLazily = false;
    std::shared_ptr<MessageStream> stream;
    if (!ReadUint64(info[0], "messageId", &messageId) || !ReadInt32(info[1], "status", &status) ||
        !ReadOptionalBytesView(info[2], "payload", kMaxPayloadBytes, &payload, &payloadBytes) ||
        !ReadBoolean(info[3], "settleLazily", &settleLazily) || !ReadStream(info[4], &stream)) {
      return env.Undefined();
    }
    if (Closed()) return RejectedPromise(env, ClosedPortError(env));
    // FILTER_REPLY_HEADER: Status (NTSTATUS) at 0, 4 bytes of padding, MessageId at 8; the
    // payload is copied once, straight behind it.
    std::vector<uint8_t> reply(kReplyHeaderBytes + payloadBytes);
    std::memcpy(reply.data(), &status, sizeof(status));
    std::memcpy(reply.data() + 8, &messageId, sizeof(messageId));
    if (payloadBytes != 0) std::memcpy(reply.data() + kReplyHeaderBytes, payload, payloadBytes);
    return PoolJob::Submit(env, std::make_unique<ReplyJob>(env, state_, std::move(reply), settleLazily, std::move(stream)));
  }

  // null, or a MessageStreamHandle (its stream: null once ended); false with a TypeError pending.
  // Checked by its type tag, which runs no JS (instanceof could) and which a proxy of the handle or
  // an object made from its prototype does not carry.
  static bool ReadStream(const Napi::Value& value, std::shared_ptr<MessageStream>* stream) {
    Napi::Env env = value.Env();
    if (value.IsNull()) return true;
    bool tagged = false;
    if (value.IsObject() && napi_check_object_type_tag(env, value, &kMessageStreamTag, &tagged) != napi_ok) tagged = false;
    if (!tagged) return Throw(env, false, "ERR_INVALID_ARG_TYPE", "stream must be a MessageStreamHandle or null");
    *stream = MessageStreamHandle::Unwrap(value.As<Napi::Object>())->Stream();
    return true;
  }

  // close(): Promise<void>, settled once every pending read has completed.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Promise::Deferred closed = Napi::Promise::Deferred::New(env);
    if (state_ == nullptr || state_->connection == nullptr) {
      closed.Resolve(env.Undefined());
      return closed.Promise();
    }
    state_->closeWaiters.push_back(closed);
    state_->BeginClose();
    state_->FinishCloseIfDrained();
    return closed.Promise();
  }

  Napi::Value Ref(const Napi::CallbackInfo& info) { return SetReferenced(info, state_, true); }
  Napi::Value Unref(const Napi::CallbackInfo& info) { return SetReferenced(info, state_, false); }

  std::shared_ptr<PortState> state_;
};

class ConnectJob : public PoolJob {
 public:
  ConnectJob(Napi::Env env, ConnectRequest request)
      : PoolJob(env), request_(std::move(request)) {}

 protected:
  bool Call(Failure* failure) override {
    return Succeeded(FilterConnection::Connect(request_, &connection_), "FilterConnectCommunicationPort", failure);
  }
  // ConnectNotify returns when the driver decides.
  bool MayBlock() const override { return true; }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object wrapper = GetAddonData(env)->filterPortClass.New({});
    // No wrapper (the environment is ending, say): the pending exception rejects the promise, and
    // the connection closes with this job.
    if (env.IsExceptionPending()) return env.Undefined();
    FilterPortHandle::Unwrap(wrapper)->Adopt(env, std::move(connection_));
    return wrapper;
  }

 private:
  ConnectRequest request_;
  std::shared_ptr<FilterConnection> connection_;
};

// filterConnect(name, context | null, syncHandle, inheritHandle): Promise<FilterPortHandle>
Napi::Value FilterConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ConnectRequest request;
  if (!ReadPortName(info[0], kMaxPortNameUnits, &request.name) ||
      !ReadOptionalBytes(info[1], "context", kMaxConnectionContextBytes, &request.context) ||
      !ReadBoolean(info[2], "syncHandle", &request.syncHandle) ||
      !ReadBoolean(info[3], "inheritHandle", &request.inheritHandle)) {
    return env.Undefined();
  }
  if (request.inheritHandle && !request.syncHandle) {
    InheritHandleError(env).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return PoolJob::Submit(env, std::make_unique<ConnectJob>(env, std::move(request)));
}

}  // namespace

void InitFilterPort(Napi::Env env, Napi::Object exports) {
  GetAddonData(env)->filterPortClass = Napi::Persistent(FilterPortHandle::DefineClass(env));
  GetAddonData(env)->messageStreamClass = Napi::Persistent(MessageStreamHandle::DefineClass(env));
  exports.Set("filterConnect", Napi::Function::New<FilterConnect>(env, "filterConnect"));
}

}  // namespace fltport
