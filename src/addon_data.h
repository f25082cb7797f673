// Per-environment state of the addon (one per main thread or worker).
#pragma once

#include <napi.h>

#include <memory>

#include "completion_queue.h"

namespace fltport {

struct AddonData {
  explicit AddonData(Napi::Env env) : completions(std::make_shared<CompletionQueue>(env)) {}
  ~AddonData() { completions->Close(); }

  std::shared_ptr<CompletionQueue> completions;
  Napi::FunctionReference filterPortClass;
};

inline AddonData* GetAddonData(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

}  // namespace fltport
