#pragma once

#include <napi.h>

namespace fltport {

void InitFilterPort(Napi::Env env, Napi::Object exports);

}  // namespace fltport
