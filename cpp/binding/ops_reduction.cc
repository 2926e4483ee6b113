// Reductions (over all elements or the given dims, with keepdim), softmax family, scans and
// order statistics.
#include "binding.h"

namespace vlalign {
namespace {

// fn(a, dims | null, keepdim, ...) where null reduces over every dim.
at::IntArrayRef dimsOrAll(const c10::optional<std::vector<int64_t>>& dims) {
  return dims ? at::IntArrayRef(*dims) : at::IntArrayRef();
}

Napi::Value sum(const Info& info) {
  return guard(info, "sum", [&] {
    const at::Tensor& a = tensorAt(info, 0);
    const auto dims = optionalIntsAt(info, 1);
    const auto dtype = optionalDtypeAt(info, 3);
    return wrap(info.Env(), dims ? a.sum(*dims, boolAt(info, 2), dtype) : a.sum(dtype));
  });
}

Napi::Value mean(const Info& info) {
  return guard(info, "mean", [&] {
    const at::Tensor& a = tensorAt(info, 0);
    const auto dims = optionalIntsAt(info, 1);
    const auto dtype = optionalDtypeAt(info, 3);
    return wrap(info.Env(), dims ? a.mean(*dims, boolAt(info, 2), dtype) : a.mean(dtype));
  });
}

Napi::Value prod(const Info& info) {
  return guard(info, "prod", [&] {
    const at::Tensor& a = tensorAt(info, 0);
    const auto dim = optionalIntAt(info, 1);
    return wrap(info.Env(), dim ? a.prod(*dim, boolAt(info, 2)) : a.prod());
  });
}

Napi::Value amax(const Info& info) {
  return guard(info, "amax", [&] {
    return wrap(info.Env(), tensorAt(info, 0).amax(dimsOrAll(optionalIntsAt(info, 1)), boolAt(info, 2)));
  });
}

Napi::Value amin(const Info& info) {
  return guard(info, "amin", [&] {
    return wrap(info.Env(), tensorAt(info, 0).amin(dimsOrAll(optionalIntsAt(info, 1)), boolAt(info, 2)));
  });
}

// max(a) -> value; max(a, dim, keepdim) -> [values, indices]. Same for min.
Napi::Value max(const Info& info) {
  return guard(info, "max", [&]() -> Napi::Value {
    const at::Tensor& a = tensorAt(info, 0);
    const auto dim = optionalIntAt(info, 1);
    if (!dim) return wrap(info.Env(), a.max());
    auto [values, indices] = a.max(*dim, boolAt(info, 2));
    return wrapAll(info.Env(), {values, indices});
  });
}

Napi::Value min(const Info& info) {
  return guard(info, "min", [&]() -> Napi::Value {
    const at::Tensor& a = tensorAt(info, 0);
    const auto dim = optionalIntAt(info, 1);
    if (!dim) return wrap(info.Env(), a.min());
    auto [values, indices] = a.min(*dim, boolAt(info, 2));
    return wrapAll(info.Env(), {values, indices});
  });
}

Napi::Value argmax(const Info& info) {
  return guard(info, "argmax", [&] {
    return wrap(info.Env(), tensorAt(info, 0).argmax(optionalIntAt(info, 1), boolAt(info, 2)));
  });
}

Napi::Value argmin(const Info& info) {
  return guard(info, "argmin", [&] {
    return wrap(info.Env(), tensorAt(info, 0).argmin(optionalIntAt(info, 1), boolAt(info, 2)));
  });
}

Napi::Value logsumexp(const Info& info) {
  return guard(info, "logsumexp", [&] {
    return wrap(info.Env(), tensorAt(info, 0).logsumexp(intsAt(info, 1), boolAt(info, 2)));
  });
}

// var / std (a, dims | null, correction, keepdim)
Napi::Value var(const Info& info) {
  return guard(info, "var", [&] {
    const auto dims = optionalIntsAt(info, 1);
    return wrap(info.Env(), at::var(tensorAt(info, 0), dims ? at::OptionalIntArrayRef(*dims) : c10::nullopt,
                                    intAt(info, 2), boolAt(info, 3)));
  });
}

Napi::Value std_(const Info& info) {
  return guard(info, "std", [&] {
    const auto dims = optionalIntsAt(info, 1);
    return wrap(info.Env(), at::std(tensorAt(info, 0), dims ? at::OptionalIntArrayRef(*dims) : c10::nullopt,
                                    intAt(info, 2), boolAt(info, 3)));
  });
}

// norm(a, p, dims | null, keepdim): the vector p-norm over dims.
Napi::Value norm(const Info& info) {
  return guard(info, "norm", [&] {
    const auto dims = optionalIntsAt(info, 2);
    return wrap(info.Env(), at::linalg_vector_norm(tensorAt(info, 0), scalarAt(info, 1),
                                                   dims ? at::OptionalIntArrayRef(*dims) : c10::nullopt,
                                                   boolAt(info, 3), c10::nullopt));
  });
}

Napi::Value softmax(const Info& info) {
  return guard(info, "softmax", [&] {
    return wrap(info.Env(), at::softmax(tensorAt(info, 0), intAt(info, 1), optionalDtypeAt(info, 2)));
  });
}

Napi::Value logSoftmax(const Info& info) {
  return guard(info, "logSoftmax", [&] {
    return wrap(info.Env(), at::log_softmax(tensorAt(info, 0), intAt(info, 1), optionalDtypeAt(info, 2)));
  });
}

Napi::Value cumsum(const Info& info) {
  return guard(info, "cumsum", [&] {
    return wrap(info.Env(), tensorAt(info, 0).cumsum(intAt(info, 1), optionalDtypeAt(info, 2)));
  });
}

Napi::Value cumprod(const Info& info) {
  return guard(info, "cumprod", [&] {
    return wrap(info.Env(), tensorAt(info, 0).cumprod(intAt(info, 1), optionalDtypeAt(info, 2)));
  });
}

// sort(a, dim, descending, stable) -> [values, indices]
Napi::Value sort(const Info& info) {
  return guard(info, "sort", [&] {
    auto [values, indices] = tensorAt(info, 0).sort(boolAt(info, 3), intAt(info, 1), boolAt(info, 2));
    return wrapAll(info.Env(), {values, indices});
  });
}

Napi::Value argsort(const Info& info) {
  return guard(info, "argsort", [&] {
    return wrap(info.Env(), tensorAt(info, 0).argsort(intAt(info, 1), boolAt(info, 2)));
  });
}

// topk(a, k, dim, largest, sorted) -> [values, indices]
Napi::Value topk(const Info& info) {
  return guard(info, "topk", [&] {
    auto [values, indices] =
        tensorAt(info, 0).topk(intAt(info, 1), intAt(info, 2), boolAt(info, 3), boolAt(info, 4));
    return wrapAll(info.Env(), {values, indices});
  });
}

Napi::Value multinomial(const Info& info) {
  return guard(info, "multinomial", [&] {
    return wrap(info.Env(), tensorAt(info, 0).multinomial(intAt(info, 1), boolAt(info, 2)));
  });
}

Napi::Value all(const Info& info) {
  return guard(info, "all", [&] {
    const at::Tensor& a = tensorAt(info, 0);
    const auto dim = optionalIntAt(info, 1);
    return wrap(info.Env(), dim ? a.all(*dim, boolAt(info, 2)) : a.all());
  });
}

Napi::Value any(const Info& info) {
  return guard(info, "any", [&] {
    const at::Tensor& a = tensorAt(info, 0);
    const auto dim = optionalIntAt(info, 1);
    return wrap(info.Env(), dim ? a.any(*dim, boolAt(info, 2)) : a.any());
  });
}

}  // namespace

void registerReductionOps(Napi::Env env, Napi::Object exports) {
  VL_EXPORT(exports, env, "sum", sum);
  VL_EXPORT(exports, env, "mean", mean);
  VL_EXPORT(exports, env, "prod", prod);
  VL_EXPORT(exports, env, "amax", amax);
  VL_EXPORT(exports, env, "amin", amin);
  VL_EXPORT(exports, env, "max", max);
  VL_EXPORT(exports, env, "min", min);
  VL_EXPORT(exports, env, "argmax", argmax);
  VL_EXPORT(exports, env, "argmin", argmin);
  VL_EXPORT(exports, env, "logsumexp", logsumexp);
  VL_EXPORT(exports, env, "var", var);
  VL_EXPORT(exports, env, "std", std_);
  VL_EXPORT(exports, env, "norm", norm);
  VL_EXPORT(exports, env, "softmax", softmax);
  VL_EXPORT(exports, env, "logSoftmax", logSoftmax);
  VL_EXPORT(exports, env, "cumsum", cumsum);
  VL_EXPORT(exports, env, "cumprod", cumprod);
  VL_EXPORT(exports, env, "sort", sort);
  VL_EXPORT(exports, env, "argsort", argsort);
  VL_EXPORT(exports, env, "topk", topk);
  VL_EXPORT(exports, env, "multinomial", multinomial);
  VL_EXPORT(exports, env, "all", all);
  VL_EXPORT(exports, env, "any", any);
}

}  // namespace vlalign
