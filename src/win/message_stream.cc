#include "win/message_stream.h"

#include <algorithm>
#include <new>
#include <utility>

namespace fltport {

class MessageStream::Read : public ReadOperation {
 public:
  Read(MessageStream* stream, std::unique_ptr<uint8_t[]> buffer) : stream_(stream), buffer_(std::move(buffer)) {}

  // Holds the stream alive while the read is in the kernel.
  std::shared_ptr<MessageStream> inFlight;

  HRESULT Start() { return stream_->connection_->StartRead(this, buffer_.get(), stream_->bufferBytes_); }
  void Cancel() { stream_->connection_->CancelRead(this); }

  ReceivedMessage Message(ULONG bytes) const { return ReceivedMessage::Parse(buffer_.get(), bytes); }

  void ReadCompleted(ULONG error, ULONG bytes) override { stream_->Completed(this, error, bytes); }

 private:
  MessageStream* stream_;
  std::unique_ptr<uint8_t[]> buffer_;
};

MessageStream::MessageStream(std::shared_ptr<FilterConnection> connection, DWORD bufferBytes, uint32_t pending,
                             std::function<void()> ready)
    : connection_(std::move(connection)), bufferBytes_(bufferBytes), maxUnconsumed_(2 * pending), notify_(std::move(ready)) {}

std::shared_ptr<MessageStream> MessageStream::Start(std::shared_ptr<FilterConnection> connection, DWORD bufferBytes,
                                                    uint32_t pending, std::function<void()> ready) {
  std::shared_ptr<MessageStream> stream(
      new MessageStream(std::move(connection), bufferBytes, pending, std::move(ready)));
  stream->armWork_ = CreateThreadpoolWork(&MessageStream::ArmWork, stream.get(), nullptr);
  if (stream->armWork_ == nullptr) return nullptr;
  for (uint32_t i = 0; i < pending; ++i) {
    std::unique_ptr<uint8_t[]> buffer(new (std::nothrow) uint8_t[bufferBytes]);
    if (buffer == nullptr) return nullptr;
    stream->reads_.push_back(std::make_unique<Read>(stream.get(), std::move(buffer)));
    stream->idle_.push_back(stream->reads_.back().get());
  }
  {
    std::lock_guard<SrwMutex> lock(stream->mutex_);
    stream->ScheduleArmLocked();
  }
  SubmitThreadpoolWork(stream->armWork_);
  return stream;
}

MessageStream::~MessageStream() {
  // Possibly from inside ArmWork, whose reference was the last: the pool frees it afterwards.
  if (armWork_ != nullptr) CloseThreadpoolWork(armWork_);
}

MessageStream::Batch MessageStream::Take() {
  Batch batch;
  std::lock_guard<SrwMutex> lock(mutex_);
  batch.messages.swap(ready_);
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
    schedule = !stopping_ && !idle_.empty() && unconsumed_ < maxUnconsumed_ && ScheduleArmLocked();
  }
  // Off this thread: starting a read can be slow (the emulator makes two pipe calls for it).
  if (schedule) SubmitThreadpoolWork(armWork_);
}

void MessageStream::Stop() {
  bool notify;
  {
    std::lock_guard<SrwMutex> lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    notify = TakeNotifyLocked();
  }
  CancelOutstanding();
  if (notify) notify_();
}

void MessageStream::Completed(Read* read, ULONG error, ULONG bytes) {
  // The last reference may be this read's: the stream lives until the end of this call.
  std::shared_ptr<MessageStream> self = std::move(read->inFlight);
  HRESULT result = ReadResult(error, bytes);
  bool rearm;
  bool cancel = false;
  bool notify;
  {
    std::lock_guard<SrwMutex> lock(mutex_);
    --outstanding_;
    if (result == S_OK) {
      ready_.push_back(read->Message(bytes));
      ++unconsumed_;
    } else if (!(stopping_ && error == ERROR_OPERATION_ABORTED)) {
      FailLocked(result, &cancel);
    }
    rearm = !stopping_ && unconsumed_ < maxUnconsumed_;
    if (rearm) {
      ++outstanding_;
    } else {
      idle_.push_back(read);
    }
    notify = TakeNotifyLocked();
  }
  if (cancel) CancelOutstanding();
  if (notify) notify_();
  if (rearm) Arm({read});
}

std::vector<MessageStream::Read*> MessageStream::ClaimArmableLocked() {
  std::vector<Read*> claimed;
  if (stopping_ || unconsumed_ >= maxUnconsumed_) return claimed;
  claimed.swap(idle_);
  outstanding_ += static_cast<uint32_t>(claimed.size());
  return claimed;
}

void MessageStream::Arm(const std::vector<Read*>& reads) {
  for (Read* read : reads) {
    bool cancel = false;
    bool notify = false;
    HRESULT hr = S_OK;
    bool started = false;
    {
      std::lock_guard<SrwMutex> lock(mutex_);
      if (stopping_) {
        // Stopped since the claim: a read started now would only leave a stale credit behind.
        --outstanding_;
        idle_.push_back(read);
        notify = TakeNotifyLocked();
      } else {
        read->inFlight = shared_from_this();
        started = true;
      }
    }
    if (started) {
      hr = read->Start();
      std::lock_guard<SrwMutex> lock(mutex_);
      if (FAILED(hr)) {
        read->inFlight.reset();
        --outstanding_;
        idle_.push_back(read);
        FailLocked(hr, &cancel);
        notify = TakeNotifyLocked();
      } else {
        // Stop() may have run between the check above and the start; its cancel missed this read.
        cancel = stopping_;
      }
    }
    if (started && SUCCEEDED(hr) && cancel) read->Cancel();
    if (FAILED(hr) && cancel) CancelOutstanding();
    if (notify) notify_();
  }
}

bool MessageStream::ScheduleArmLocked() {
  if (armHold_ != nullptr) return false;  // already queued; it claims whatever is idle then
  armHold_ = shared_from_this();
  return true;
}

void CALLBACK MessageStream::ArmWork(PTP_CALLBACK_INSTANCE, void* context, PTP_WORK) {
  auto* stream = static_cast<MessageStream*>(context);
  std::shared_ptr<MessageStream> hold;
  std::vector<Read*> reads;
  {
    std::lock_guard<SrwMutex> lock(stream->mutex_);
    hold = std::move(stream->armHold_);
    reads = stream->ClaimArmableLocked();
  }
  stream->Arm(reads);
}

void MessageStream::FailLocked(HRESULT hr, bool* cancel) {
  if (stopping_) return;
  stopping_ = true;
  error_ = hr;
  *cancel = true;
}

void MessageStream::CancelOutstanding() {
  for (const std::unique_ptr<Read>& read : reads_) read->Cancel();
}

bool MessageStream::TakeNotifyLocked() {
  if (notified_) return false;
  bool ended = stopping_ && outstanding_ == 0 && !endTaken_;
  if (ready_.empty() && !ended) return false;
  notified_ = true;
  return true;
}

}  // namespace fltport
