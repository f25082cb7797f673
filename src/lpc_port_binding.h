#pragma once

#include <napi.h>

namespace fltport {

void InitLpcPort(Napi::Env env, Napi::Object exports);

}  // namespace fltport
