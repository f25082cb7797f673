#pragma once

#include <napi.h>

namespace fltport {

void InitFilterManager(Napi::Env env, Napi::Object exports);

}  // namespace fltport
