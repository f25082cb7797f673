// Hands results from Windows threads back to the JS thread. One thread-safe function per addon
// instance; a wake-up drains every job that is ready, so a burst of completions costs one hop.
#pragma once

#include <napi.h>
#include <windows.h>

#include <atomic>
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

  // Held by native work that posts to the queue and must end with its environment (a read in
  // flight, a stream's reads, an LPC server's thread): WaitForWork() waits for every hold to go.
  class WorkHold {
   public:
    explicit WorkHold(std::shared_ptr<CompletionQueue> queue);
    WorkHold(const WorkHold& other);
    WorkHold& operator=(const WorkHold&) = delete;
    ~WorkHold();

   private:
    std::shared_ptr<CompletionQueue> queue_;
  };

  static constexpr DWORD kLazyDelayMs = 2;

  explicit CompletionQueue(Napi::Env env);
  CompletionQueue(const CompletionQueue&) = delete;
  CompletionQueue& operator=(const CompletionQueue&) = delete;

  // JS thread: the event loop stays alive while KeepAlive() calls outnumber LetGo() calls.
  void KeepAlive(Napi::Env env);
  void LetGo(Napi::Env env);

  // Any thread. After Close() the job is destroyed on the posting thread, unsettled: it must
  // hold no JS reference by then (the environment's teardown has released them).
  void Post(std::unique_ptr<Job> job) noexcept;

  // Any thread: true once Close() has begun; work not yet started need not run.
  bool Closed() const { return closed_.load(std::memory_order_acquire); }

  // JS thread, at environment teardown (again harmlessly): from now on nothing reaches JS; the
  // jobs waiting are destroyed here.
  void Close();

  // JS thread, after Close(): waits up to `timeoutMs` for every WorkHold to go. False when some
  // were still held; their work then ends on its own, on native state only.
  bool WaitForWork(DWORD timeoutMs);

 private:
  static void Drain(Napi::Env env, Napi::Function callback, CompletionQueue* queue, std::nullptr_t* data);
  using Wakeup = Napi::TypedThreadSafeFunction<CompletionQueue, std::nullptr_t, &CompletionQueue::Drain>;

  static void CALLBACK LazyDue(PTP_CALLBACK_INSTANCE, void* context, PTP_TIMER) noexcept;
  void WorkHoldReleased();

  Wakeup wakeup_;
  PTP_TIMER lazyTimer_ = nullptr;
  SrwMutex mutex_;
  std::vector<std::unique_ptr<Job>> ready_;
  bool wakeRequested_ = false;  // a Drain is on its way
  bool lazyTimerSet_ = false;
  std::atomic<bool> closed_{false};
  std::atomic<size_t> workHolds_{0};
  HANDLE workDone_ = nullptr;  // under mutex_: set while WaitForWork() waits
  size_t keptAlive_ = 0;       // JS thread only
};

// What ref()/unref() switch for one port: the event loop is held while the port is referenced
// and busy (reads pending, a server running, calls in flight), as Node does for sockets.
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
