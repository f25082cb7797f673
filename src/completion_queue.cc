#include "completion_queue.h"

#include <utility>

namespace fltport {

CompletionQueue::CompletionQueue(Napi::Env env) {
  wakeup_ = Wakeup::New(env, "fltport completions", 0, 1, this);
  wakeup_.Unref(env);
}

void CompletionQueue::KeepAlive(Napi::Env env) {
  if (keptAlive_++ == 0) wakeup_.Ref(env);
}

void CompletionQueue::LetGo(Napi::Env env) {
  if (--keptAlive_ == 0) wakeup_.Unref(env);
}

void CompletionQueue::Post(std::unique_ptr<Job> job, bool keptAlive) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) {
      // The job may hold JS references that can no longer be released from here; the process
      // or worker is going away, so leaking them is the safe end.
      job.release();
      return;
    }
    ready_.push_back(Ready{std::move(job), keptAlive});
    wake = ready_.size() == 1;
  }
  if (wake) wakeup_.NonBlockingCall(nullptr);
}

void CompletionQueue::Drain(Napi::Env env, Napi::Function, CompletionQueue* queue, std::nullptr_t*) {
  if (env == nullptr) return;
  std::vector<Ready> batch;
  {
    std::lock_guard<std::mutex> lock(queue->mutex_);
    batch.swap(queue->ready_);
  }
  for (Ready& ready : batch) {
    Napi::HandleScope scope(env);
    ready.job->Settle(env);
    ready.job.reset();
    if (ready.keptAlive) queue->LetGo(env);
  }
}

void CompletionQueue::Close() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    for (Ready& ready : ready_) ready.job.release();
    ready_.clear();
  }
  wakeup_.Abort();
}

}  // namespace fltport
