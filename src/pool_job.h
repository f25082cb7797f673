// A blocking Windows call run on Windows thread-pool threads (not libuv's four shared threads)
// through the WorkQueue, settling a promise on the JS thread through the CompletionQueue.
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
  // The first job queued in a turn of the event loop goes at once; the rest of that turn's jobs
  // reach the WorkQueue together from a process.nextTick callback, which runs once the turn's
  // promise reactions are done (a nextTick queued from a reaction runs after all of them). A
  // burst of replies or sends then wakes one pool thread from the JS thread, not one each: on a
  // busy machine every wake-up can cost the JS thread its CPU. (setImmediate would do the same
  // but makes the event loop poll once more per turn, a system call each time.)
  static Napi::Promise Submit(Napi::Env env, std::unique_ptr<PoolJob> job);

  // At module load: captures process.nextTick before any code can replace it.
  static void Init(Napi::Env env);

  void Settle(Napi::Env env) final {
    if (succeeded_) {
      deferred_.Resolve(Result(env));
    } else {
      deferred_.Reject(FailureToJs(env, failure_).Value());
    }
  }

 protected:
  // On a pool thread: the call itself; on failure it fills `failure` and returns false.
  virtual bool Call(Failure* failure) = 0;
  // On the JS thread after Call() succeeded.
  virtual Napi::Value Result(Napi::Env env) { return env.Undefined(); }

  // For calls that return an HRESULT (fltlib).
  static bool Succeeded(HRESULT hr, const char* syscall, Failure* failure) {
    if (SUCCEEDED(hr)) return true;
    *failure = Failure::FromHResult(syscall, hr);
    return false;
  }

 private:
  static Napi::Value SubmitStaged(const Napi::CallbackInfo& info);
  static void SubmitStaged(Napi::Env env);

  void Run() final {
    std::unique_ptr<PoolJob> job(this);
    succeeded_ = Call(&failure_);
    std::shared_ptr<CompletionQueue> completions = completions_;
    completions->Post(std::move(job), true);
  }

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<CompletionQueue> completions_;
  Failure failure_;
  bool succeeded_ = false;
};

}  // namespace fltport
