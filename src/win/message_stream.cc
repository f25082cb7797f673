#include "win/message_stream.h"

#include <algorithm>
#include <new>
#include <utility>

namespace fltport {

namespace {

// The back-off while the kernel keeps offering a message that no read can take.
constexpr DWORD kFirstRetryDelayMs = 10;
constexpr DWORD kMaxRetryDelayMs = 1000;

}  // namespace

class MessageStream::Read : public ReadOperation {
 public:
  explicit Read(MessageStream* stream) : stream_(stream) {}

  // Holds the stream alive while the read is in the kernel.
  std::shared_ptr<MessageStream> inFlight;
  // The next idle read (MessageStream::idle_).
  Read* nextIdle = nullptr;

  DWORD Capacity() const { return capacity_; }
  // A buffer of `bytes` from now on; false (the old one kept) when there is no memory for it.
  bool Resize(DWORD bytes) noexcept {
    if (bytes == capacity_) return true;
    std::unique_ptr<uint8_t[]> buffer(new (std::nothrow) uint8_t[bytes]);
    if (buffer == nullptr) return false;
    buffer_ = std::move(buffer);
    capacity_ = bytes;
    return true;
  }

  HRESULT Start() { return stream_->connection_->StartRead(this, buffer_.get(), capacity_); }
  void Cancel() { stream_->connection_->CancelRead(this); }

  HRESULT Parse(ULONG error, ULONG bytes, ReceivedMessage* message) const noexcept {
    return ReceivedMessage::FromRead(error, bytes, buffer_.get(), capacity_, message);
  }

  void ReadCompleted(ULONG error, ULONG bytes) noexcept override { stream_->Completed(this, error, bytes); }

 private:
  MessageStream* stream_;
  std::unique_ptr<uint8_t[]> buffer_;
  DWORD capacity_ = 0;
};

MessageStream::MessageStream(std::shared_ptr<FilterConnection> connection, DWORD bufferBytes, DWORD maxBufferBytes,
                             uint32_t pending, bool holdForReply, std::function<void()> ready)
    : connection_(std::move(connection)),
      bufferBytes_(bufferBytes),
      maxBufferBytes_(std::max(bufferBytes, maxBufferBytes)),
      maxUnconsumed_(2 * pending),
      holdForReply_(holdForReply),
      notify_(std::move(ready)) {}

std::shared_ptr<MessageStream> MessageStream::Start(std::shared_ptr<FilterConnection> connection, DWORD bufferBytes,
                                                    DWORD maxBufferBytes, uint32_t pending, bool holdForReply,
                                                    std::function<void()> ready) noexcept {
  std::shared_ptr<MessageStream> stream;
  try {
    stream.reset(
        new MessageStream(std::move(connection), bufferBytes, maxBufferBytes, pending, holdForReply, std::move(ready)));
    stream->reads_.reserve(pending);
    for (uint32_t i = 0; i < pending; ++i) {
      stream->reads_.push_back(std::make_unique<Read>(stream.get()));
      if (!stream->reads_.back()->Resize(bufferBytes)) return nullptr;
      stream->PushIdleLocked(stream->reads_.back().get());  // nobody else has the stream yet
    }
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
  stream->armWork_ = CreateThreadpoolWork(&MessageStream::ArmWork, stream.get(), nullptr);
  stream->retryTimer_ = CreateThreadpoolTimer(&MessageStream::RetryDue, stream.get(), nullptr);
  if (stream->armWork_ == nullptr || stream->retryTimer_ == nullptr) return nullptr;
  {
    std::lock_guard<SrwMutex> lock(stream->mutex_);
    stream->ScheduleArmLocked();
  }
  SubmitThreadpoolWork(stream->armWork_);
  return stream;
}

MessageStream::~MessageStream() {
  // Possibly from inside ArmWork or RetryDue, whose reference was the last: the pool frees them
  // afterwards.
  if (armWork_ != nullptr) CloseThreadpoolWork(armWork_);
  if (retryTimer_ != nullptr) CloseThreadpoolTimer(retryTimer_);
}

MessageStream::Batch MessageStream::Take() {
  Batch batch;
  std::lock_guard<SrwMutex> lock(mutex_);
  batch.messages.swap(ready_);
  batch.unreadable.swap(unreadable_);
  notified_ = false;
  if (stopping_ && outstanding_ == 0 && !endTaken_) {
    endTaken_ = true;
    batch.ended = true;
    batch.error = error_;
  }
  return batch;
}

void MessageStream::Consumed(uint32_t count) {
  bool schedule;
  {
    std::lock_guard<SrwMutex> lock(mutex_);
    unconsumed_ -= std::min(count, unconsumed_);
    schedule = !stopping_ && idle_ != nullptr && unconsumed_ < maxUnconsumed_ && ScheduleArmLocked();
  }
  // Off this thread: starting a read is a call into the kernel, and this is the consumer's thread.
  if (schedule) SubmitThreadpoolWork(armWork_);
}

void MessageStream::Replied() noexcept {
  Read* reads;
  {
    std::lock_guard<SrwMutex> lock(mutex_);
    unconsumed_ -= std::min(1u, unconsumed_);
    reads = ClaimArmableLocked();
  }
  ArmAll(reads);
}

void MessageStream::ArmAll(Read* reads) noexcept {
  while (reads != nullptr) {
    Read* next = reads->nextIdle;  // Arm() may put the read back on the idle list
    Arm(reads);
    reads = next;
  }
}

void MessageStream::Stop() {
  bool notify;
  std::shared_ptr<MessageStream> retryHold;
  {
    std::lock_guard<SrwMutex> lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    notify = TakeNotifyLocked();
    // A back-off would keep the stream, and so the connection, for up to a second after its end:
    // close() must not resolve while the handle is still open.
    retryHold = std::move(retryHold_);
    SetThreadpoolTimer(retryTimer_, nullptr, 0, 0);
  }
  // A RetryDue already running finds no hold and stopping_ set; wait for it before letting go.
  WaitForThreadpoolTimerCallbacks(retryTimer_, TRUE);
  CancelOutstanding();
  if (notify) Notify();
}

void MessageStream::Completed(Read* read, ULONG error, ULONG bytes) noexcept {
  // The last reference may be this read's: the stream lives until the end of this call.
  std::shared_ptr<MessageStream> self = std::move(read->inFlight);
  ReceivedMessage message;
  HRESULT result = read->Parse(error, bytes, &message);
  bool waitsForReply = holdForReply_ && result == S_OK && message.replyLength != 0;
  bool rearm;
  bool cancel = false;
  bool notify;
  {
    std::lock_guard<SrwMutex> lock(mutex_);
    --outstanding_;
    bool armable = ApplyLocked(read, result, &message, &cancel);
    rearm = armable && !waitsForReply && !stopping_ && unconsumed_ < maxUnconsumed_;
    if (rearm) {
      ++outstanding_;
    } else {
      PushIdleLocked(read);
    }
    if (!armable && !stopping_ && retryHold_ == nullptr) {
      retryHold_ = self;
      retryDelayMs_ = retryDelayMs_ == 0 ? kFirstRetryDelayMs : std::min(2 * retryDelayMs_, kMaxRetryDelayMs);
      // Under the lock, so that Stop() cannot cancel the timer in between.
      ULARGE_INTEGER relative;
      relative.QuadPart = static_cast<ULONGLONG>(-static_cast<LONGLONG>(retryDelayMs_) * 10000);
      FILETIME due;
      due.dwLowDateTime = relative.LowPart;
      due.dwHighDateTime = relative.HighPart;
      SetThreadpoolTimer(retryTimer_, &due, 0, 0);
    }
    notify = TakeNotifyLocked();
  }
  if (cancel) CancelOutstanding();
  if (notify) Notify();
  if (rearm) Arm(read);
}

bool MessageStream::ApplyLocked(Read* read, HRESULT result, ReceivedMessage* message, bool* cancel) noexcept {
  if (result == S_OK) {
    blocked_ = false;
    retryDelayMs_ = 0;
    read->Resize(bufferBytes_);  // a grown read goes back to the usual size (or stays, without memory)
    try {
      ready_.push_back(std::move(*message));
    } catch (const std::bad_alloc&) {
      FailLocked(E_OUTOFMEMORY, cancel);
      return true;
    }
    ++unconsumed_;
    return true;
  }
  // Cancelled by Stop(), or anything after it: nothing more to deliver or report.
  if (stopping_) return true;
  if (!IsMessageFailure(result)) {
    FailLocked(result, cancel);
    return true;
  }
  bool tooSmall = IsBufferTooSmall(result);
  // Doubled, and re-armed at once: the kernel is expected to offer the message again.
  if (tooSmall && read->Capacity() < maxBufferBytes_ &&
      read->Resize(static_cast<DWORD>(std::min<uint64_t>(2ull * read->Capacity(), maxBufferBytes_)))) {
    return true;
  }
  DWORD tried = read->Capacity();
  read->Resize(bufferBytes_);
  // Reported once per run: while the kernel keeps offering a message no read can take, every
  // read meets it again.
  if (tooSmall && blocked_) return false;
  try {
    unreadable_.push_back(Unreadable{result, tried});
  } catch (const std::bad_alloc&) {
    FailLocked(E_OUTOFMEMORY, cancel);
    return true;
  }
  if (!tooSmall) return true;  // that message alone failed; the next read may succeed at once
  blocked_ = true;
  return false;
}

void MessageStream::PushIdleLocked(Read* read) noexcept {
  read->nextIdle = idle_;
  idle_ = read;
}

MessageStream::Read* MessageStream::ClaimArmableLocked() noexcept {
  // While a back-off runs, its end arms the reads.
  if (stopping_ || retryHold_ != nullptr || unconsumed_ >= maxUnconsumed_) return nullptr;
  Read* claimed = idle_;
  idle_ = nullptr;
  for (Read* read = claimed; read != nullptr; read = read->nextIdle) ++outstanding_;
  return claimed;
}

void MessageStream::Arm(Read* read) noexcept {
  bool cancel = false;
  bool notify = false;
  HRESULT hr = S_OK;
  bool started = false;
  {
    std::lock_guard<SrwMutex> lock(mutex_);
    if (stopping_) {
      // Stopped since the claim: a read started now would only leave a stale credit behind.
      --outstanding_;
      PushIdleLocked(read);
      notify = TakeNotifyLocked();
    } else {
      // Callers hold a reference, so this cannot come back empty.
      read->inFlight = weak_from_this().lock();
      started = true;
    }
  }
  if (started) {
    hr = read->Start();
    std::lock_guard<SrwMutex> lock(mutex_);
    if (FAILED(hr)) {
      read->inFlight.reset();
      --outstanding_;
      PushIdleLocked(read);
      FailLocked(hr, &cancel);
      notify = TakeNotifyLocked();
    } else {
      // Stop() may have run between the check above and the start; its cancel missed this read.
      cancel = stopping_;
    }
  }
  if (started && SUCCEEDED(hr) && cancel) read->Cancel();
  if (FAILED(hr) && cancel) CancelOutstanding();
  if (notify) Notify();
}

bool MessageStream::ScheduleArmLocked() noexcept {
  if (armHold_ != nullptr) return false;  // already queued; it claims whatever is idle then
  armHold_ = weak_from_this().lock();
  return true;
}

void CALLBACK MessageStream::ArmWork(PTP_CALLBACK_INSTANCE, void* context, PTP_WORK) noexcept {
  auto* stream = static_cast<MessageStream*>(context);
  std::shared_ptr<MessageStream> hold;
  Read* reads;
  {
    std::lock_guard<SrwMutex> lock(stream->mutex_);
    hold = std::move(stream->armHold_);
    reads = stream->ClaimArmableLocked();
  }
  stream->ArmAll(reads);
}

void CALLBACK MessageStream::RetryDue(PTP_CALLBACK_INSTANCE, void* context, PTP_TIMER) noexcept {
  auto* stream = static_cast<MessageStream*>(context);
  std::shared_ptr<MessageStream> hold;
  bool schedule;
  {
    std::lock_guard<SrwMutex> lock(stream->mutex_);
    hold = std::move(stream->retryHold_);
    schedule = !stream->stopping_ && stream->idle_ != nullptr && stream->ScheduleArmLocked();
  }
  if (schedule) SubmitThreadpoolWork(stream->armWork_);
}

void MessageStream::FailLocked(HRESULT hr, bool* cancel) noexcept {
  if (stopping_) return;
  stopping_ = true;
  error_ = hr;
  *cancel = true;
}

void MessageStream::CancelOutstanding() noexcept {
  for (const std::unique_ptr<Read>& read : reads_) read->Cancel();
}

bool MessageStream::TakeNotifyLocked() noexcept {
  if (notified_) return false;
  bool ended = stopping_ && outstanding_ == 0 && !endTaken_;
  if (ready_.empty() && unreadable_.empty() && !ended) return false;
  notified_ = true;
  return true;
}

void MessageStream::Notify() noexcept {
  // The last-resort guard of every completion path: the consumer's callback allocates (a job for
  // the JS thread). Should it fail, the next event tries again rather than the process ending.
  try {
    notify_();
  } catch (...) {
    std::lock_guard<SrwMutex> lock(mutex_);
    notified_ = false;
  }
}

}  // namespace fltport
