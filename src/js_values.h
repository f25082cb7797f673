// Conversions between JS values and the plain data the Windows layer takes. Argument checks here
// repeat the TypeScript ones so that a direct call into the addon can never crash it; each helper
// throws a JS TypeError or RangeError and returns false on bad input.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "win/failure.h"

namespace fltport {

bool ReadPortName(const Napi::Value& value, size_t maxUnits, std::wstring* out);
bool ReadOptionalBytes(const Napi::Value& value, const char* name, size_t maxBytes, std::vector<uint8_t>* out);
bool ReadBoolean(const Napi::Value& value, const char* name, bool* out);

// The value a promise rejects with when a Windows call failed; lib/errors.ts turns it into a
// WinError or FltportError.
Napi::Error FailureToJs(Napi::Env env, const Failure& failure);

}  // namespace fltport
