// A blocking Windows call run on Windows thread-pool threads (not libuv's four shared threads)
// through a WorkQueue, settling a promise on the JS thread through the CompletionQueue.
#pragma once

#include <napi.h>

#include <memory>

#include "addon_data.h"
#include "js_values.h"
#include "win/failure.h"
#include "win/work_queue.h"

namespace fltport {

class PoolJob : public CompletionQueue::Job, public WorkItem {
 public:
  explicit PoolJob(Napi::Env env)
      : deferred_(Napi::Promise::Deferred::New(env)), completions_(GetAddonData(env)->completions) {}

  // Queues `job`; the returned promise settles with Result() or the Failure that Call() reported.
  // The first job queued in a turn of the event loop goes at once; the jobs queued after it reach
  // the WorkQueue together from a reaction on an already settled promise, which runs after the
  // reactions queued before it: a burst of replies or sends made by one callback, or by one
  // round of promise reactions, then wakes one pool thread from the JS thread, not one each (on
  // a busy machine every wake-up can cost the JS thread its CPU). process.nextTick would also
  // cover later rounds, but costs a tick object and a pass of Node's tick queue per turn;
  // setImmediate makes the event loop poll once more per turn, a system call each time.
  static Napi::Promise Submit(Napi::Env env, std::unique_ptr<PoolJob> job);

  // At module load: keeps a settled promise and Promise.prototype.then, so that replacing
  // Promise.prototype.then later changes nothing here.
  static void Init(Napi::Env env);

  void Settle(Napi::Env env) final {
    Finished(env);
    if (!succeeded_) {
      deferred_.Reject(FailureToJs(env, failure_).Value());
      return;
    }
    Napi::Value result = Result(env);
    // Result() failed (out of memory, say): the promise carries that failure.
    if (env.IsExceptionPending()) {
      deferred_.Reject(env.GetAndClearPendingException().Value());
    } else {
      deferred_.Resolve(result);
    }
  }

 protected:
  // On a pool thread: the call itself; on failure it fills `failure` and returns false.
  virtual bool Call(Failure* failure) = 0;
  // On the JS thread after Call() succeeded.
  virtual Napi::Value Result(Napi::Env env) { return env.Undefined(); }
  // True for a call that waits as long as the other side wants (it runs on WorkQueue::Blocking).
  virtual bool MayBlock() const { return false; }
  // JS thread: the job was submitted / is settling. By default it holds the event loop while in
  // flight; a port's calls count towards the port's ref()/unref() instead.
  virtual void Started(Napi::Env env) { completions_->KeepAlive(env); }
  virtual void Finished(Napi::Env env) { completions_->LetGo(env); }

  // For calls that return an HRESULT (fltlib).
  static bool Succeeded(HRESULT hr, const char* syscall, Failure* failure) {
    if (SUCCEEDED(hr)) return true;
    *failure = Failure::FromHResult(syscall, hr);
    return false;
  }

 private:
  static Napi::Value SubmitStaged(const Napi::CallbackInfo& info);
  static void SubmitStaged(Napi::Env env);

  void Run() noexcept final {
    std::unique_ptr<PoolJob> job(this);
    // The environment has ended: the call is not made, and Post() releases the job.
    if (!completions_->Closed()) {
      // A pool thread: nothing may leave it. Only allocation can throw in a Call().
      try {
        succeeded_ = Call(&failure_);
      } catch (...) {
        succeeded_ = false;
        failure_ = Failure::FromHResult("a thread-pool call of fltport", E_OUTOFMEMORY);
      }
    }
    std::shared_ptr<CompletionQueue> completions = completions_;
    completions->Post(std::move(job));
  }

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<CompletionQueue> completions_;
  Failure failure_;
  bool succeeded_ = false;
};

}  // namespace fltport
