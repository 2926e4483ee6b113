// 4-bit quantisation (bitsandbytes NF4 / FP4, optional double quantisation of the absmax) and the
// QLoRA linear layer over it, with its autograd Function (gradients for x and bias; W is frozen).
#include "../kernels/cpu/quant4bit.h"
#include "binding.h"

namespace vlalign {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OptionalTensor = c10::optional<at::Tensor>;
namespace K = kernels;

constexpr int64_t kNestedBlocksize = 256;  // bitsandbytes quantises the absmax in blocks of 256

// The float32 absmax of a quant state: as stored, or decoded from double quantisation
// (code[q] * nestedAbsmax + offset, in float32 as bitsandbytes' dequantize_4bit does).
at::Tensor restoreAbsmax(const at::Tensor& absmax, const OptionalTensor& nestedAbsmax, const OptionalTensor& nestedCode,
                         const OptionalTensor& offset) {
  if (!nestedAbsmax) {
    TORCH_CHECK(absmax.scalar_type() == at::kFloat, "absmax must be float32 without double quantisation, got ",
                absmax.scalar_type());
    return absmax.contiguous();
  }
  TORCH_CHECK(nestedCode && offset, "double quantisation needs nestedAbsmax, nestedCode and offset together");
  TORCH_CHECK(offset->numel() == 1, "offset must be a scalar, got shape ", shapeString(offset->sizes()));
  return K::dequantizeBlockwise8(absmax, *nestedAbsmax, *nestedCode, kNestedBlocksize).add_(offset->to(at::kFloat));
}

// quantize4bit(weight, quantType, blocksize, doubleQuant) -> [packed, absmax, nestedAbsmax | 0,
// nestedCode | 0, offset | 0, code]
Napi::Value quantize4bit(const Info& info) {
  return guard(info, "quantize4bit", [&] {
    const at::Tensor& weight = tensorAt(info, 0);
    TORCH_CHECK(weight.device().is_cpu(), "quantize4bit: weight must be on the CPU");
    const at::Tensor code = K::code4bit(stringAt(info, 1));
    K::Blockwise q = K::quantize4bit(weight, code, intAt(info, 2));
    std::vector<at::Tensor> parts = {q.codes, q.absmax, at::Tensor(), at::Tensor(), at::Tensor(), code};
    if (boolAt(info, 3)) {
      // offset = absmax.mean() (libtorch's own float32 mean, as bitsandbytes takes it).
      const at::Tensor offset = q.absmax.mean();
      const at::Tensor nestedCode = K::dynamicMap8bit();
      K::Blockwise nested = K::quantizeBlockwise8(q.absmax - offset, nestedCode, kNestedBlocksize);
      parts = {q.codes, nested.codes, nested.absmax, nestedCode, offset, code};
    }
    Napi::Array out = Napi::Array::New(info.Env(), parts.size());
    for (uint32_t k = 0; k < parts.size(); ++k) out.Set(k, wrapOptional(info.Env(), parts[k]));
    return Napi::Value(out);
  }, {0});
}

// dequantize4bit(packed, absmax, nestedAbsmax | 0, nestedCode | 0, offset | 0, code, blocksize,
// shape, dtype) -> the weight
Napi::Value dequantize4bit(const Info& info) {
  return guard(info, "dequantize4bit", [&] {
    const at::Tensor absmax = restoreAbsmax(tensorAt(info, 1), optionalTensorAt(info, 2), optionalTensorAt(info, 3),
                                            optionalTensorAt(info, 4));
    return wrap(info.Env(), K::dequantize4bit(tensorAt(info, 0), absmax, tensorAt(info, 5), intAt(info, 6),
                                              intsAt(info, 7), dtypeAt(info, 8)));
  }, {0, 1});
}

// dequantizeBlockwise8(codes, absmax, code, blocksize) -> float32 (the double-quantised absmax)
Napi::Value dequantizeBlockwise8(const Info& info) {
  return guard(info, "dequantizeBlockwise8", [&] {
    return wrap(info.Env(),
                K::dequantizeBlockwise8(tensorAt(info, 0), tensorAt(info, 1), tensorAt(info, 2), intAt(info, 3)));
  }, {0, 1});
}

// y = x W^T + b over a frozen 4-bit W; backward gives dx (tiled like the forward) and db.
struct Linear4bitFunction : public torch::autograd::Function<Linear4bitFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const OptionalTensor& bias,
                            const at::Tensor& packed, const at::Tensor& absmax, const at::Tensor& code,
                            std::vector<int64_t> dims) {
    const K::Weight4bit w{packed, absmax, code, dims[0], dims[1], dims[2]};
    ctx->save_for_backward({packed, absmax, code});
    ctx->saved_data["dims"] = dims;
    ctx->saved_data["hasBias"] = bias.has_value();
    const at::Tensor x2 = x.reshape({-1, w.inFeatures}).contiguous();
    std::vector<int64_t> outShape = x.sizes().vec();
    outShape.back() = w.outFeatures;
    return K::linear4bitForward(x2, w, bias, dims[3]).view(outShape);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const std::vector<int64_t> dims = ctx->saved_data["dims"].toIntVector();
    const K::Weight4bit w{saved[0], saved[1], saved[2], dims[0], dims[1], dims[2]};
    const at::Tensor dy = grads[0].reshape({-1, w.outFeatures}).contiguous();
    std::vector<int64_t> xShape = grads[0].sizes().vec();
    xShape.back() = w.inFeatures;
    const at::Tensor dx =
        ctx->needs_input_grad(0) ? K::linear4bitBackwardInput(dy, w, dims[3]).view(xShape) : at::Tensor();
    const at::Tensor db = ctx->saved_data["hasBias"].toBool() && ctx->needs_input_grad(1) ? dy.sum(0) : at::Tensor();
    return {dx, db, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// linear4bit(x, bias | 0, packed, absmax, nestedAbsmax | 0, nestedCode | 0, offset | 0, code,
// blocksize, outFeatures, inFeatures, tileBytes) -> y
Napi::Value linear4bit(const Info& info) {
  return guard(info, "linear4bit", [&] {
    const at::Tensor& x = tensorAt(info, 0);
    const OptionalTensor bias = optionalTensorAt(info, 1);
    const at::Tensor absmax = restoreAbsmax(tensorAt(info, 3), optionalTensorAt(info, 4), optionalTensorAt(info, 5),
                                            optionalTensorAt(info, 6));
    const std::vector<int64_t> dims = {intAt(info, 8), intAt(info, 9), intAt(info, 10), intAt(info, 11)};
    const K::Weight4bit w{tensorAt(info, 2), absmax,  tensorAt(info, 7).to(at::kFloat).contiguous(),
                          dims[0],           dims[1], dims[2]};
    K::checkWeight4bit(w);
    TORCH_CHECK(x.device().is_cpu(), "linear4bit: x must be on the CPU");
    TORCH_CHECK(x.dim() >= 1 && x.size(-1) == w.inFeatures, "linear4bit: x must end in ", w.inFeatures,
                " features, got shape ", shapeString(x.sizes()));
    if (bias) {
      TORCH_CHECK(bias->dim() == 1 && bias->size(0) == w.outFeatures && bias->scalar_type() == x.scalar_type(),
                  "linear4bit: bias must be [", w.outFeatures, "] of x's dtype ", x.scalar_type(), ", got ",
                  shapeString(bias->sizes()), " ", bias->scalar_type());
    }
    return wrap(info.Env(), Linear4bitFunction::apply(x, bias, w.packed, w.absmax, w.code, dims));
  }, {0, 1});
}

}  // namespace

void registerQuantOps(Napi::Env env, Napi::Object exports) {
  VL_EXPORT(exports, env, "quantize4bit", quantize4bit);
  VL_EXPORT(exports, env, "dequantize4bit", dequantize4bit);
  VL_EXPORT(exports, env, "dequantizeBlockwise8", dequantizeBlockwise8);
  VL_EXPORT(exports, env, "linear4bit", linear4bit);
}

}  // namespace vlalign
