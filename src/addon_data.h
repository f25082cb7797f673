// Per-environment state of the addon (one per main thread or worker).
#pragma once

#include <napi.h>

#include <memory>
#include <vector>

#include "completion_queue.h"

namespace fltport {

class PoolJob;

struct AddonData {
  explicit AddonData(Napi::Env env) : completions(std::make_shared<CompletionQueue>(env)) {}
  ~AddonData() { completions->Close(); }

  std::shared_ptr<CompletionQueue> completions;
  Napi::FunctionReference filterPortClass;
  Napi::FunctionReference messageStreamClass;
  // PoolJob::Submit's batch for the current turn of the event loop, and how it is flushed.
  std::vector<PoolJob*> stagedJobs;
  bool turnStarted = false;
  Napi::ObjectReference settledPromise;
  Napi::FunctionReference promiseThen;
  Napi::FunctionReference submitStaged;
};

inline AddonData* GetAddonData(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

}  // namespace fltport
