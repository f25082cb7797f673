// Hands results from Windows threads back to the JS thread. One thread-safe function per addon
// instance; a wake-up drains every job that is ready, so a burst of completions costs one hop.
#pragma once

#include <napi.h>
#include <windows.h>

#include <memory>
#include <mutex>
#include <vector>

#include "win/srw_mutex.h"

namespace fltport {

class CompletionQueue {
 public:
  class Job {
   public:
    virtual ~Job() = default;
    // Runs on the JS thread inside its own handle scope.
    virtual void Settle(Napi::Env env) = 0;
    // True for a job that need not wake the JS thread: it settles with the next wake-up, or
    // when a thread-pool timer due kLazyDelayMs after it was posted fires (Windows may round
    // that up to its clock tick).
    virtual bool CanWait() const { return false; }
  };

  static constexpr DWORD kLazyDelayMs = 2;

  explicit CompletionQueue(Napi::Env env);
  CompletionQueue(const CompletionQueue&) = delete;
  CompletionQueue& operator=(const CompletionQueue&) = delete;

  // JS thread: the event loop stays alive while any job submitted with KeepAlive() is unsettled.
  void KeepAlive(Napi::Env env);
  void LetGo(Napi::Env env);

  // Any thread. After Close() the job is dropped unsettled: JS is gone by then.
  void Post(std::unique_ptr<Job> job, bool keptAlive);

  // JS thread, at environment teardown.
  void Close();

 private:
  struct Ready {
    std::unique_ptr<Job> job;
    bool keptAlive;
  };
  static void Drain(Napi::Env env, Napi::Function callback, CompletionQueue* queue, std::nullptr_t* data);
  using Wakeup = Napi::TypedThreadSafeFunction<CompletionQueue, std::nullptr_t, &CompletionQueue::Drain>;

  static void CALLBACK LazyDue(PTP_CALLBACK_INSTANCE, void* context, PTP_TIMER) noexcept;

  Wakeup wakeup_;
  PTP_TIMER lazyTimer_ = nullptr;
  SrwMutex mutex_;
  std::vector<Ready> ready_;
  bool wakeRequested_ = false;  // a Drain is on its way
  bool lazyTimerSet_ = false;
  bool closed_ = false;
  size_t keptAlive_ = 0;  // JS thread only
};

// What ref()/unref() switch for one port: the event loop is held while the port is referenced
// and busy (reads pending, a server running), as Node does for sockets.
class LoopHold {
 public:
  explicit LoopHold(std::shared_ptr<CompletionQueue> queue) : queue_(std::move(queue)) {}
  LoopHold(const LoopHold&) = delete;
  LoopHold& operator=(const LoopHold&) = delete;

  // JS thread only.
  void SetReferenced(Napi::Env env, bool referenced) {
    referenced_ = referenced;
    Apply(env);
  }
  void SetBusy(Napi::Env env, bool busy) {
    busy_ = busy;
    Apply(env);
  }

 private:
  void Apply(Napi::Env env) {
    bool wanted = referenced_ && busy_;
    if (wanted == holding_) return;
    holding_ = wanted;
    if (wanted) {
      queue_->KeepAlive(env);
    } else {
      queue_->LetGo(env);
    }
  }

  std::shared_ptr<CompletionQueue> queue_;
  bool referenced_ = true;
  bool busy_ = false;
  bool holding_ = false;
};

// The JS ref()/unref() of a port wrapper whose state (null once released) has a LoopHold `hold`.
template <typename State>
Napi::Value SetReferenced(const Napi::CallbackInfo& info, const std::shared_ptr<State>& state, bool referenced) {
  if (state != nullptr) state->hold.SetReferenced(info.Env(), referenced);
  return info.Env().Undefined();
}

}  // namespace fltport
