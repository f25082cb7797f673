#include "pool_job.h"

#include <utility>
#include <vector>

namespace fltport {

void PoolJob::Init(Napi::Env env) {
  AddonData* data = GetAddonData(env);
  Napi::Value setImmediate = env.Global().Get("setImmediate");
  if (setImmediate.IsFunction()) data->setImmediate = Napi::Persistent(setImmediate.As<Napi::Function>());
  data->submitStaged = Napi::Persistent(Napi::Function::New<&PoolJob::SubmitStaged>(env, "submitStaged"));
}

Napi::Promise PoolJob::Submit(Napi::Env env, std::unique_ptr<PoolJob> job) {
  Napi::Promise promise = job->deferred_.Promise();
  job->completions_->KeepAlive(env);
  AddonData* data = GetAddonData(env);
  data->stagedJobs.push_back(job.release());
  if (data->stagedJobs.size() > 1) return promise;
  if (!data->setImmediate.IsEmpty()) {
    data->setImmediate.Call({data->submitStaged.Value()});
    if (!env.IsExceptionPending()) return promise;
    env.GetAndClearPendingException();  // no turn to wait for (the environment is ending): at once
  }
  SubmitStaged(env);
  return promise;
}

Napi::Value PoolJob::SubmitStaged(const Napi::CallbackInfo& info) {
  SubmitStaged(info.Env());
  return info.Env().Undefined();
}

void PoolJob::SubmitStaged(Napi::Env env) {
  AddonData* data = GetAddonData(env);
  std::vector<WorkItem*> items(data->stagedJobs.begin(), data->stagedJobs.end());
  data->stagedJobs.clear();
  std::vector<WorkItem*> refused = WorkQueue::Shared().Submit(std::move(items));
  if (refused.empty()) return;
  Failure failure = Failure::FromLastError("TrySubmitThreadpoolCallback");
  for (WorkItem* item : refused) {
    std::unique_ptr<PoolJob> job(static_cast<PoolJob*>(item));
    job->completions_->LetGo(env);
    job->deferred_.Reject(FailureToJs(env, failure).Value());
  }
}

}  // namespace fltport
