#include "binding.h"

#include <cmath>
#include <sstream>
#include <utility>

namespace vlalign {

namespace {

std::string argName(size_t i) { return "argument " + std::to_string(i); }


napi_valuetype typeAt(const Info& info, size_t i) {
  napi_valuetype type = napi_undefined;
  if (i < info.Length()) napi_typeof(info.Env(), info[i], &type);
  return type;
}

// Bytes of native allocation change before V8 is told; small enough for GC to react in a loop of
// large tensors, large enough that a loop of small ops never pays for the call.
constexpr int64_t kExternalReportThreshold = 1 << 20;

}  // namespace

void argumentTypeError(const Info& info, size_t i, const std::string& expected) {
  throw ArgumentError(Napi::TypeError::New(info.Env(), argName(i) + ": expected " + expected), true);
}

void argumentError(const Info& info, size_t i, const std::string& problem) {
  throw ArgumentError(Napi::Error::New(info.Env(), argName(i) + ": " + problem), false);
}

at::Tensor& tensorAt(const Info& info, size_t i) {
  uint32_t id = 0;
  if (napi_get_value_uint32(info.Env(), info[i], &id) != napi_ok) argumentTypeError(info, i, "a tensor");
  at::Tensor* t = tensors().find(id);
  if (t == nullptr) {
    argumentError(info, i, "the tensor was disposed and cannot be used");
  }
  return *t;
}

c10::optional<at::Tensor> optionalTensorAt(const Info& info, size_t i) {
  const napi_valuetype type = typeAt(info, i);
  if (type == napi_undefined || type == napi_null) return c10::nullopt;
  uint32_t id = 0;
  if (napi_get_value_uint32(info.Env(), info[i], &id) != napi_ok) argumentTypeError(info, i, "a tensor or none");
  if (id == 0) return c10::nullopt;
  return tensorAt(info, i);
}

std::vector<at::Tensor> tensorsAt(const Info& info, size_t i, bool zeroIsNone) {
  const char* expected = zeroIsNone ? "an array of tensors or 0" : "an array of tensors";
  if (!info[i].IsArray()) argumentTypeError(info, i, expected);
  Napi::Array array = info[i].As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(array.Length());
  for (uint32_t k = 0; k < array.Length(); ++k) {
    uint32_t id = 0;
    if (napi_get_value_uint32(info.Env(), array.Get(k), &id) != napi_ok) argumentTypeError(info, i, expected);
    if (id == 0 && zeroIsNone) {
      out.emplace_back();  // undefined: "no tensor here"
      continue;
    }
    at::Tensor* t = tensors().find(id);
    if (t == nullptr) {
      argumentError(info, i, "entry " + std::to_string(k) + " is a disposed tensor");
    }
    out.push_back(*t);
  }
  return out;
}

double numberAt(const Info& info, size_t i) {
  double v = 0;
  if (napi_get_value_double(info.Env(), info[i], &v) != napi_ok) argumentTypeError(info, i, "a number");
  return v;
}

int64_t intAt(const Info& info, size_t i) {
  const double v = numberAt(info, i);
  if (!std::isfinite(v) || std::floor(v) != v) argumentTypeError(info, i, "an integer");
  return static_cast<int64_t>(v);
}

c10::optional<int64_t> optionalIntAt(const Info& info, size_t i) {
  const napi_valuetype type = typeAt(info, i);
  if (type == napi_undefined || type == napi_null) return c10::nullopt;
  return intAt(info, i);
}

bool boolAt(const Info& info, size_t i) {
  bool v = false;
  if (napi_get_value_bool(info.Env(), info[i], &v) != napi_ok) argumentTypeError(info, i, "a boolean");
  return v;
}

std::string stringAt(const Info& info, size_t i) {
  if (!info[i].IsString()) argumentTypeError(info, i, "a string");
  return info[i].As<Napi::String>().Utf8Value();
}

std::vector<int64_t> intsAt(const Info& info, size_t i) {
  if (!info[i].IsArray()) argumentTypeError(info, i, "an array of integers");
  Napi::Array array = info[i].As<Napi::Array>();
  std::vector<int64_t> out(array.Length());
  for (uint32_t k = 0; k < array.Length(); ++k) {
    double v = 0;
    if (napi_get_value_double(info.Env(), array.Get(k), &v) != napi_ok || !std::isfinite(v) ||
        std::floor(v) != v) {
      argumentTypeError(info, i, "an array of integers");
    }
    out[k] = static_cast<int64_t>(v);
  }
  return out;
}

c10::optional<std::vector<int64_t>> optionalIntsAt(const Info& info, size_t i) {
  const napi_valuetype type = typeAt(info, i);
  if (type == napi_undefined || type == napi_null) return c10::nullopt;
  return intsAt(info, i);
}

at::ScalarType dtypeAt(const Info& info, size_t i) {
  const int64_t code = intAt(info, i);
  switch (static_cast<at::ScalarType>(code)) {
    case at::kFloat: case at::kDouble: case at::kHalf: case at::kBFloat16: case at::kLong:
    case at::kInt: case at::kShort: case at::kChar: case at::kByte: case at::kBool:
      return static_cast<at::ScalarType>(code);
    default:
      argumentTypeError(info, i, "a dtype code, not " + std::to_string(code));
  }
}

c10::optional<at::ScalarType> optionalDtypeAt(const Info& info, size_t i) {
  const napi_valuetype type = typeAt(info, i);
  if (type == napi_undefined || type == napi_null) return c10::nullopt;
  return dtypeAt(info, i);
}

c10::Device deviceAt(const Info& info, size_t i) {
  const std::string name = stringAt(info, i);
  try {
    return c10::Device(name);
  } catch (const c10::Error&) {
    argumentTypeError(info, i, "a device, not '" + name + "'");
  }
}

at::Scalar scalarAt(const Info& info, size_t i) {
  if (typeAt(info, i) == napi_boolean) return at::Scalar(boolAt(info, i));
  const double v = numberAt(info, i);
  if (std::isfinite(v) && std::floor(v) == v && std::fabs(v) < 9007199254740992.0) {
    return at::Scalar(static_cast<int64_t>(v));
  }
  return at::Scalar(v);
}

void reportExternalMemory(Napi::Env env) {
  const int64_t delta = tensors().takeExternalDelta(kExternalReportThreshold);
  if (delta != 0) Napi::MemoryManagement::AdjustExternalMemory(env, delta);
}

Napi::Value wrap(Napi::Env env, at::Tensor t) {
  const uint32_t id = tensors().put(std::move(t));
  reportExternalMemory(env);
  napi_value raw;
  napi_create_uint32(env, id, &raw);
  return Napi::Value(env, raw);
}

Napi::Value wrapAll(Napi::Env env, const std::vector<at::Tensor>& ts) {
  Napi::Array out = Napi::Array::New(env, ts.size());
  for (size_t k = 0; k < ts.size(); ++k) out.Set(static_cast<uint32_t>(k), wrap(env, ts[k]));
  return out;
}

Napi::Value wrapOptional(Napi::Env env, const at::Tensor& t) {
  if (!t.defined()) return Napi::Number::New(env, 0);
  return wrap(env, t);
}

std::string shapeString(at::IntArrayRef sizes) {
  std::ostringstream s;
  s << '[';
  for (size_t k = 0; k < sizes.size(); ++k) s << (k ? ", " : "") << sizes[k];
  s << ']';
  return s.str();
}

std::string describeTensors(const Info& info, std::initializer_list<size_t> tensorArgs) {
  std::string out;
  auto describe = [&](napi_value value) {
    uint32_t id = 0;
    if (napi_get_value_uint32(info.Env(), value, &id) != napi_ok) return;
    const at::Tensor* t = tensors().find(id);
    if (t == nullptr) return;
    out += out.empty() ? "" : " and ";
    out += shapeString(t->sizes());
  };
  for (size_t i : tensorArgs) {
    if (i >= info.Length()) continue;
    if (!info[i].IsArray()) {
      describe(info[i]);
      continue;
    }
    Napi::Array array = info[i].As<Napi::Array>();
    for (uint32_t k = 0; k < array.Length(); ++k) describe(array.Get(k));
  }
  return out;
}

namespace {
std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}
}  // namespace

void rethrowWithOpName(const Info& info, const char* op, const ArgumentError& error) {
  const std::string message = std::string(op) + ": " + error.Message();
  if (error.isTypeError()) throw Napi::TypeError::New(info.Env(), message);
  throw Napi::Error::New(info.Env(), message);
}

void rethrowAsJs(const Info& info, const char* op, std::initializer_list<size_t> tensorArgs) {
  const Napi::Env env = info.Env();
  std::string prefix = std::string(op) + ": ";
  auto withShapes = [&](const std::string& message) {
    const std::string shapes = describeTensors(info, tensorArgs);
    return trimmed(prefix + message) + (shapes.empty() ? "" : " (shapes " + shapes + ")");
  };
  try {
    throw;
  } catch (const c10::TypeError& e) {
    throw Napi::TypeError::New(env, withShapes(e.what_without_backtrace()));
  } catch (const c10::IndexError& e) {
    throw Napi::RangeError::New(env, withShapes(e.what_without_backtrace()));
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, withShapes(e.what_without_backtrace()));
  } catch (const std::bad_alloc&) {
    throw Napi::RangeError::New(env, prefix + "out of memory");
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, withShapes(e.what()));
  } catch (...) {
    throw Napi::Error::New(env, prefix + "unknown native error");
  }
}

}  // namespace vlalign
