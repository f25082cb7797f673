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
  PoolJob(Napi::Env env, const char* syscall)
      : deferred_(Napi::Promise::Deferred::New(env)), completions_(GetAddonData(env)->completions), syscall_(syscall) {}

  // Queues `job`; the returned promise settles with Result() or a WinError for the HRESULT.
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
    if (FAILED(result_)) {
      deferred_.Reject(FailureToJs(env, Failure::FromHResult(syscall_, result_)).Value());
    } else {
      deferred_.Resolve(Result(env));
    }
  }

 protected:
  // On a pool thread: the call itself.
  virtual HRESULT Run() = 0;
  // On the JS thread after Run() succeeded.
  virtual Napi::Value Result(Napi::Env env) = 0;

 private:
  static void CALLBACK Work(PTP_CALLBACK_INSTANCE, void* context) {
    std::unique_ptr<PoolJob> job(static_cast<PoolJob*>(context));
    job->result_ = job->Run();
    std::shared_ptr<CompletionQueue> completions = job->completions_;
    completions->Post(std::move(job), true);
  }

  Napi::Promise::Deferred deferred_;
  std::shared_ptr<CompletionQueue> completions_;
  const char* syscall_;
  HRESULT result_ = E_FAIL;
};

}  // namespace fltport
