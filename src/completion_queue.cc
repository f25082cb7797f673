#include "completion_queue.h"

#include <new>
#include <utility>

#include "js_values.h"
#include "win/unique_handle.h"

namespace fltport {

CompletionQueue::WorkHold::WorkHold(std::shared_ptr<CompletionQueue> queue) : queue_(std::move(queue)) {
  queue_->workHolds_.fetch_add(1, std::memory_order_relaxed);
}

CompletionQueue::WorkHold::WorkHold(const WorkHold& other) : WorkHold(other.queue_) {}

CompletionQueue::WorkHold::~WorkHold() {
  if (queue_->workHolds_.fetch_sub(1, std::memory_order_acq_rel) == 1) queue_->WorkHoldReleased();
}

CompletionQueue::CompletionQueue(Napi::Env env) {
  wakeup_ = Wakeup::New(env, "fltport completions", 0, 1, this);
  wakeup_.Unref(env);
  // Without the timer every job wakes the JS thread, which is correct, only slower.
  lazyTimer_ = CreateThreadpoolTimer(&CompletionQueue::LazyDue, this, nullptr);
}

// After Close() the thread-safe function is aborted (Node frees it soon after): not touched again.
void CompletionQueue::KeepAlive(Napi::Env env) {
  if (keptAlive_++ == 0 && !Closed()) wakeup_.Ref(env);
}

void CompletionQueue::LetGo(Napi::Env env) {
  if (--keptAlive_ == 0 && !Closed()) wakeup_.Unref(env);
}

void CompletionQueue::Post(std::unique_ptr<Job> job) noexcept {
  {
    std::lock_guard<SrwMutex> lock(mutex_);
    if (!Closed()) {
      bool canWait = job->CanWait() && lazyTimer_ != nullptr;
      try {
        ready_.push_back(std::move(job));
      } catch (const std::bad_alloc&) {
        // No memory to queue it. It may hold JS references that only the JS thread may release,
        // so it is leaked and its promise stays pending: the last resort instead of a crash
        // (every caller of Post runs where an exception would end the process).
        job.release();
        return;
      }
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
  // Closed: `job` is destroyed here, outside the lock (what it releases may take it again), and
  // with it the connection references it held, so the kernel connection closes after all.
}

void CALLBACK CompletionQueue::LazyDue(PTP_CALLBACK_INSTANCE, void* context, PTP_TIMER) noexcept {
  auto* queue = static_cast<CompletionQueue*>(context);
  std::lock_guard<SrwMutex> lock(queue->mutex_);
  queue->lazyTimerSet_ = false;
  if (queue->Closed() || queue->ready_.empty() || queue->wakeRequested_) return;
  queue->wakeRequested_ = true;
  queue->wakeup_.NonBlockingCall(nullptr);
}

void CompletionQueue::Drain(Napi::Env env, Napi::Function, CompletionQueue* queue, std::nullptr_t*) {
  if (env == nullptr) return;
  std::vector<std::unique_ptr<Job>> batch;
  {
    std::lock_guard<SrwMutex> lock(queue->mutex_);
    batch.swap(queue->ready_);
    queue->wakeRequested_ = false;
  }
  for (std::unique_ptr<Job>& job : batch) {
    Napi::HandleScope scope(env);
    job->Settle(env);
    job.reset();
    // A job settles its own promise with what failed in it; whatever it left pending is raised
    // as Node raises an error thrown from any event, so that the rest of the batch still settles.
    RaisePending(env);
  }
}

void CompletionQueue::Close() {
  std::vector<std::unique_ptr<Job>> dropped;
  {
    std::lock_guard<SrwMutex> lock(mutex_);
    if (Closed()) return;
    closed_.store(true, std::memory_order_release);
    dropped.swap(ready_);
  }
  if (lazyTimer_ != nullptr) {
    SetThreadpoolTimer(lazyTimer_, nullptr, 0, 0);
    WaitForThreadpoolTimerCallbacks(lazyTimer_, TRUE);
    CloseThreadpoolTimer(lazyTimer_);
    lazyTimer_ = nullptr;
  }
  wakeup_.Abort();
}

bool CompletionQueue::WaitForWork(DWORD timeoutMs) {
  UniqueHandle done(CreateEventW(nullptr, TRUE, FALSE, nullptr));
  if (!done.Valid()) return workHolds_.load(std::memory_order_acquire) == 0;
  {
    std::lock_guard<SrwMutex> lock(mutex_);
    workDone_ = done.Get();
  }
  // The last hold may have gone before workDone_ was set: counted first, then waited for.
  bool finished = workHolds_.load(std::memory_order_acquire) == 0 ||
                  WaitForSingleObject(done.Get(), timeoutMs) == WAIT_OBJECT_0;
  std::lock_guard<SrwMutex> lock(mutex_);
  workDone_ = nullptr;
  return finished;
}

void CompletionQueue::WorkHoldReleased() {
  std::lock_guard<SrwMutex> lock(mutex_);
  if (workDone_ != nullptr) SetEvent(workDone_);
}

}  // namespace fltport
