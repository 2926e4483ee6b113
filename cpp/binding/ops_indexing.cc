// Indexing by tensors: gather / scatter / indexSelect, advanced indexing and index_put_, masks.
#include "binding.h"

namespace vlalign {
namespace {

Napi::Value gather(const Info& info) {
  return guard(info, "gather", [&] {
    return wrap(info.Env(), tensorAt(info, 0).gather(intAt(info, 1), tensorAt(info, 2)));
  }, {0, 2});
}

// scatter(a, dim, index, src) and scatterValue(a, dim, index, value)
Napi::Value scatter(const Info& info) {
  return guard(info, "scatter", [&] {
    return wrap(info.Env(), tensorAt(info, 0).scatter(intAt(info, 1), tensorAt(info, 2), tensorAt(info, 3)));
  }, {0, 2, 3});
}

Napi::Value scatterValue(const Info& info) {
  return guard(info, "scatter", [&] {
    return wrap(info.Env(), tensorAt(info, 0).scatter(intAt(info, 1), tensorAt(info, 2), scalarAt(info, 3)));
  }, {0, 2});
}

Napi::Value scatterAdd(const Info& info) {
  return guard(info, "scatterAdd", [&] {
    return wrap(info.Env(), tensorAt(info, 0).scatter_add(intAt(info, 1), tensorAt(info, 2), tensorAt(info, 3)));
  }, {0, 2, 3});
}

Napi::Value scatter_(const Info& info) {
  return guard(info, "scatter_", [&] {
    tensorAt(info, 0).scatter_(intAt(info, 1), tensorAt(info, 2), tensorAt(info, 3));
    return info.Env().Undefined();
  }, {0, 2, 3});
}

Napi::Value indexSelect(const Info& info) {
  return guard(info, "indexSelect", [&] {
    return wrap(info.Env(), tensorAt(info, 0).index_select(intAt(info, 1), tensorAt(info, 2)));
  }, {0, 2});
}

Napi::Value indexAdd(const Info& info) {
  return guard(info, "indexAdd", [&] {
    return wrap(info.Env(), tensorAt(info, 0).index_add(intAt(info, 1), tensorAt(info, 2), tensorAt(info, 3)));
  }, {0, 2, 3});
}

// Advanced indexing: one entry per leading dim, 0 meaning "all of this dim" (Python's `:`).
c10::List<c10::optional<at::Tensor>> indicesAt(const Info& info, size_t i) {
  if (!info[i].IsArray())
    argumentTypeError(info, i, "an array of indices");
  Napi::Array array = info[i].As<Napi::Array>();
  c10::List<c10::optional<at::Tensor>> out;
  for (uint32_t k = 0; k < array.Length(); ++k) {
    uint32_t id = 0;
    napi_get_value_uint32(info.Env(), array.Get(k), &id);
    if (id == 0) {
      out.push_back(c10::nullopt);
      continue;
    }
    at::Tensor* t = tensors().find(id);
    if (t == nullptr) throw Napi::Error::New(info.Env(), "index: index tensor " + std::to_string(k) + " was disposed");
    out.push_back(*t);
  }
  return out;
}

Napi::Value index(const Info& info) {
  return guard(info, "index", [&] { return wrap(info.Env(), at::index(tensorAt(info, 0), indicesAt(info, 1))); },
               {0, 1});
}

// indexPut_(a, indices, values, accumulate)
Napi::Value indexPut_(const Info& info) {
  return guard(info, "indexPut_", [&] {
    at::index_put_(tensorAt(info, 0), indicesAt(info, 1), tensorAt(info, 2), boolAt(info, 3));
    return info.Env().Undefined();
  }, {0, 1, 2});
}

Napi::Value maskedSelect(const Info& info) {
  return guard(info, "maskedSelect", [&] {
    return wrap(info.Env(), tensorAt(info, 0).masked_select(tensorAt(info, 1)));
  }, {0, 1});
}

Napi::Value nonzero(const Info& info) {
  return guard(info, "nonzero", [&] { return wrap(info.Env(), tensorAt(info, 0).nonzero()); });
}

}  // namespace

void registerIndexingOps(Napi::Env env, Napi::Object exports) {
  VL_EXPORT(exports, env, "gather", gather);
  VL_EXPORT(exports, env, "scatter", scatter);
  VL_EXPORT(exports, env, "scatterValue", scatterValue);
  VL_EXPORT(exports, env, "scatterAdd", scatterAdd);
  VL_EXPORT(exports, env, "scatter_", scatter_);
  VL_EXPORT(exports, env, "indexSelect", indexSelect);
  VL_EXPORT(exports, env, "indexAdd", indexAdd);
  VL_EXPORT(exports, env, "index", index);
  VL_EXPORT(exports, env, "indexPut_", indexPut_);
  VL_EXPORT(exports, env, "maskedSelect", maskedSelect);
  VL_EXPORT(exports, env, "nonzero", nonzero);
}

}  // namespace vlalign
