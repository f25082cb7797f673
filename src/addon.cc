// Module entry point: one AddonData per environment, then each area registers its exports.
#include <napi.h>
#include <windows.h>

#include <algorithm>

#include "addon_data.h"
#include "filter_manager_binding.h"
#include "filter_port_binding.h"
#include "lpc_port_binding.h"
#include "pool_job.h"
#include "runtime_info_binding.h"

namespace fltport {

namespace {

// How long an ending environment waits for its cancelled reads to complete and its LPC
// servers' threads to end. Windows is expected to complete a cancelled FilterGetMessage at once
// (its cancel routine runs; unverified on Windows); the bound only keeps a worker from hanging on a
// lower layer that never does, whose completions then arrive later and touch only native state.
constexpr DWORD kTeardownWaitMs = 10000;

// Pinned for the life of the process: Node unloads an addon when the last environment that
// loaded it ends (a worker that alone used fltport), but thread-pool callbacks run this
// module's code after that: a send the kernel holds cannot be cancelled and returns when the
// driver decides, and completions, timers and an LPC server's thread finish on their own.
// Holding a module reference per callback (FreeLibraryWhenCallbackReturns) would have to cover
// every one of those paths; a pinned module costs only its mapped image after the last user.
// (It fails only for an address outside every module, which this is not.)
void PinModule() {
  HMODULE module = nullptr;
  GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_PIN,
                     reinterpret_cast<LPCWSTR>(&PinModule), &module);
}

// Runs before the thread-safe function's own cleanup and before Node-API finalizes the wrapped
// objects and the instance data (Node runs cleanup hooks in reverse order of registration):
// every port of the environment is closed natively and nothing runs in JS any more.
void TeardownEnvironment(AddonData* data) {
  data->completions->Close();
  for (PoolJob* job : data->stagedJobs) delete job;  // never reached a pool thread
  data->stagedJobs.clear();
  for (const std::weak_ptr<EnvResource>& weak : data->resources) {
    if (std::shared_ptr<EnvResource> resource = weak.lock()) resource->Teardown();
  }
  data->resources.clear();
  data->completions->WaitForWork(kTeardownWaitMs);
}

}  // namespace

void AddonData::Track(const std::shared_ptr<EnvResource>& resource) {
  // Pruned when full, so that the list stays proportional to the ports open at once.
  if (resources.size() == resources.capacity()) {
    resources.erase(std::remove_if(resources.begin(), resources.end(),
                                   [](const std::weak_ptr<EnvResource>& weak) { return weak.expired(); }),
                    resources.end());
  }
  resources.push_back(resource);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  PinModule();
  auto* data = new AddonData(env);
  env.SetInstanceData(data);
  PoolJob::Init(env);
  // After the thread-safe function (created with AddonData) registered its cleanup: runs first.
  env.AddCleanupHook(&TeardownEnvironment, data);
  InitRuntimeInfo(env, exports);
  InitFilterPort(env, exports);
  InitFilterManager(env, exports);
  InitLpcPort(env, exports);
  return exports;
}

}  // namespace fltport

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return fltport::Init(env, exports); }

NODE_API_MODULE(fltport, InitAddon)
