#include "win/work_queue.h"

#include <algorithm>

namespace fltport {

// The Windows thread pool's own default maximum: blocking calls (a FilterSendMessage waiting
// for MessageNotify, an LPC request waiting for its reply) each hold a thread, so the cap must
// be far above any sane number of calls in flight.
constexpr uint32_t kMaxDrainers = 500;

WorkQueue& WorkQueue::Shared() {
  static WorkQueue* shared = new WorkQueue(kMaxDrainers);
  return *shared;
}

bool WorkQueue::NeedsDrainerLocked(size_t waiting) const {
  return drainers_ - busy_ < waiting && drainers_ < maxDrainers_;
}

std::vector<WorkItem*> WorkQueue::Submit(std::vector<WorkItem*> items) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    items_.insert(items_.end(), items.begin(), items.end());
    // A free drainer will take them; else one is woken here, and it fans the rest out.
    if (!NeedsDrainerLocked(1)) return {};
    ++drainers_;
  }
  if (TrySubmitThreadpoolCallback(&WorkQueue::Drain, this, nullptr)) return {};
  DWORD error = GetLastError();
  std::lock_guard<std::mutex> lock(mutex_);
  --drainers_;
  if (drainers_ > 0) return {};  // they take them in turn
  // Only this call's items are refused: another submitter's, queued meanwhile, wait for the next
  // Submit to wake a drainer (the pool refusing a callback means memory is exhausted anyway).
  std::vector<WorkItem*> refused;
  for (WorkItem* item : items) {
    auto queued = std::find(items_.begin(), items_.end(), item);
    if (queued == items_.end()) continue;
    items_.erase(queued);
    refused.push_back(item);
  }
  SetLastError(error);
  return refused;
}

void CALLBACK WorkQueue::Drain(PTP_CALLBACK_INSTANCE, void* context) {
  auto* queue = static_cast<WorkQueue*>(context);
  std::unique_lock<std::mutex> lock(queue->mutex_);
  while (!queue->items_.empty()) {
    WorkItem* item = queue->items_.front();
    queue->items_.pop_front();
    ++queue->busy_;
    // Fan out: items left behind while every drainer is busy get a thread of their own, woken
    // from here rather than from the submitter's thread.
    bool another = queue->NeedsDrainerLocked(queue->items_.size());
    if (another) ++queue->drainers_;
    lock.unlock();
    if (another && !TrySubmitThreadpoolCallback(&WorkQueue::Drain, queue, nullptr)) {
      lock.lock();
      --queue->drainers_;  // this drainer takes them in turn instead
      lock.unlock();
    }
    item->Run();
    lock.lock();
    --queue->busy_;
  }
  --queue->drainers_;
}

}  // namespace fltport
