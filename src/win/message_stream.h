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

// Keeps `pending` reads in the kernel, re-armed off the consumer's thread the way a native scanner
// does, so starting a read never costs the consumer's thread anything. A completed read is
// re-armed at once by the thread its completion arrived on, unless the stream holds reads for
// replies (`holdForReply`, serve()) and its message expects one: then the read stays idle, and the
// idle reads are re-armed together by the next Replied() (on the thread that has just made a reply,
// as a native scanner's completion thread replies and then reads again: the kernel's sender, woken
// by the reply, has usually queued its next message by then, so the read completes at once instead
// of waiting in the kernel; measured under Wine, unverified on Windows) or Consumed() (through the
// thread pool). The consumer bounds the read-ahead: while 2 x `pending` messages are unconsumed, a
// completed read is not re-armed until Consumed() or Replied() makes room. Messages on their way
// to the consumer count, and it takes them in batches (and reports them consumed a batch at a
// time): a bound of `pending` would stall every read while one batch is in transit, and re-arming
// them all at once takes one thread a while (each is a call into the kernel).
//
// A message larger than a read's buffer: that read doubles its buffer (up to `maxBufferBytes`)
// and is re-armed at once, assuming the kernel keeps the message for a bigger read (the emulated
// filter manager does; unverified on Windows). Past the maximum the message is reported as unreadable, once per
// run of such reads, and the stream goes on: while the kernel keeps offering what no read can
// take, reads are re-armed after a back-off (10 ms doubling to 1 s) instead of spinning. A
// message that fails alone (a byte count beyond the buffer, no memory for it) is reported too.
class MessageStream : public std::enable_shared_from_this<MessageStream> {
 public:
  // A message the stream could not read.
  struct Unreadable {
    HRESULT error = S_OK;
    // The largest buffer tried for it, FILTER_MESSAGE_HEADER included.
    DWORD bufferBytes = 0;
  };

  struct Batch {
    std::vector<ReceivedMessage> messages;
    std::vector<Unreadable> unreadable;
    bool ended = false;
    // With `ended`: the failure that ended the stream; S_OK when Stop() did.
    HRESULT error = S_OK;
  };

  // `ready` runs on any thread when Take() has something new (messages or the end); it is not
  // called again until Take() has been called. nullptr when out of memory or thread-pool objects.
  static std::shared_ptr<MessageStream> Start(std::shared_ptr<FilterConnection> connection, DWORD bufferBytes,
                                              DWORD maxBufferBytes, uint32_t pending, bool holdForReply,
                                              std::function<void()> ready) noexcept;
  ~MessageStream();
  MessageStream(const MessageStream&) = delete;
  MessageStream& operator=(const MessageStream&) = delete;

  Batch Take();
  // The consumer is done with `count` messages; idle reads are re-armed through the thread pool.
  void Consumed(uint32_t count);
  // Any thread, after replying to one message of this stream that held its read: that message is
  // done with, and idle reads are re-armed on this thread.
  void Replied() noexcept;
  // Cancels the reads; what they still deliver comes through Take(), then the end.
  void Stop();

 private:
  class Read;

  MessageStream(std::shared_ptr<FilterConnection> connection, DWORD bufferBytes, DWORD maxBufferBytes,
                uint32_t pending, bool holdForReply, std::function<void()> ready);

  void Completed(Read* read, ULONG error, ULONG bytes) noexcept;
  // Under the lock: what a completed read stands for, applied to the stream; false when the read
  // must not be re-armed at once (parked until the back-off ends).
  bool ApplyLocked(Read* read, HRESULT result, ReceivedMessage* message, bool* cancel) noexcept;
  void PushIdleLocked(Read* read) noexcept;
  // Under the lock: idle reads that may be armed now (a list through Read::nextIdle), counted
  // as outstanding.
  Read* ClaimArmableLocked() noexcept;
  void Arm(Read* read) noexcept;
  // Arms a list ClaimArmableLocked() returned, on this thread.
  void ArmAll(Read* reads) noexcept;
  // Under the lock: true when ArmWork must be queued (the caller then submits armWork_).
  bool ScheduleArmLocked() noexcept;
  void FailLocked(HRESULT error, bool* cancel) noexcept;
  void CancelOutstanding() noexcept;
  bool TakeNotifyLocked() noexcept;
  void Notify() noexcept;
  static void CALLBACK ArmWork(PTP_CALLBACK_INSTANCE, void* context, PTP_WORK) noexcept;
  static void CALLBACK RetryDue(PTP_CALLBACK_INSTANCE, void* context, PTP_TIMER) noexcept;

  const std::shared_ptr<FilterConnection> connection_;
  const DWORD bufferBytes_;
  const DWORD maxBufferBytes_;
  const uint32_t maxUnconsumed_;
  const bool holdForReply_;
  std::vector<std::unique_ptr<Read>> reads_;
  std::function<void()> notify_;
  // Starts idle reads off the consumer's thread; SubmitThreadpoolWork cannot fail.
  PTP_WORK armWork_ = nullptr;
  // Ends the back-off while the kernel offers a message no read can take.
  PTP_TIMER retryTimer_ = nullptr;

  SrwMutex mutex_;
  std::vector<ReceivedMessage> ready_;
  std::vector<Unreadable> unreadable_;
  Read* idle_ = nullptr;      // a list through Read::nextIdle: no allocation on completion paths
  uint32_t outstanding_ = 0;  // in the kernel or about to be
  uint32_t unconsumed_ = 0;   // completed, not yet Consumed() or Replied()
  bool stopping_ = false;
  // Set while ArmWork is queued (and keeps the stream alive until it runs).
  std::shared_ptr<MessageStream> armHold_;
  // An unreadable message was reported and no message has been read since.
  bool blocked_ = false;
  // Reads wait for retryTimer_ (set while it is; it keeps the stream alive until it fires).
  std::shared_ptr<MessageStream> retryHold_;
  DWORD retryDelayMs_ = 0;
  bool notified_ = false;
  bool endTaken_ = false;
  HRESULT error_ = S_OK;
};

}  // namespace fltport
