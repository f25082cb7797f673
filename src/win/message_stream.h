// A run of FilterGetMessage calls kept outstanding off the JS thread: what messages() and
// serve() read through. Plain C++ over FilterConnection; knows nothing of Node-API.
#pragma once

#include <windows.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "win/filter_port.h"
#include "win/srw_mutex.h"

namespace fltport {

// Keeps `pending` reads in the kernel, each re-armed by the thread its completion arrives on, the
// way a native scanner does, so starting a read never costs the consumer's thread anything. The
// consumer bounds the read-ahead: while 2 x `pending` messages are unconsumed, a completed read
// is not re-armed until Consumed() makes room. Messages on their way to the consumer count, and
// it takes them in batches: a bound of `pending` would stall every read while one batch is in
// transit, and re-arming them all at once takes one thread a while (the emulator serialises
// them).
class MessageStream : public std::enable_shared_from_this<MessageStream> {
 public:
  struct Batch {
    std::vector<ReceivedMessage> messages;
    bool ended = false;
    // With `ended`: the failure that ended the stream; S_OK when Stop() did.
    HRESULT error = S_OK;
  };

  // `ready` runs on any thread when Take() has something new (messages or the end); it is not
  // called again until Take() has been called.
  static std::shared_ptr<MessageStream> Start(std::shared_ptr<FilterConnection> connection, DWORD bufferBytes,
                                              uint32_t pending, std::function<void()> ready);
  ~MessageStream();
  MessageStream(const MessageStream&) = delete;
  MessageStream& operator=(const MessageStream&) = delete;

  Batch Take();
  void Consumed(uint32_t count);
  // Cancels the reads; what they still deliver comes through Take(), then the end.
  void Stop();

 private:
  class Read;

  MessageStream(std::shared_ptr<FilterConnection> connection, DWORD bufferBytes, uint32_t pending,
                std::function<void()> ready);

  void Completed(Read* read, ULONG error, ULONG bytes);
  // Under the lock: idle reads that may be armed now, counted as outstanding.
  std::vector<Read*> ClaimArmableLocked();
  void Arm(const std::vector<Read*>& reads);
  // Under the lock: true when ArmWork must be queued (the caller then submits armWork_).
  bool ScheduleArmLocked();
  void FailLocked(HRESULT error, bool* cancel);
  void CancelOutstanding();
  bool TakeNotifyLocked();
  static void CALLBACK ArmWork(PTP_CALLBACK_INSTANCE, void* context, PTP_WORK);

  const std::shared_ptr<FilterConnection> connection_;
  const DWORD bufferBytes_;
  const uint32_t maxUnconsumed_;
  std::vector<std::unique_ptr<Read>> reads_;
  std::function<void()> notify_;
  // Starts idle reads off the consumer's thread; SubmitThreadpoolWork cannot fail.
  PTP_WORK armWork_ = nullptr;

  SrwMutex mutex_;
  std::vector<ReceivedMessage> ready_;
  std::vector<Read*> idle_;
  uint32_t outstanding_ = 0;  // in the kernel or about to be
  uint32_t unconsumed_ = 0;   // completed, not yet Consumed()
  bool stopping_ = false;
  // Set while ArmWork is queued (and keeps the stream alive until it runs).
  std::shared_ptr<MessageStream> armHold_;
  bool notified_ = false;
  bool endTaken_ = false;
  HRESULT error_ = S_OK;
};

}  // namespace fltport
