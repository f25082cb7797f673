#include "win/work_queue.h"

namespace fltport {

// Replies and other prompt calls: drainers return quickly, so the cap is never what limits them.
constexpr uint32_t kMaxQuickDrainers = 500;

WorkQueue& WorkQueue::Quick() {
  static WorkQueue* quick = new WorkQueue(nullptr, kMaxQuickDrainers, false);
  return *quick;
}

WorkQueue& WorkQueue::Blocking() {
  static WorkQueue* blocking = [] {
    PTP_POOL pool = CreateThreadpool(nullptr);
    if (pool != nullptr) SetThreadpoolThreadMaximum(pool, kMaxBlockingCalls);
    return new WorkQueue(pool, kMaxBlockingCalls, true);
  }();
  return *blocking;
}

WorkQueue::WorkQueue(PTP_POOL pool, uint32_t maxDrainers, bool runsLong) : maxDrainers_(maxDrainers) {
  // The environment only names the pool; a work object keeps what it needs of it.
  TP_CALLBACK_ENVIRON environment;
  InitializeThreadpoolEnvironment(&environment);
  if (pool != nullptr) SetThreadpoolCallbackPool(&environment, pool);
  // The pool then starts another thread for waiting work instead of waiting for this one.
  if (runsLong) SetThreadpoolCallbackRunsLong(&environment);
  work_ = CreateThreadpoolWork(&WorkQueue::Drain, this, &environment);
  if (work_ == nullptr) createError_ = GetLastError();
  DestroyThreadpoolEnvironment(&environment);
}

bool WorkQueue::NeedsDrainerLocked(size_t waiting) const {
  return drainers_ - busy_ < waiting && drainers_ < maxDrainers_;
}

bool WorkQueue::Submit(const std::vector<WorkItem*>& items) {
  if (work_ == nullptr) {
    SetLastError(createError_);
    return false;
  }
  if (items.empty()) return true;
  {
    std::lock_guard<SrwMutex> lock(mutex_);
    items_.insert(items_.end(), items.begin(), items.end());
    // A free drainer will take them; else one is woken here, and it fans the rest out.
    if (!NeedsDrainerLocked(1)) return true;
    ++drainers_;
  }
  SubmitThreadpoolWork(work_);
  return true;
}

void CALLBACK WorkQueue::Drain(PTP_CALLBACK_INSTANCE, void* context, PTP_WORK) noexcept {
  auto* queue = static_cast<WorkQueue*>(context);
  std::unique_lock<SrwMutex> lock(queue->mutex_);
  while (!queue->items_.empty()) {
    WorkItem* item = queue->items_.front();
    queue->items_.pop_front();
    ++queue->busy_;
    // Fan out: items left behind while every drainer is busy get a thread of their own, woken
    // from here rather than from the submitter's thread.
    bool another = queue->NeedsDrainerLocked(queue->items_.size());
    if (another) ++queue->drainers_;
    lock.unlock();
    if (another) SubmitThreadpoolWork(queue->work_);
    item->Run();
    lock.lock();
    --queue->busy_;
  }
  --queue->drainers_;
}

}  // namespace fltport
