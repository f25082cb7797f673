// The JS-facing side of LPC ports. Messages arrive and leave as whole PORT_MESSAGEs that
// lib/port-message.ts encodes and decodes; every promise made here settles exactly once, and
// lib/lpc-port.ts layers close and abort semantics on top.
#include "lpc_port_binding.h"

#include <iterator>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include "addon_data.h"
#include "js_values.h"
#include "pool_job.h"
#include "win/failure.h"
#include "win/lpc.h"

namespace fltport {

namespace {

// The calls each side needs, for lpcMissingEntryPoint(): lets callers learn up front what
// would otherwise fail only when first used (Wine lacks NtRequestPort and NtReplyPort).
constexpr const char* kClientEntryPoints[] = {"NtClose", "NtConnectPort", "NtRequestWaitReplyPort", "NtRequestPort"};
constexpr const char* kServerEntryPoints[] = {"NtClose",           "NtCreatePort",          "NtReplyWaitReceivePortEx",
                                              "NtAcceptConnectPort", "NtCompleteConnectPort", "NtReplyPort"};

enum ViewKind : uint32_t { kOwnView = 0, kPeerView = 1 };

// The constructors of the wrapped classes, per environment (AddonData belongs to the
// foundation; a cleanup hook frees these before the environment goes).
struct LpcClasses {
  Napi::FunctionReference client;
  Napi::FunctionReference server;
};

LpcClasses* ClassesOf(const Napi::CallbackInfo& info) { return static_cast<LpcClasses*>(info.Data()); }

bool ThrowRange(Napi::Env env, const std::string& message) {
  Napi::RangeError error = Napi::RangeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  error.ThrowAsJavaScriptException();
  return false;
}

bool ThrowInvalid(Napi::Env env, const std::string& message) {
  Napi::TypeError error = Napi::TypeError::New(env, message);
  error.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_VALUE"));
  error.ThrowAsJavaScriptException();
  return false;
}

// A whole PORT_MESSAGE of at most `maxLength` bytes, consistent with its own lengths.
bool ReadMessage(const Napi::Value& value, size_t maxLength, std::vector<uint8_t>* out) {
  if (value.IsUndefined() || value.IsNull()) {
    Napi::TypeError error = Napi::TypeError::New(value.Env(), "message must be a Uint8Array");
    error.Set("code", Napi::String::New(value.Env(), "ERR_INVALID_ARG_TYPE"));
    error.ThrowAsJavaScriptException();
    return false;
  }
  if (!ReadOptionalBytes(value, "message", maxLength, out)) return false;
  std::string problem;
  if (!CheckPortMessage(*out, maxLength, &problem)) return ThrowRange(value.Env(), problem);
  return true;
}

// Copy-in/copy-out access to a view, with the bounds checked here.
Napi::Value ReadView(const Napi::CallbackInfo& info, const LpcView& view, size_t argument) {
  Napi::Env env = info.Env();
  uint32_t offset = 0;
  uint32_t length = 0;
  if (!ReadUint32(info[argument], "offset", 0, UINT32_MAX, &offset) ||
      !ReadUint32(info[argument + 1], "length", 0, UINT32_MAX, &length)) {
    return env.Undefined();
  }
  if (view.Bytes() == 0) {
    ThrowInvalid(env, "there is no such view on this port");
    return env.Undefined();
  }
  if (uint64_t{offset} + length > view.Bytes()) {
    ThrowRange(env, "offset + length must be at most the view's " + std::to_string(view.Bytes()) + " bytes");
    return env.Undefined();
  }
  Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::New(env, length);
  Failure failure;
  if (!view.Read(offset, out.Data(), length, &failure)) {
    FailureToJs(env, failure).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return out;
}

Napi::Value WriteView(const Napi::CallbackInfo& info, const LpcView& view, size_t argument) {
  Napi::Env env = info.Env();
  uint32_t offset = 0;
  std::vector<uint8_t> data;
  if (!ReadUint32(info[argument], "offset", 0, UINT32_MAX, &offset) ||
      !ReadOptionalBytes(info[argument + 1], "data", kMaxLpcViewBytes, &data)) {
    return env.Undefined();
  }
  if (view.Bytes() == 0) {
    ThrowInvalid(env, "there is no such view on this port");
    return env.Undefined();
  }
  if (uint64_t{offset} + data.size() > view.Bytes()) {
    ThrowRange(env, "offset + data.byteLength must be at most the view's " + std::to_string(view.Bytes()) + " bytes");
    return env.Undefined();
  }
  Failure failure;
  if (!view.Write(offset, data.data(), data.size(), &failure)) FailureToJs(env, failure).ThrowAsJavaScriptException();
  return env.Undefined();
}

bool ReadViewKind(const Napi::Value& value, ViewKind* kind) {
  uint32_t raw = 0;
  if (!ReadUint32(value, "view", kOwnView, kPeerView, &raw)) return false;
  *kind = static_cast<ViewKind>(raw);
  return true;
}

// ---- client ----

class RequestJob : public PoolJob {
 public:
  RequestJob(Napi::Env env, std::shared_ptr<LpcClient> client, std::vector<uint8_t> message)
      : PoolJob(env), client_(std::move(client)), message_(std::move(message)) {}

 protected:
  bool Call(Failure* failure) override { return client_->Request(std::move(message_), &reply_, failure); }
  // The server replies when it decides.
  bool MayBlock() const override { return true; }
  Napi::Value Result(Napi::Env env) override { return Napi::Buffer<uint8_t>::Copy(env, reply_.data(), reply_.size()); }

 private:
  std::shared_ptr<LpcClient> client_;
  std::vector<uint8_t> message_;
  std::vector<uint8_t> reply_;
};

class PostJob : public PoolJob {
 public:
  PostJob(Napi::Env env, std::shared_ptr<LpcClient> client, std::vector<uint8_t> message)
      : PoolJob(env), client_(std::move(client)), message_(std::move(message)) {}

 protected:
  bool Call(Failure* failure) override { return client_->Post(std::move(message_), failure); }

 private:
  std::shared_ptr<LpcClient> client_;
  std::vector<uint8_t> message_;
};

// At environment teardown Node-API finalizes the wrapper, which lets go of the client as close()
// does (a client holds no JS reference and starts nothing of its own).
class LpcClientHandle : public Napi::ObjectWrap<LpcClientHandle> {
 public:
  static Napi::Function DefineClass(Napi::Env env) {
    return ObjectWrap<LpcClientHandle>::DefineClass(
        env, "LpcClientHandle",
        {InstanceMethod<&LpcClientHandle::Request>("request"), InstanceMethod<&LpcClientHandle::Post>("post"),
         InstanceMethod<&LpcClientHandle::Read>("readView"), InstanceMethod<&LpcClientHandle::Write>("writeView"),
         InstanceMethod<&LpcClientHandle::Close>("close")});
  }

  explicit LpcClientHandle(const Napi::CallbackInfo& info) : ObjectWrap<LpcClientHandle>(info) {}

  void Adopt(std::shared_ptr<LpcClient> client) { client_ = std::move(client); }

 private:
  // request(message): Promise<Buffer>, the whole reply message.
  Napi::Value Request(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (client_ == nullptr) return RejectedPromise(env, ClosedPortError(env));
    std::vector<uint8_t> message;
    if (!ReadMessage(info[0], client_->MaxMessageLength(), &message)) return env.Undefined();
    return PoolJob::Submit(env, std::make_unique<RequestJob>(env, client_, std::move(message)));
  }

  // post(message): Promise<void>, once the datagram is queued.
  Napi::Value Post(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (client_ == nullptr) return RejectedPromise(env, ClosedPortError(env));
    std::vector<uint8_t> message;
    if (!ReadMessage(info[0], client_->MaxMessageLength(), &message)) return env.Undefined();
    return PoolJob::Submit(env, std::make_unique<PostJob>(env, client_, std::move(message)));
  }

  // readView(view, offset, length): Buffer. view 0 = this client's, 1 = the server's.
  Napi::Value Read(const Napi::CallbackInfo& info) {
    ViewKind kind;
    if (!ReadViewKind(info[0], &kind)) return info.Env().Undefined();
    if (client_ == nullptr) {
      ClosedPortError(info.Env()).ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    return ReadView(info, kind == kOwnView ? client_->View() : client_->ServerView(), 1);
  }

  Napi::Value Write(const Napi::CallbackInfo& info) {
    ViewKind kind;
    if (!ReadViewKind(info[0], &kind)) return info.Env().Undefined();
    if (client_ == nullptr) {
      ClosedPortError(info.Env()).ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    return WriteView(info, kind == kOwnView ? client_->View() : client_->ServerView(), 1);
  }

  // close(): the handle closes once the calls in flight on it have returned. A request still
  // waiting for its reply keeps it open until the server answers or goes away: the kernel has
  // no way to cancel it, and closing a handle another thread may still pass to the kernel
  // could hand that thread a reused handle value.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    client_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<LpcClient> client_;
};

class ConnectJob : public PoolJob {
 public:
  ConnectJob(Napi::Env env, LpcClasses* classes, LpcConnectRequest request)
      : PoolJob(env), classes_(classes), request_(std::move(request)) {}

 protected:
  bool Call(Failure* failure) override { return LpcClient::Connect(request_, &client_, failure); }
  // The server accepts when it decides.
  bool MayBlock() const override { return true; }

  // { port, maxMessageLength, serverConnectionInfo, viewBytes, serverViewBytes }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object port = classes_->client.New({});
    // No wrapper (the environment is ending, say): the pending exception rejects the promise.
    if (env.IsExceptionPending()) return env.Undefined();
    Napi::Object result = Napi::Object::New(env);
    result.Set("maxMessageLength", Napi::Number::New(env, static_cast<double>(client_->MaxMessageLength())));
    const std::vector<uint8_t>& info = client_->ServerConnectionInfo();
    result.Set("serverConnectionInfo", Napi::Buffer<uint8_t>::Copy(env, info.data(), info.size()));
    result.Set("viewBytes", Napi::Number::New(env, static_cast<double>(client_->View().Bytes())));
    result.Set("serverViewBytes", Napi::Number::New(env, static_cast<double>(client_->ServerView().Bytes())));
    LpcClientHandle::Unwrap(port)->Adopt(std::move(client_));
    result.Set("port", port);
    return result;
  }

 private:
  LpcClasses* classes_;
  LpcConnectRequest request_;
  std::shared_ptr<LpcClient> client_;
};

// lpcConnect(name, connectionInfo | null, impersonationLevel, dynamicTracking, effectiveOnly,
//            viewBytes, serverSid | null): Promise<{ port, ... }>
Napi::Value LpcConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LpcConnectRequest request;
  uint32_t level = 0;
  uint32_t viewBytes = 0;
  if (!ReadPortName(info[0], kMaxLpcPortNameUnits, &request.name) ||
      !ReadOptionalBytes(info[1], "connectionInfo", kMaxLpcConnectionInfoBytes, &request.connectionInfo) ||
      !ReadUint32(info[2], "impersonationLevel", 0, 3, &level) ||
      !ReadBoolean(info[3], "dynamicTracking", &request.dynamicTracking) ||
      !ReadBoolean(info[4], "effectiveOnly", &request.effectiveOnly) ||
      !ReadUint32(info[5], "viewBytes", 0, static_cast<uint32_t>(kMaxLpcViewBytes), &viewBytes)) {
    return env.Undefined();
  }
  request.impersonation = static_cast<ImpersonationLevel>(level);
  request.viewBytes = viewBytes;
  if (!info[6].IsUndefined() && !info[6].IsNull()) {
    std::wstring sid;
    if (!info[6].IsString()) {
      Napi::TypeError error = Napi::TypeError::New(env, "serverSid must be a string");
      error.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
      error.ThrowAsJavaScriptException();
      return env.Undefined();
    }
    std::u16string units = info[6].As<Napi::String>().Utf16Value();
    sid.assign(units.begin(), units.end());
    if (!ParseSid(sid, &request.serverSid)) {
      ThrowInvalid(env, "serverSid must be a SID in string form, such as S-1-5-18, or an SDDL alias such as SY");
      return env.Undefined();
    }
  }
  return PoolJob::Submit(env, std::make_unique<ConnectJob>(env, ClassesOf(info), std::move(request)));
}

// ---- server ----

// The views of one accepted connection, as mapped into this process.
struct ConnectionViews {
  LpcView own;
  LpcView client;
};

// The server's JS-thread state, shared with the jobs its receiving thread posts. Released on
// the JS thread only, until the environment's teardown has released its JS references: the last
// references are held by those jobs, the receiving thread's listener or the wrapper.
struct ServerState : EnvResource {
  explicit ServerState(std::shared_ptr<CompletionQueue> queue) : completions(queue), hold(std::move(queue)) {}

  // Stops the receiving thread (the environment waits for its end, ServerListener's hold) and
  // closes the connections; unverified: LPC does not run under Wine.
  void Teardown() override {
    closed = true;
    views.clear();  // before Stop() unmaps them
    if (std::shared_ptr<LpcServer> running = server.lock()) running->Stop();
    onMessage.Reset();
    onEnd.Reset();
    closeWaiters.clear();
  }

  std::weak_ptr<LpcServer> server;
  Napi::FunctionReference onMessage;
  Napi::FunctionReference onEnd;
  std::vector<Napi::Promise::Deferred> closeWaiters;
  std::shared_ptr<CompletionQueue> completions;
  size_t maxMessageLength = 0;
  // Views of the open connections. An entry goes before its connection's handle can close
  // (which unmaps the views), so a view found here is mapped.
  std::unordered_map<uint64_t, ConnectionViews> views;
  bool closed = false;   // close() called: no new views, no more calls
  bool started = false;  // the receiving thread runs or ran
  bool ended = false;    // the receiving thread has ended
  LoopHold hold;

  // An open server keeps the event loop alive while referenced, as a listening socket does.
  void UpdateKeepAlive(Napi::Env env) { hold.SetBusy(env, !ended); }
};

class MessageJob : public CompletionQueue::Job {
 public:
  MessageJob(std::shared_ptr<ServerState> state, LpcReceived received)
      : state_(std::move(state)), received_(std::move(received)) {}

  void Settle(Napi::Env env) override {
    if (state_->closed || state_->onMessage.IsEmpty()) return;
    state_->onMessage.Call({Napi::Number::New(env, static_cast<double>(received_.connectionId)),
                            Napi::Buffer<uint8_t>::Copy(env, received_.message.data(), received_.message.size())});
    RaisePending(env);
  }

 private:
  std::shared_ptr<ServerState> state_;
  LpcReceived received_;
};

class EndJob : public CompletionQueue::Job {
 public:
  EndJob(std::shared_ptr<ServerState> state, const Failure* failure) : state_(std::move(state)) {
    if (failure != nullptr) {
      failure_ = *failure;
      failed_ = true;
    }
  }

  void Settle(Napi::Env env) override {
    state_->ended = true;
    state_->UpdateKeepAlive(env);
    Napi::FunctionReference onEnd = std::move(state_->onEnd);
    state_->onMessage.Reset();
    if (!onEnd.IsEmpty()) {
      onEnd.Call({failed_ ? FailureToJs(env, failure_).Value() : env.Null()});
      RaisePending(env);
    }
    for (Napi::Promise::Deferred& waiter : state_->closeWaiters) waiter.Resolve(env.Undefined());
    state_->closeWaiters.clear();
  }

 private:
  std::shared_ptr<ServerState> state_;
  Failure failure_;
  bool failed_ = false;
};

class ServerListener : public LpcServerListener {
 public:
  explicit ServerListener(std::shared_ptr<ServerState> state) : state_(std::move(state)), work_(state_->completions) {}
  void Received(LpcReceived received) override {
    state_->completions->Post(std::make_unique<MessageJob>(state_, std::move(received)));
  }
  void Ended(const Failure* failure) override { state_->completions->Post(std::make_unique<EndJob>(state_, failure)); }

 private:
  std::shared_ptr<ServerState> state_;
  // Released when the receiving thread lets go of the listener, after it closed the port.
  CompletionQueue::WorkHold work_;
};

class AcceptJob : public PoolJob {
 public:
  AcceptJob(Napi::Env env, std::shared_ptr<LpcServer> server, std::shared_ptr<ServerState> state,
            std::vector<uint8_t> message, size_t viewBytes)
      : PoolJob(env),
        server_(std::move(server)),
        state_(std::move(state)),
        message_(std::move(message)),
        viewBytes_(viewBytes) {}

 protected:
  bool Call(Failure* failure) override { return server_->Accept(std::move(message_), viewBytes_, &accepted_, failure); }

  // { connectionId, viewBytes, clientViewBytes }
  Napi::Value Result(Napi::Env env) override {
    // Closed while the call ran: Stop() has closed the connection and unmapped its views, and
    // lib/lpc-port.ts has already rejected this accept.
    if (!state_->closed) state_->views[accepted_.connectionId] = ConnectionViews{accepted_.view, accepted_.clientView};
    Napi::Object result = Napi::Object::New(env);
    result.Set("connectionId", Napi::Number::New(env, static_cast<double>(accepted_.connectionId)));
    result.Set("viewBytes", Napi::Number::New(env, static_cast<double>(accepted_.view.Bytes())));
    result.Set("clientViewBytes", Napi::Number::New(env, static_cast<double>(accepted_.clientView.Bytes())));
    return result;
  }

 private:
  std::shared_ptr<LpcServer> server_;
  std::shared_ptr<ServerState> state_;
  std::vector<uint8_t> message_;
  size_t viewBytes_;
  LpcAccepted accepted_;
};

class RefuseJob : public PoolJob {
 public:
  RefuseJob(Napi::Env env, std::shared_ptr<LpcServer> server, std::vector<uint8_t> message)
      : PoolJob(env), server_(std::move(server)), message_(std::move(message)) {}

 protected:
  bool Call(Failure* failure) override { return server_->Refuse(std::move(message_), failure); }

 private:
  std::shared_ptr<LpcServer> server_;
  std::vector<uint8_t> message_;
};

class CompleteJob : public PoolJob {
 public:
  CompleteJob(Napi::Env env, std::shared_ptr<LpcServer> server, uint64_t connectionId)
      : PoolJob(env), server_(std::move(server)), connectionId_(connectionId) {}

 protected:
  bool Call(Failure* failure) override { return server_->Complete(connectionId_, failure); }

 private:
  std::shared_ptr<LpcServer> server_;
  uint64_t connectionId_;
};

class ReplyJob : public PoolJob {
 public:
  ReplyJob(Napi::Env env, std::shared_ptr<LpcServer> server, uint64_t connectionId, std::vector<uint8_t> message)
      : PoolJob(env), server_(std::move(server)), connectionId_(connectionId), message_(std::move(message)) {}

 protected:
  bool Call(Failure* failure) override { return server_->Reply(connectionId_, std::move(message_), failure); }

 private:
  std::shared_ptr<LpcServer> server_;
  uint64_t connectionId_;
  std::vector<uint8_t> message_;
};

class LpcServerHandle : public Napi::ObjectWrap<LpcServerHandle> {
 public:
  static Napi::Function DefineClass(Napi::Env env) {
    return ObjectWrap<LpcServerHandle>::DefineClass(
        env, "LpcServerHandle",
        {InstanceMethod<&LpcServerHandle::Start>("start"), InstanceMethod<&LpcServerHandle::Accept>("accept"),
         InstanceMethod<&LpcServerHandle::Refuse>("refuse"), InstanceMethod<&LpcServerHandle::Complete>("complete"),
         InstanceMethod<&LpcServerHandle::Reply>("reply"),
         InstanceMethod<&LpcServerHandle::CloseConnection>("closeConnection"),
         InstanceMethod<&LpcServerHandle::Read>("readView"), InstanceMethod<&LpcServerHandle::Write>("writeView"),
         InstanceMethod<&LpcServerHandle::Close>("close"), InstanceMethod<&LpcServerHandle::Ref>("ref"),
         InstanceMethod<&LpcServerHandle::Unref>("unref")});
  }

  explicit LpcServerHandle(const Napi::CallbackInfo& info) : ObjectWrap<LpcServerHandle>(info) {}

  void Adopt(Napi::Env env, std::shared_ptr<LpcServer> server) {
    server_ = std::move(server);
    state_ = std::make_shared<ServerState>(GetAddonData(env)->completions);
    state_->maxMessageLength = server_->MaxMessageLength();
    state_->server = server_;
    GetAddonData(env)->Track(state_);
  }

  // Garbage collected without close(): stop the thread; nobody is left to hear of its end.
  void Finalize(Napi::Env env) override {
    if (state_ == nullptr || state_->closed) return;
    state_->hold.SetReferenced(env, false);
    CloseNow();
  }

 private:
  bool Closed() const { return state_ == nullptr || state_->closed; }

  // start(onMessage(connectionId, message), onEnd(error | null)): begins receiving.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ReadFunction(info[0], "onMessage") || !ReadFunction(info[1], "onEnd")) return env.Undefined();
    if (Closed() || state_->started) {
      ThrowInvalid(env, "the server is closed or already started");
      return env.Undefined();
    }
    state_->onMessage = Napi::Persistent(info[0].As<Napi::Function>());
    state_->onEnd = Napi::Persistent(info[1].As<Napi::Function>());
    Failure failure;
    if (!server_->Start(std::make_shared<ServerListener>(state_), &failure)) {
      state_->onMessage.Reset();
      state_->onEnd.Reset();
      FailureToJs(env, failure).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    state_->started = true;
    state_->UpdateKeepAlive(env);
    return env.Undefined();
  }

  // accept(message, viewBytes): Promise<{ connectionId, viewBytes, clientViewBytes }>. `message`
  // is the connection request's header with the server's connection info as data.
  Napi::Value Accept(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<uint8_t> message;
    uint32_t viewBytes = 0;
    if (!ReadConnectAnswer(info[0], &message) ||
        !ReadUint32(info[1], "viewBytes", 0, static_cast<uint32_t>(kMaxLpcViewBytes), &viewBytes)) {
      return env.Undefined();
    }
    if (Closed()) return RejectedPromise(env, ClosedPortError(env));
    return PoolJob::Submit(env, std::make_unique<AcceptJob>(env, server_, state_, std::move(message), viewBytes));
  }

  // refuse(message): Promise<void>; the client's connect fails with STATUS_PORT_CONNECTION_REFUSED.
  Napi::Value Refuse(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::vector<uint8_t> message;
    if (!ReadConnectAnswer(info[0], &message)) return env.Undefined();
    if (Closed()) return RejectedPromise(env, ClosedPortError(env));
    return PoolJob::Submit(env, std::make_unique<RefuseJob>(env, server_, std::move(message)));
  }

  // complete(connectionId): Promise<void>; the accepted client's connect returns.
  Napi::Value Complete(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t connectionId = 0;
    if (!ReadConnectionId(info[0], &connectionId)) return env.Undefined();
    if (Closed()) return RejectedPromise(env, ClosedPortError(env));
    return PoolJob::Submit(env, std::make_unique<CompleteJob>(env, server_, connectionId));
  }

  // reply(connectionId, message): Promise<void>.
  Napi::Value Reply(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t connectionId = 0;
    std::vector<uint8_t> message;
    if (!ReadConnectionId(info[0], &connectionId) || !ReadMessage(info[1], state_->maxMessageLength, &message)) {
      return env.Undefined();
    }
    if (Closed()) return RejectedPromise(env, ClosedPortError(env));
    return PoolJob::Submit(env, std::make_unique<ReplyJob>(env, server_, connectionId, std::move(message)));
  }

  Napi::Value CloseConnection(const Napi::CallbackInfo& info) {
    uint64_t connectionId = 0;
    if (!ReadConnectionId(info[0], &connectionId)) return info.Env().Undefined();
    if (!Closed()) {
      state_->views.erase(connectionId);
      server_->CloseConnection(connectionId);
    }
    return info.Env().Undefined();
  }

  // readView(connectionId, view, offset, length): Buffer. view 0 = the server's own section,
  // 1 = the client's section as mapped here.
  Napi::Value Read(const Napi::CallbackInfo& info) {
    const LpcView* view = FindView(info);
    return view == nullptr ? info.Env().Undefined() : ReadView(info, *view, 2);
  }

  Napi::Value Write(const Napi::CallbackInfo& info) {
    const LpcView* view = FindView(info);
    return view == nullptr ? info.Env().Undefined() : WriteView(info, *view, 2);
  }

  // close(): Promise<void>, settled once the receiving thread has ended and the port is closed.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Promise::Deferred closed = Napi::Promise::Deferred::New(env);
    if (!Closed()) CloseNow();
    if (state_ != nullptr && state_->started && !state_->ended) {
      state_->closeWaiters.push_back(closed);
    } else {
      closed.Resolve(env.Undefined());
    }
    return closed.Promise();
  }

  Napi::Value Ref(const Napi::CallbackInfo& info) { return SetReferenced(info, state_, true); }
  Napi::Value Unref(const Napi::CallbackInfo& info) { return SetReferenced(info, state_, false); }

  // The receiving thread and the jobs in flight hold their own references to the server; the
  // port closes after the last of them.
  void CloseNow() {
    state_->closed = true;
    state_->views.clear();  // before Stop() unmaps them
    server_->Stop();
    server_.reset();
  }

  const LpcView* FindView(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t connectionId = 0;
    ViewKind kind;
    if (!ReadConnectionId(info[0], &connectionId) || !ReadViewKind(info[1], &kind)) return nullptr;
    auto found = Closed() ? state_->views.end() : state_->views.find(connectionId);
    if (Closed() || found == state_->views.end()) {
      FltportErrorToJs(env, "ERR_FLTPORT_CLOSED", "the connection is closed").ThrowAsJavaScriptException();
      return nullptr;
    }
    return kind == kOwnView ? &found->second.own : &found->second.client;
  }

  // A connection request's answer: header plus at most LPC_MAX_CONNECTION_INFO_SIZE of info.
  static bool ReadConnectAnswer(const Napi::Value& value, std::vector<uint8_t>* message) {
    return ReadMessage(value, kPortMessageBytes + kMaxLpcConnectionInfoBytes, message);
  }

  static bool ReadConnectionId(const Napi::Value& value, uint64_t* connectionId) {
    uint32_t id = 0;
    if (!ReadUint32(value, "connectionId", 1, UINT32_MAX, &id)) return false;
    *connectionId = id;
    return true;
  }

  std::shared_ptr<LpcServer> server_;
  std::shared_ptr<ServerState> state_;
};

class CreateServerJob : public PoolJob {
 public:
  CreateServerJob(Napi::Env env, LpcClasses* classes, std::wstring name, uint32_t maxInfo, uint32_t maxMessage)
      : PoolJob(env), classes_(classes), name_(std::move(name)), maxInfo_(maxInfo), maxMessage_(maxMessage) {}

 protected:
  bool Call(Failure* failure) override { return LpcServer::Create(name_, maxInfo_, maxMessage_, &server_, failure); }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object wrapper = classes_->server.New({});
    if (env.IsExceptionPending()) return env.Undefined();  // as for a client, above
    LpcServerHandle::Unwrap(wrapper)->Adopt(env, std::move(server_));
    return wrapper;
  }

 private:
  LpcClasses* classes_;
  std::wstring name_;
  uint32_t maxInfo_;
  uint32_t maxMessage_;
  std::shared_ptr<LpcServer> server_;
};

// lpcCreateServer(name, maxConnectionInfoLength, maxMessageLength): Promise<LpcServerHandle>.
// maxMessageLength counts the 40-byte header, as NtCreatePort does.
Napi::Value LpcCreateServer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::wstring name;
  uint32_t maxInfo = 0;
  uint32_t maxMessage = 0;
  if (!ReadPortName(info[0], kMaxLpcPortNameUnits, &name) ||
      !ReadUint32(info[1], "maxConnectionInfoLength", 0, kMaxLpcConnectionInfoBytes, &maxInfo) ||
      !ReadUint32(info[2], "maxMessageLength", kPortMessageBytes, kMaxPortMessageLength, &maxMessage)) {
    return env.Undefined();
  }
  return PoolJob::Submit(env, std::make_unique<CreateServerJob>(env, ClassesOf(info), std::move(name), maxInfo, maxMessage));
}

// lpcMissingEntryPoint('client' | 'server'): null, or the error a call would fail with because
// this ntdll lacks an entry point that side needs.
Napi::Value LpcMissingEntryPoint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string role = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : std::string();
  if (role != "client" && role != "server") {
    ThrowInvalid(env, "role must be 'client' or 'server'");
    return env.Undefined();
  }
  Failure failure;
  bool present = role == "client" ? RequireNtdll(kClientEntryPoints, std::size(kClientEntryPoints), &failure)
                                  : RequireNtdll(kServerEntryPoints, std::size(kServerEntryPoints), &failure);
  return present ? env.Null() : FailureToJs(env, failure).Value();
}

}  // namespace

void InitLpcPort(Napi::Env env, Napi::Object exports) {
  auto* classes = new LpcClasses();
  classes->client = Napi::Persistent(LpcClientHandle::DefineClass(env));
  classes->server = Napi::Persistent(LpcServerHandle::DefineClass(env));
  env.AddCleanupHook([](LpcClasses* data) { delete data; }, classes);
  exports.Set("lpcConnect", Napi::Function::New<LpcConnect>(env, "lpcConnect", classes));
  exports.Set("lpcCreateServer", Napi::Function::New<LpcCreateServer>(env, "lpcCreateServer", classes));
  exports.Set("lpcMissingEntryPoint", Napi::Function::New<LpcMissingEntryPoint>(env, "lpcMissingEntryPoint"));
}

}  // namespace fltport
