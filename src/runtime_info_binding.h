#pragma once

#include <napi.h>

namespace fltport {

void InitRuntimeInfo(Napi::Env env, Napi::Object exports);

}  // namespace fltport
