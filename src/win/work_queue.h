// Blocking Windows calls run on Windows thread-pool threads, without a wake-up per call.
#pragma once

#include <windows.h>

#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

#include "win/srw_mutex.h"

namespace fltport {

class WorkItem {
 public:
  virtual ~WorkItem() = default;
  // On a pool thread; the item owns itself from here on.
  virtual void Run() = 0;
};

// Waking a thread is what a hand-off costs: on a busy machine the woken thread takes the
// submitter's CPU. So a thread is woken only when no running drainer is free to take the item:
// a burst submitted from the JS thread costs it one wake-up, and the drainers fan the rest out
// among themselves, one more thread per item still waiting while all of them are busy.
class WorkQueue {
 public:
  // For calls that return promptly (replies, LPC answers), on the process's default thread
  // pool. Never destroyed: pool threads may still be draining at exit.
  static WorkQueue& Quick();

  // For calls that wait as long as the other side wants (FilterSendMessage, LPC requests, the
  // connects), on a thread pool of their own with at most kMaxBlockingCalls threads: however
  // many of them wait, the default pool's threads stay free for the read completions, replies
  // and timers that may be what they wait for. Past that many, further calls wait their turn
  // here. Never destroyed.
  static WorkQueue& Blocking();

  // Blocking calls inside the kernel at once: the default pool's documented maximum (512 on
  // Windows; unverified there).
  static constexpr uint32_t kMaxBlockingCalls = 512;

  // Takes `items` and returns true, or, only when the queue has no thread-pool work object
  // (creating it failed at start; GetLastError tells why), takes none and returns false.
  bool Submit(const std::vector<WorkItem*>& items);

 private:
  // `pool` null: the default pool.
  WorkQueue(PTP_POOL pool, uint32_t maxDrainers, bool runsLong);
  static void CALLBACK Drain(PTP_CALLBACK_INSTANCE, void* context, PTP_WORK) noexcept;
  // Under the lock: whether another drainer must start so that `waiting` items each have one.
  bool NeedsDrainerLocked(size_t waiting) const;

  const uint32_t maxDrainers_;
  // One work object for every drainer: SubmitThreadpoolWork cannot fail, so no item is ever
  // left queued without a drainer to take it.
  PTP_WORK work_ = nullptr;
  DWORD createError_ = ERROR_SUCCESS;
  SrwMutex mutex_;
  std::deque<WorkItem*> items_;
  uint32_t drainers_ = 0;  // submitted and not yet gone
  uint32_t busy_ = 0;      // inside an item's Run()
};

}  // namespace fltport
