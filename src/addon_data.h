// Per-environment state of the addon (one per main thread or worker).
#pragma once

#include <napi.h>

#include <memory>
#include <vector>

#include "completion_queue.h"

namespace fltport {

class PoolJob;

// A port's state, which must end with its environment.
class EnvResource {
 public:
  virtual ~EnvResource() = default;
  // JS thread, at environment teardown, calling nothing in JS: releases every JS reference
  // (what is left may then be released on any thread), breaks the reference cycles and starts
  // closing the port natively (its handle closes once the calls still using it return).
  virtual void Teardown() = 0;
};

struct AddonData {
  explicit AddonData(Napi::Env env) : completions(std::make_shared<CompletionQueue>(env)) {}
  ~AddonData() { completions->Close(); }

  // JS thread: `resource` is torn down with the environment unless it has gone by then.
  void Track(const std::shared_ptr<EnvResource>& resource);

  std::shared_ptr<CompletionQueue> completions;
  std::vector<std::weak_ptr<EnvResource>> resources;
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
