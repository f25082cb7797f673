// Module entry point: one AddonData per environment, then each area registers its exports.
#include <napi.h>

#include "addon_data.h"
#include "filter_port_binding.h"
#include "lpc_port_binding.h"
#include "pool_job.h"
#include "runtime_info_binding.h"

namespace fltport {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData(env));
  PoolJob::Init(env);
  InitRuntimeInfo(env, exports);
  InitFilterPort(env, exports);
  InitLpcPort(env, exports);
  return exports;
}

}  // namespace fltport

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return fltport::Init(env, exports); }

NODE_API_MODULE(fltport, InitAddon)
