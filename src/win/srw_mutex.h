// A mutex over an SRWLOCK, for std::lock_guard and std::unique_lock.
#pragma once

#include <windows.h>

namespace fltport {

// MSVC's std::mutex is built on an SRWLOCK already (unverified here: MSVC does not run on
// Linux). mingw-w64's (winpthreads) blocks on a kernel event, so every contended lock and its
// release is a system call, and under Wine a wineserver round trip: the completion and work
// queues are locked from the JS thread and the pool threads at once, per message.
class SrwMutex {
 public:
  SrwMutex() = default;
  SrwMutex(const SrwMutex&) = delete;
  SrwMutex& operator=(const SrwMutex&) = delete;

  void lock() { AcquireSRWLockExclusive(&lock_); }
  bool try_lock() { return TryAcquireSRWLockExclusive(&lock_) != 0; }
  void unlock() { ReleaseSRWLockExclusive(&lock_); }

 private:
  SRWLOCK lock_ = SRWLOCK_INIT;
};

}  // namespace fltport
