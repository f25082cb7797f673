#include "js_values.h"

namespace fltport {

bool Throw(Napi::Env env, bool range, const char* code, const std::string& message) {
  Napi::Error error = range ? static_cast<Napi::Error>(Napi::RangeError::New(env, message))
                            : static_cast<Napi::Error>(Napi::TypeError::New(env, message));
  error.Set("code", Napi::String::New(env, code));
  error.ThrowAsJavaScriptException();
  return false;
}

bool ReadPortName(const Napi::Value& value, size_t maxUnits, std::wstring* out) {
  return ReadString(value, "name", maxUnits, out);
}

bool ReadString(const Napi::Value& value, const char* name, size_t maxUnits, std::wstring* out) {
  Napi::Env env = value.Env();
  const std::string label(name);
  if (!value.IsString()) return Throw(env, false, "ERR_INVALID_ARG_TYPE", label + " must be a string");
  std::u16string units = value.As<Napi::String>().Utf16Value();
  if (units.empty()) return Throw(env, false, "ERR_INVALID_ARG_VALUE", label + " must not be empty");
  if (units.size() > maxUnits) {
    return Throw(env, true, "ERR_OUT_OF_RANGE", label + " must be at most " + std::to_string(maxUnits) + " UTF-16 units");
  }
  if (units.find(u'\0') != std::u16string::npos) {
    return Throw(env, false, "ERR_INVALID_ARG_VALUE", label + " must not contain NUL characters");
  }
  out->assign(units.begin(), units.end());
  return true;
}

bool ReadOptionalBytesView(const Napi::Value& value, const char* name, size_t maxBytes, const uint8_t** data,
                           size_t* size) {
  Napi::Env env = value.Env();
  *data = nullptr;
  *size = 0;
  if (value.IsUndefined() || value.IsNull()) return true;
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    return Throw(env, false, "ERR_INVALID_ARG_TYPE", std::string(name) + " must be a Uint8Array");
  }
  Napi::Uint8Array bytes = value.As<Napi::Uint8Array>();
  // A view over a detached ArrayBuffer reports 0 bytes: refuse it rather than send nothing.
  if (bytes.ByteLength() == 0 && bytes.ArrayBuffer().IsDetached()) {
    return Throw(env, false, "ERR_INVALID_ARG_VALUE", std::string(name) + " must not be a view of a detached ArrayBuffer");
  }
  if (bytes.ByteLength() > maxBytes) {
    return Throw(env, true, "ERR_OUT_OF_RANGE",
                 std::string(name) + " must be at most " + std::to_string(maxBytes) + " bytes");
  }
  *data = bytes.Data();
  *size = bytes.ByteLength();
  return true;
}

bool ReadOptionalBytes(const Napi::Value& value, const char* name, size_t maxBytes, std::vector<uint8_t>* out) {
  const uint8_t* data = nullptr;
  size_t size = 0;
  if (!ReadOptionalBytesView(value, name, maxBytes, &data, &size)) return false;
  out->assign(data, data + size);
  return true;
}

bool ReadBoolean(const Napi::Value& value, const char* name, bool* out) {
  if (!value.IsBoolean()) return Throw(value.Env(), false, "ERR_INVALID_ARG_TYPE", std::string(name) + " must be a boolean");
  *out = value.As<Napi::Boolean>().Value();
  return true;
}

bool ReadUint32(const Napi::Value& value, const char* name, uint32_t min, uint32_t max, uint32_t* out) {
  Napi::Env env = value.Env();
  if (!value.IsNumber()) return Throw(env, false, "ERR_INVALID_ARG_TYPE", std::string(name) + " must be a number");
  double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= min && number <= max) || number != static_cast<double>(static_cast<uint32_t>(number))) {
    return Throw(env, true, "ERR_OUT_OF_RANGE",
                 std::string(name) + " must be an integer from " + std::to_string(min) + " to " + std::to_string(max));
  }
  *out = static_cast<uint32_t>(number);
  return true;
}

bool ReadInt32(const Napi::Value& value, const char* name, int32_t* out) {
  Napi::Env env = value.Env();
  if (!value.IsNumber()) return Throw(env, false, "ERR_INVALID_ARG_TYPE", std::string(name) + " must be a number");
  double number = value.As<Napi::Number>().DoubleValue();
  // NTSTATUS values are written both as signed and as unsigned 32-bit numbers.
  if (!(number >= -2147483648.0 && number <= 4294967295.0) || number != static_cast<double>(static_cast<int64_t>(number))) {
    return Throw(env, true, "ERR_OUT_OF_RANGE", std::string(name) + " must be a 32-bit integer");
  }
  *out = static_cast<int32_t>(static_cast<uint32_t>(static_cast<int64_t>(number)));
  return true;
}

bool ReadUint64(const Napi::Value& value, const char* name, uint64_t* out) {
  Napi::Env env = value.Env();
  if (!value.IsBigInt()) return Throw(env, false, "ERR_INVALID_ARG_TYPE", std::string(name) + " must be a bigint");
  bool lossless = false;
  *out = value.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) return Throw(env, true, "ERR_OUT_OF_RANGE", std::string(name) + " must fit in 64 bits unsigned");
  return true;
}

bool ReadFunction(const Napi::Value& value, const char* name) {
  if (value.IsFunction()) return true;
  return Throw(value.Env(), false, "ERR_INVALID_ARG_TYPE", std::string(name) + " must be a function");
}

Napi::Error FltportErrorToJs(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  return error;
}

Napi::Promise RejectedPromise(Napi::Env env, const Napi::Error& error) {
  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
  deferred.Reject(error.Value());
  return deferred.Promise();
}

Napi::Error ClosedPortError(Napi::Env env) { return FltportErrorToJs(env, "ERR_FLTPORT_CLOSED", "the port is closed"); }

Napi::Error FailureToJs(Napi::Env env, const Failure& failure) {
  if (failure.fltportCode != nullptr) {
    Napi::Error error = FltportErrorToJs(env, failure.fltportCode, failure.detail);
    error.Set("syscall", Napi::String::New(env, failure.syscall));
    return error;
  }
  Napi::Error error = Napi::Error::New(env, std::string(failure.syscall) + " failed");
  error.Set("syscall", Napi::String::New(env, failure.syscall));
  error.Set(failure.kind == CodeKind::kNtStatus ? "ntstatus" : "hresult", Napi::Number::New(env, failure.code));
  error.Set("systemMessage", Napi::String::New(env, SystemMessage(failure.kind, failure.code)));
  return error;
}

void RaisePending(Napi::Env env) {
  if (env.IsExceptionPending()) napi_fatal_exception(env, env.GetAndClearPendingException().Value());
}

}  // namespace fltport
