#include "completion_queue.h"

#include <utility>

namespace fltport {

CompletionQueue::CompletionQueue(Napi::Env env) {
  wakeup_ = Wakeup::New(env, "fltport completions", 0, 1, this);
  wakeup_.Unref(env);
  // Without the timer every job wakes the JS thread, which is correct, only slower.
  lazyTimer_ = CreateThreadpoolTimer(&CompletionQueue::LazyDue, this, nullptr);
}

void CompletionQueue::KeepAlive(Napi::Env env) {
  if (keptAlive_++ == 0) wakeup_.Ref(env);
}

void CompletionQueue::LetGo(Napi::Env env) {
  if (--keptAlive_ == 0) wakeup_.Unref(env);
}

void CompletionQueue::Post(std::unique_ptr<Job> job, bool keptAlive) {
  {
    std::lock_guard<SrwMutex> lock(mutex_);
    if (closed_) {
      // The job may hold JS references that can no longer be released from here; the process
      // or worker is going away, so leaking them is the safe end.
      job.release();
      return;
    }
    bool canWait = job->CanWait() && lazyTimer_ != nullptr;
    ready_.push_back(Ready{std::move(job), keptAlive});
    if (wakeRequested_) {
      // The coming Drain takes this job too.
    } else if (!canWait) {
      // Under the lock, so that Close() cannot abort the wake-up function in between.
      wakeRequested_ = true;
      wakeup_.NonBlockingCall(nullptr);
    } else if (!lazyTimerSet_) {
      // Under the lock, so that Close() cannot free the timer in between.
      lazyTimerSet_ = true;
      FILETIME due;
      ULARGE_INTEGER relative;
      relative.QuadPart = static_cast<ULONGLONG>(-static_cast<LONGLONG>(kLazyDelayMs) * 10000);
      due.dwLowDateTime = relative.LowPart;
      due.dwHighDateTime = relative.HighPart;
      SetThreadpoolTimer(lazyTimer_, &due, 0, 0);
    }
  }
}

void CALLBACK CompletionQueue::LazyDue(PTP_CALLBACK_INSTANCE, void* context, PTP_TIMER) noexcept {
  auto* queue = static_cast<CompletionQueue*>(context);
  std::lock_guard<SrwMutex> lock(queue->mutex_);
  queue->lazyTimerSet_ = false;
  if (queue->closed_ || queue->ready_.empty() || queue->wakeRequested_) return;
  queue->wakeRequested_ = true;
  queue->wakeup_.NonBlockingCall(nullptr);
}

void CompletionQueue::Drain(Napi::Env env, Napi::Function, CompletionQueue* queue, std::nullptr_t*) {
  if (env == nullptr) return;
  std::vector<Ready> batch;
  {
    std::lock_guard<SrwMutex> lock(queue->mutex_);
    batch.swap(queue->ready_);
    queue->wakeRequested_ = false;
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
    std::lock_guard<SrwMutex> lock(mutex_);
    closed_ = true;
    for (Ready& ready : ready_) ready.job.release();
    ready_.clear();
  }
  if (lazyTimer_ != nullptr) {
    SetThreadpoolTimer(lazyTimer_, nullptr, 0, 0);
    WaitForThreadpoolTimerCallbacks(lazyTimer_, TRUE);
    CloseThreadpoolTimer(lazyTimer_);
    lazyTimer_ = nullptr;
  }
  wakeup_.Abort();
}

}  // namespace fltport
