#include "pool_job.h"

#include <utility>
#include <vector>

namespace fltport {

void PoolJob::Init(Napi::Env env) {
  AddonData* data = GetAddonData(env);
  Napi::Promise::Deferred settled = Napi::Promise::Deferred::New(env);
  settled.Resolve(env.Undefined());
  Napi::Value then = settled.Promise().Get("then");
  if (then.IsFunction()) {
    data->settledPromise = Napi::Persistent(static_cast<Napi::Object>(settled.Promise()));
    data->promiseThen = Napi::Persistent(then.As<Napi::Function>());
  }
  data->submitStaged = Napi::Persistent(Napi::Function::New<&PoolJob::SubmitStaged>(env, "submitStaged"));
}

Napi::Promise PoolJob::Submit(Napi::Env env, std::unique_ptr<PoolJob> job) {
  Napi::Promise promise = job->deferred_.Promise();
  job->Started(env);
  AddonData* data = GetAddonData(env);
  data->stagedJobs.push_back(job.release());
  if (data->turnStarted) return promise;  // the reaction queued by the first one submits it
  // The first job of a turn goes at once; the rest of the turn's jobs follow together.
  SubmitStaged(env);
  if (data->promiseThen.IsEmpty()) return promise;
  data->promiseThen.Call(data->settledPromise.Value(), {data->submitStaged.Value()});
  if (env.IsExceptionPending()) {
    // The flush could not be queued (the environment is ending, or user code made Promise's
    // species throw): this job went at once, and so does every later one until a flush is queued.
    env.GetAndClearPendingException();
    return promise;
  }
  data->turnStarted = true;
  return promise;
}

Napi::Value PoolJob::SubmitStaged(const Napi::CallbackInfo& info) {
  GetAddonData(info.Env())->turnStarted = false;
  SubmitStaged(info.Env());
  return info.Env().Undefined();
}

void PoolJob::SubmitStaged(Napi::Env env) {
  AddonData* data = GetAddonData(env);
  if (data->stagedJobs.empty()) return;
  std::vector<WorkItem*> blocking;
  std::vector<WorkItem*> quick;
  for (PoolJob* job : data->stagedJobs) (job->MayBlock() ? blocking : quick).push_back(job);
  data->stagedJobs.clear();
  for (auto [queue, items] : {std::make_pair(&WorkQueue::Blocking(), &blocking), std::make_pair(&WorkQueue::Quick(), &quick)}) {
    if (queue->Submit(*items)) continue;
    Failure failure = Failure::FromLastError("CreateThreadpoolWork");
    for (WorkItem* item : *items) {
      std::unique_ptr<PoolJob> job(static_cast<PoolJob*>(item));
      job->Finished(env);
      job->deferred_.Reject(FailureToJs(env, failure).Value());
    }
  }
}

}  // namespace fltport
