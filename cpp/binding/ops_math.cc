// Elementwise math: unary functions, binary arithmetic and comparisons (tensor or scalar operand),
// where / masked fill / clamp, and the in-place forms. Binary ops report both shapes on failure.
#include "binding.h"

namespace vlalign {
namespace {

// ---- unary --------------------------------------------------------------------------------------

#define VL_UNARY(fn, expr)                                                                   \
  Napi::Value fn(const Info& info) {                                                         \
    return guard(info, #fn, [&] {                                                            \
      const at::Tensor& a = tensorAt(info, 0);                                               \
      return wrap(info.Env(), expr);                                                         \
    });                                                                                      \
  }

#define VL_UNARY_INPLACE(fn, expr)                                                           \
  Napi::Value fn(const Info& info) {                                                         \
    return guard(info, #fn, [&] {                                                            \
      at::Tensor& a = tensorAt(info, 0);                                                     \
      expr;                                                                                  \
      return info.Env().Undefined();                                                         \
    });                                                                                      \
  }

// Functions with both an out-of-place and an in-place form (name_).
#define VL_UNARY_FUNCTIONS(X)                                                                      \
  X(neg) X(abs) X(exp) X(log) X(sqrt) X(rsqrt) X(sin) X(cos) X(tanh) X(sigmoid) X(relu) X(floor) \
  X(ceil) X(round) X(trunc) X(sign) X(reciprocal) X(log1p) X(expm1) X(erf) X(square) X(log2)

#define VL_DEFINE_UNARY(name)                   \
  VL_UNARY(name, a.name())                      \
  VL_UNARY_INPLACE(name##_, a.name##_())
VL_UNARY_FUNCTIONS(VL_DEFINE_UNARY)

VL_UNARY(isnan, a.isnan())
VL_UNARY(isinf, a.isinf())
VL_UNARY(isfinite, a.isfinite())
VL_UNARY(logical_not, a.logical_not())
VL_UNARY(silu, at::silu(a))
VL_UNARY_INPLACE(silu_, at::silu_(a))
VL_UNARY_INPLACE(zero_, a.zero_())

Napi::Value fill_(const Info& info) {
  return guard(info, "fill_", [&] {
    tensorAt(info, 0).fill_(scalarAt(info, 1));
    return info.Env().Undefined();
  });
}

Napi::Value uniform_(const Info& info) {
  return guard(info, "uniform_", [&] {
    tensorAt(info, 0).uniform_(numberAt(info, 1), numberAt(info, 2));
    return info.Env().Undefined();
  });
}

Napi::Value normal_(const Info& info) {
  return guard(info, "normal_", [&] {
    tensorAt(info, 0).normal_(numberAt(info, 1), numberAt(info, 2));
    return info.Env().Undefined();
  });
}

// ---- binary -------------------------------------------------------------------------------------

// fn(a, b) with both operands tensors; shapes are named on failure.
#define VL_BINARY(fn, expr)                                                                  \
  Napi::Value fn(const Info& info) {                                                         \
    return guard(                                                                            \
        info, #fn,                                                                           \
        [&] {                                                                                \
          const at::Tensor& a = tensorAt(info, 0);                                           \
          const at::Tensor& b = tensorAt(info, 1);                                           \
          return wrap(info.Env(), expr);                                                     \
        },                                                                                   \
        {0, 1});                                                                             \
  }

// fn(a, s) with a scalar second operand.
#define VL_BINARY_SCALAR(fn, name, expr)                                                     \
  Napi::Value fn(const Info& info) {                                                         \
    return guard(info, name, [&] {                                                           \
      const at::Tensor& a = tensorAt(info, 0);                                               \
      const at::Scalar s = scalarAt(info, 1);                                                \
      return wrap(info.Env(), expr);                                                         \
    });                                                                                      \
  }

#define VL_BINARY_INPLACE(fn, expr)                                                          \
  Napi::Value fn(const Info& info) {                                                         \
    return guard(                                                                            \
        info, #fn,                                                                           \
        [&] {                                                                                \
          at::Tensor& a = tensorAt(info, 0);                                                 \
          const at::Tensor& b = tensorAt(info, 1);                                           \
          expr;                                                                              \
          return info.Env().Undefined();                                                     \
        },                                                                                   \
        {0, 1});                                                                             \
  }

#define VL_BINARY_SCALAR_INPLACE(fn, name, expr)                                             \
  Napi::Value fn(const Info& info) {                                                         \
    return guard(info, name, [&] {                                                           \
      at::Tensor& a = tensorAt(info, 0);                                                     \
      const at::Scalar s = scalarAt(info, 1);                                                \
      expr;                                                                                  \
      return info.Env().Undefined();                                                         \
    });                                                                                      \
  }

at::Scalar alphaAt(const Info& info) { return info.Length() > 2 ? scalarAt(info, 2) : at::Scalar(1); }

// Ops whose tensor, scalar and in-place forms all exist in libtorch.
#define VL_ARITHMETIC(X) X(mul) X(pow) X(remainder) X(fmod)
#define VL_DEFINE_ARITHMETIC(name)                                \
  VL_BINARY(name, a.name(b))                                      \
  VL_BINARY_SCALAR(name##Scalar, #name, a.name(s))                \
  VL_BINARY_INPLACE(name##_, a.name##_(b))                        \
  VL_BINARY_SCALAR_INPLACE(name##Scalar_, #name "_", a.name##_(s))
VL_ARITHMETIC(VL_DEFINE_ARITHMETIC)

VL_BINARY(add, a.add(b, alphaAt(info)))
VL_BINARY(sub, a.sub(b, alphaAt(info)))
VL_BINARY_SCALAR(addScalar, "add", a.add(s, alphaAt(info)))
VL_BINARY_SCALAR(subScalar, "sub", a.sub(s, alphaAt(info)))
VL_BINARY_INPLACE(add_, a.add_(b, alphaAt(info)))
VL_BINARY_INPLACE(sub_, a.sub_(b, alphaAt(info)))
VL_BINARY_SCALAR_INPLACE(addScalar_, "add_", a.add_(s, alphaAt(info)))
VL_BINARY_SCALAR_INPLACE(subScalar_, "sub_", a.sub_(s, alphaAt(info)))

// div(a, b, roundingMode?) where roundingMode is 'trunc' or 'floor'.
c10::optional<c10::string_view> roundingModeAt(const Info& info, std::string& storage) {
  if (info.Length() < 3 || !info[2].IsString()) return c10::nullopt;
  storage = stringAt(info, 2);
  return c10::string_view(storage);
}
Napi::Value div(const Info& info) {
  return guard(info, "div", [&] {
    std::string mode;
    return wrap(info.Env(), tensorAt(info, 0).div(tensorAt(info, 1), roundingModeAt(info, mode)));
  }, {0, 1});
}
Napi::Value divScalar(const Info& info) {
  return guard(info, "div", [&] {
    std::string mode;
    return wrap(info.Env(), tensorAt(info, 0).div(scalarAt(info, 1), roundingModeAt(info, mode)));
  });
}
VL_BINARY_INPLACE(div_, a.div_(b))
VL_BINARY_SCALAR_INPLACE(divScalar_, "div_", a.div_(s))

// Scalar on the left: s - a, s / a, s ** a.
VL_BINARY_SCALAR(rsubScalar, "rsub", at::rsub(a, s))
VL_BINARY_SCALAR(rdivScalar, "rdiv", a.reciprocal().mul(s))
VL_BINARY_SCALAR(rpowScalar, "rpow", at::pow(s, a))

VL_BINARY(maximum, at::maximum(a, b))
VL_BINARY(minimum, at::minimum(a, b))
VL_BINARY(atan2, at::atan2(a, b))
VL_BINARY(logical_and, a.logical_and(b))
VL_BINARY(logical_or, a.logical_or(b))
VL_BINARY(logical_xor, a.logical_xor(b))

#define VL_COMPARISONS(X) X(eq) X(ne) X(lt) X(le) X(gt) X(ge)
#define VL_DEFINE_COMPARISON(name) \
  VL_BINARY(name, a.name(b))       \
  VL_BINARY_SCALAR(name##Scalar, #name, a.name(s))
VL_COMPARISONS(VL_DEFINE_COMPARISON)

Napi::Value equal(const Info& info) {
  return guard(info, "equal", [&]() -> Napi::Value {
    const at::Tensor& a = tensorAt(info, 0);
    const at::Tensor& b = tensorAt(info, 1);
    return Napi::Boolean::New(info.Env(), a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() && a.equal(b));
  });
}

Napi::Value allclose(const Info& info) {
  return guard(info, "allclose", [&]() -> Napi::Value {
    return Napi::Boolean::New(info.Env(), tensorAt(info, 0).allclose(tensorAt(info, 1), numberAt(info, 2),
                                                                     numberAt(info, 3), boolAt(info, 4)));
  }, {0, 1});
}

// ---- ternary ------------------------------------------------------------------------------------

Napi::Value where(const Info& info) {
  return guard(info, "where", [&] {
    return wrap(info.Env(), at::where(tensorAt(info, 0), tensorAt(info, 1), tensorAt(info, 2)));
  }, {0, 1, 2});
}

Napi::Value maskedFill(const Info& info) {
  return guard(info, "maskedFill", [&] {
    return wrap(info.Env(), tensorAt(info, 0).masked_fill(tensorAt(info, 1), scalarAt(info, 2)));
  }, {0, 1});
}

Napi::Value maskedFill_(const Info& info) {
  return guard(info, "maskedFill_", [&] {
    tensorAt(info, 0).masked_fill_(tensorAt(info, 1), scalarAt(info, 2));
    return info.Env().Undefined();
  }, {0, 1});
}

c10::optional<at::Scalar> optionalScalarAt(const Info& info, size_t i) {
  if (info[i].IsUndefined() || info[i].IsNull()) return c10::nullopt;
  return scalarAt(info, i);
}

Napi::Value clamp(const Info& info) {
  return guard(info, "clamp", [&] {
    return wrap(info.Env(), tensorAt(info, 0).clamp(optionalScalarAt(info, 1), optionalScalarAt(info, 2)));
  });
}

Napi::Value clamp_(const Info& info) {
  return guard(info, "clamp_", [&] {
    tensorAt(info, 0).clamp_(optionalScalarAt(info, 1), optionalScalarAt(info, 2));
    return info.Env().Undefined();
  });
}

Napi::Value lerp(const Info& info) {
  return guard(info, "lerp", [&] {
    return wrap(info.Env(), tensorAt(info, 0).lerp(tensorAt(info, 1), scalarAt(info, 2)));
  }, {0, 1});
}

Napi::Value addcmul(const Info& info) {
  return guard(info, "addcmul", [&] {
    return wrap(info.Env(), tensorAt(info, 0).addcmul(tensorAt(info, 1), tensorAt(info, 2), scalarAt(info, 3)));
  }, {0, 1, 2});
}

Napi::Value addcdiv(const Info& info) {
  return guard(info, "addcdiv", [&] {
    return wrap(info.Env(), tensorAt(info, 0).addcdiv(tensorAt(info, 1), tensorAt(info, 2), scalarAt(info, 3)));
  }, {0, 1, 2});
}

}  // namespace

void registerMathOps(Napi::Env env, Napi::Object exports) {
#define VL_EXPORT_UNARY(name) VL_EXPORT(exports, env, #name, name); VL_EXPORT(exports, env, #name "_", name##_);
  VL_UNARY_FUNCTIONS(VL_EXPORT_UNARY)
#define VL_EXPORT_ARITHMETIC(name)                                 \
  VL_EXPORT(exports, env, #name, name);                            \
  VL_EXPORT(exports, env, #name "Scalar", name##Scalar);           \
  VL_EXPORT(exports, env, #name "_", name##_);                     \
  VL_EXPORT(exports, env, #name "Scalar_", name##Scalar_);
  VL_ARITHMETIC(VL_EXPORT_ARITHMETIC)
  VL_EXPORT_ARITHMETIC(add)
  VL_EXPORT_ARITHMETIC(sub)
  VL_EXPORT_ARITHMETIC(div)
#define VL_EXPORT_COMPARISON(name)      \
  VL_EXPORT(exports, env, #name, name); \
  VL_EXPORT(exports, env, #name "Scalar", name##Scalar);
  VL_COMPARISONS(VL_EXPORT_COMPARISON)
  VL_EXPORT(exports, env, "isnan", isnan);
  VL_EXPORT(exports, env, "isinf", isinf);
  VL_EXPORT(exports, env, "isfinite", isfinite);
  VL_EXPORT(exports, env, "logicalNot", logical_not);
  VL_EXPORT(exports, env, "logicalAnd", logical_and);
  VL_EXPORT(exports, env, "logicalOr", logical_or);
  VL_EXPORT(exports, env, "logicalXor", logical_xor);
  VL_EXPORT(exports, env, "silu", silu);
  VL_EXPORT(exports, env, "silu_", silu_);
  VL_EXPORT(exports, env, "zero_", zero_);
  VL_EXPORT(exports, env, "fill_", fill_);
  VL_EXPORT(exports, env, "uniform_", uniform_);
  VL_EXPORT(exports, env, "normal_", normal_);
  VL_EXPORT(exports, env, "rsubScalar", rsubScalar);
  VL_EXPORT(exports, env, "rdivScalar", rdivScalar);
  VL_EXPORT(exports, env, "rpowScalar", rpowScalar);
  VL_EXPORT(exports, env, "maximum", maximum);
  VL_EXPORT(exports, env, "minimum", minimum);
  VL_EXPORT(exports, env, "atan2", atan2);
  VL_EXPORT(exports, env, "equal", equal);
  VL_EXPORT(exports, env, "allclose", allclose);
  VL_EXPORT(exports, env, "where", where);
  VL_EXPORT(exports, env, "maskedFill", maskedFill);
  VL_EXPORT(exports, env, "maskedFill_", maskedFill_);
  VL_EXPORT(exports, env, "clamp", clamp);
  VL_EXPORT(exports, env, "clamp_", clamp_);
  VL_EXPORT(exports, env, "lerp", lerp);
  VL_EXPORT(exports, env, "addcmul", addcmul);
  VL_EXPORT(exports, env, "addcdiv", addcdiv);
}

}  // namespace vlalign
