#include "win/work_queue.h"

namespace fltport {

// The Windows thread pool's own default maximum: blocking calls (a FilterSendMessage waiting
// for MessageNotify, an LPC request waiting for its reply) each hold a thread, so the cap must
// be far above any sane number of calls in flight.
constexpr uint32_t kMaxDrainers = 500;

WorkQueue& WorkQueue::Shared() {
  static WorkQueue* shared = new WorkQueue();
  return *shared;
}

WorkQueue::WorkQueue() {
  work_ = CreateThreadpoolWork(&WorkQueue::Drain, this, nullptr);
  if (work_ == nullptr) createError_ = GetLastError();
}

bool WorkQueue::NeedsDrainerLocked(size_t waiting) const {
  return drainers_ - busy_ < waiting && drainers_ < kMaxDrainers;
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
