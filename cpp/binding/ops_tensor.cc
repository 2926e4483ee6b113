// Tensor identity and read-back: freeing, metadata, item, bytes out, conversions, memory totals.
#include <cstring>
#include <map>
#include <set>

#include "binding.h"

namespace vlalign {
namespace {

Napi::Value Free(const Info& info) {
  uint32_t id = 0;
  napi_get_value_uint32(info.Env(), info[0], &id);
  const bool freed = tensors().release(id);
  releasePendingBufferRefs();
  reportExternalMemory(info.Env());
  return Napi::Boolean::New(info.Env(), freed);
}

// freeMany(ids[]): a tidy scope's exit frees its tensors in one call.
Napi::Value FreeMany(const Info& info) {
  if (!info[0].IsArray()) throw Napi::TypeError::New(info.Env(), "freeMany: expected an array of tensor ids");
  Napi::Array ids = info[0].As<Napi::Array>();
  const uint32_t n = ids.Length();
  for (uint32_t k = 0; k < n; ++k) {
    uint32_t id = 0;
    napi_value value;
    napi_get_element(info.Env(), ids, k, &value);
    if (napi_get_value_uint32(info.Env(), value, &id) == napi_ok) tensors().release(id);
  }
  releasePendingBufferRefs();
  reportExternalMemory(info.Env());
  return info.Env().Undefined();
}

Napi::Value IsLive(const Info& info) {
  uint32_t id = 0;
  napi_get_value_uint32(info.Env(), info[0], &id);
  return Napi::Boolean::New(info.Env(), tensors().find(id) != nullptr);
}

Napi::Value Shape(const Info& info) {
  const at::Tensor& t = tensorAt(info, 0);
  const auto sizes = t.sizes();
  Napi::Array out = Napi::Array::New(info.Env(), sizes.size());
  for (size_t k = 0; k < sizes.size(); ++k) {
    out.Set(static_cast<uint32_t>(k), Napi::Number::New(info.Env(), static_cast<double>(sizes[k])));
  }
  return out;
}

Napi::Value Strides(const Info& info) {
  const at::Tensor& t = tensorAt(info, 0);
  const auto strides = t.strides();
  Napi::Array out = Napi::Array::New(info.Env(), strides.size());
  for (size_t k = 0; k < strides.size(); ++k) {
    out.Set(static_cast<uint32_t>(k), Napi::Number::New(info.Env(), static_cast<double>(strides[k])));
  }
  return out;
}

Napi::Value Dtype(const Info& info) {
  return Napi::Number::New(info.Env(), static_cast<int>(tensorAt(info, 0).scalar_type()));
}

Napi::Value DeviceOf(const Info& info) {
  return Napi::String::New(info.Env(), tensorAt(info, 0).device().str());
}

Napi::Value Numel(const Info& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(tensorAt(info, 0).numel()));
}

Napi::Value Dim(const Info& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(tensorAt(info, 0).dim()));
}

Napi::Value IsContiguous(const Info& info) {
  return Napi::Boolean::New(info.Env(), tensorAt(info, 0).is_contiguous());
}

Napi::Value Item(const Info& info) {
  return guard(info, "item", [&]() -> Napi::Value {
    const at::Scalar s = tensorAt(info, 0).item();
    if (s.isBoolean()) return Napi::Boolean::New(info.Env(), s.toBool());
    if (s.isIntegral(false)) return Napi::Number::New(info.Env(), static_cast<double>(s.toLong()));
    return Napi::Number::New(info.Env(), s.toDouble());
  });
}

// Copies the elements, in row-major order, into a new ArrayBuffer (CPU, contiguous, same dtype).
Napi::Value Bytes(const Info& info) {
  return guard(info, "data", [&]() -> Napi::Value {
    at::Tensor t = tensorAt(info, 0).detach().to(at::kCPU).contiguous();
    const size_t n = t.nbytes();
    Napi::ArrayBuffer out = Napi::ArrayBuffer::New(info.Env(), n);
    if (n > 0) std::memcpy(out.Data(), t.data_ptr(), n);
    return out;
  });
}

// to(id, dtype | null, device | null, copy)
Napi::Value To(const Info& info) {
  return guard(info, "to", [&] {
    const at::Tensor& t = tensorAt(info, 0);
    const at::ScalarType dtype = optionalDtypeAt(info, 1).value_or(t.scalar_type());
    const c10::Device device = info[2].IsString() ? deviceAt(info, 2) : t.device();
    return wrap(info.Env(), t.to(device, dtype, /*non_blocking=*/false, /*copy=*/boolAt(info, 3)));
  });
}

Napi::Value Clone(const Info& info) {
  return guard(info, "clone", [&] { return wrap(info.Env(), tensorAt(info, 0).clone()); });
}

Napi::Value Detach(const Info& info) {
  return guard(info, "detach", [&] { return wrap(info.Env(), tensorAt(info, 0).detach()); });
}

Napi::Value Alias(const Info& info) {
  return guard(info, "alias", [&] { return wrap(info.Env(), tensorAt(info, 0)); });
}

Napi::Value Contiguous(const Info& info) {
  return guard(info, "contiguous", [&] { return wrap(info.Env(), tensorAt(info, 0).contiguous()); });
}

Napi::Value Copy_(const Info& info) {
  return guard(info, "copy_", [&] {
    tensorAt(info, 0).copy_(tensorAt(info, 1));
    return info.Env().Undefined();
  }, {0, 1});
}

// Live handles and the bytes of the distinct storages behind them, per device.
Napi::Value Memory(const Info& info) {
  struct Totals { size_t tensors = 0; int64_t bytes = 0; std::set<const void*> storages; };
  std::map<std::string, Totals> perDevice;
  for (const at::Tensor& t : tensors().slots()) {
    if (!t.defined()) continue;
    Totals& totals = perDevice[t.device().str()];
    ++totals.tensors;
    if (t.has_storage() && totals.storages.insert(t.storage().unsafeGetStorageImpl()).second) {
      totals.bytes += static_cast<int64_t>(t.storage().nbytes());
    }
  }
  const Napi::Env env = info.Env();
  Napi::Object devices = Napi::Object::New(env);
  int64_t bytes = 0;
  for (const auto& [name, totals] : perDevice) {
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("numTensors", Napi::Number::New(env, static_cast<double>(totals.tensors)));
    entry.Set("numBytes", Napi::Number::New(env, static_cast<double>(totals.bytes)));
    devices.Set(name, entry);
    bytes += totals.bytes;
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("numTensors", Napi::Number::New(env, static_cast<double>(tensors().live())));
  out.Set("numBytes", Napi::Number::New(env, static_cast<double>(bytes)));
  out.Set("devices", devices);
  return out;
}

}  // namespace

void registerTensorOps(Napi::Env env, Napi::Object exports) {
  VL_EXPORT(exports, env, "free", Free);
  VL_EXPORT(exports, env, "freeMany", FreeMany);
  VL_EXPORT(exports, env, "isLive", IsLive);
  VL_EXPORT(exports, env, "shape", Shape);
  VL_EXPORT(exports, env, "strides", Strides);
  VL_EXPORT(exports, env, "dtype", Dtype);
  VL_EXPORT(exports, env, "device", DeviceOf);
  VL_EXPORT(exports, env, "numel", Numel);
  VL_EXPORT(exports, env, "dim", Dim);
  VL_EXPORT(exports, env, "isContiguous", IsContiguous);
  VL_EXPORT(exports, env, "item", Item);
  VL_EXPORT(exports, env, "bytes", Bytes);
  VL_EXPORT(exports, env, "to", To);
  VL_EXPORT(exports, env, "clone", Clone);
  VL_EXPORT(exports, env, "detach", Detach);
  VL_EXPORT(exports, env, "alias", Alias);
  VL_EXPORT(exports, env, "contiguous", Contiguous);
  VL_EXPORT(exports, env, "copy_", Copy_);
  VL_EXPORT(exports, env, "memory", Memory);
}

}  // namespace vlalign
