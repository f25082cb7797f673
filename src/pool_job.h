// A blocking Windows call run on Windows thread-pool work (not libuv's four shared threads),
// settling a promise on the JS thread through the CompletionQueue.
#pragma once

#include <napi.h>

#include <memory>

#include "addon_data.h"
#include "js_values.h"
#include "win/failure.h"

namespace fltport {

class PoolJob : public CompletionQueue::Job {
 public:
  explicit PoolJob(Napi::Env env)
      : deferred_(Napi::Promise::Deferred::New(env)), completions_(GetAddonData(env)->completions) {}

  // Queues `job`; the returned promise settles with Result() or the Failure that Run() reported.
  static Napi::Promise Submit(Napi::Env env, std::unique_ptr<PoolJob> job) {
    Napi::Promise promise = job->deferred_.Promise();
    job->completions_->KeepAlive(env);
    if (!TrySubmitThreadpoolCallback(&PoolJob::Work, job.get(), nullptr)) {
      job->completions_->LetGo(env);
      job->deferred_.Reject(FailureToJs(env, Failure::FromLastError("TrySubmitThreadpoolCallback")).Value());
      return promise;
    }
    job.release();  // the pool callback owns it now
    return promise;
  }

  void Settle(Napi::Env env) final {
    if (succeeded_) {
      deferred_.Resolve(Result(env));
    } else {
      deferred_.Reject(FailureToJs(env, failure_).Value());
    }
  }

 protected:
  // On a pool thread: the call itself; on failure it fills `failure` and returns false.
  virtual bool Run(Failure* failure) = 0;
  // On the JS thread after Run() succeeded.
  virtual Napi::Value Result(Napi::Env env) { return env.Undefined(); }

  // For calls that return an HRESULT (fltlib).
  static bool Succeeded(HRESULT hr, const char* syscall, Failure* failure) {
    if (SUCCEEDED(hr)) return true;
    *failure = Failure::FromHResult(syscall, hr);
    return false;
  }

 private:
  static void CALLBACK Work(PTP_CALLBACK_INSTANCE, void* context) {
    std::unique_ptr<PoolJob> job(static_cast<PoolJob*>(context));
    job->succeeded_ = job->Run(&job->failure_);
    std::shared_ptr<CompletionQueue> completions = job->completions_;
    completions->Post(std::move(job), true);
  }

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<CompletionQueue> completions_;
  Failure failure_;
  bool succeeded_ = false;
};

}  // namespace fltport
