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

// Throws a RangeError (`range`) or a TypeError with Node's `code`; returns false.
bool Throw(Napi::Env env, bool range, const char* code, const std::string& message);
bool ReadPortName(const Napi::Value& value, size_t maxUnits, std::wstring* out);
// A non-empty string of at most `maxUnits` UTF-16 units without NUL, named `name` in errors.
bool ReadString(const Napi::Value& value, const char* name, size_t maxUnits, std::wstring* out);
bool ReadOptionalBytes(const Napi::Value& value, const char* name, size_t maxBytes, std::vector<uint8_t>* out);
// The same checks, without the copy: `data` points into the JS value's memory, valid until JS
// runs again (nullptr and 0 for undefined or null).
bool ReadOptionalBytesView(const Napi::Value& value, const char* name, size_t maxBytes, const uint8_t** data,
                           size_t* size);
bool ReadBoolean(const Napi::Value& value, const char* name, bool* out);
bool ReadUint32(const Napi::Value& value, const char* name, uint32_t min, uint32_t max, uint32_t* out);
bool ReadInt32(const Napi::Value& value, const char* name, int32_t* out);
bool ReadUint64(const Napi::Value& value, const char* name, uint64_t* out);
bool ReadFunction(const Napi::Value& value, const char* name);

// An error with one of fltport's own codes (ERR_FLTPORT_CLOSED, ...).
Napi::Error FltportErrorToJs(Napi::Env env, const char* code, const std::string& message);

// A promise already rejected with `error`.
Napi::Promise RejectedPromise(Napi::Env env, const Napi::Error& error);

// ERR_FLTPORT_CLOSED, for a call on a port that is closed.
Napi::Error ClosedPortError(Napi::Env env);

// The value a promise rejects with when a Windows call failed; lib/errors.ts turns it into a
// WinError or FltportError.
Napi::Error FailureToJs(Napi::Env env, const Failure& failure);

// Raises a JS exception a callback left pending the way Node raises one from any event:
// 'uncaughtException', not a silent loss.
void RaisePending(Napi::Env env);

}  // namespace fltport
