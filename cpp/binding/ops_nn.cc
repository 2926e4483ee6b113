// Neural-network ops: products, convolutions, embedding, normalisation, activations, dropout,
// losses and scaled dot-product attention.
#include <torch/version.h>

#include <cmath>
#include <limits>

#include "binding.h"

namespace vlalign {
namespace {

Napi::Value matmul(const Info& info) {
  return guard(info, "matmul", [&] { return wrap(info.Env(), tensorAt(info, 0).matmul(tensorAt(info, 1))); }, {0, 1});
}

Napi::Value mm(const Info& info) {
  return guard(info, "mm", [&] { return wrap(info.Env(), tensorAt(info, 0).mm(tensorAt(info, 1))); }, {0, 1});
}

Napi::Value bmm(const Info& info) {
  return guard(info, "bmm", [&] { return wrap(info.Env(), tensorAt(info, 0).bmm(tensorAt(info, 1))); }, {0, 1});
}

// linear(x, weight, bias | 0) = x @ weight^T + bias
Napi::Value linear(const Info& info) {
  return guard(info, "linear", [&] {
    return wrap(info.Env(), at::linear(tensorAt(info, 0), tensorAt(info, 1), optionalTensorAt(info, 2)));
  }, {0, 1});
}

// addmm(input, a, b, beta, alpha) = beta * input + alpha * (a @ b)
Napi::Value addmm(const Info& info) {
  return guard(info, "addmm", [&] {
    return wrap(info.Env(), at::addmm(tensorAt(info, 0), tensorAt(info, 1), tensorAt(info, 2), scalarAt(info, 3),
                                      scalarAt(info, 4)));
  }, {0, 1, 2});
}

Napi::Value baddbmm(const Info& info) {
  return guard(info, "baddbmm", [&] {
    return wrap(info.Env(), at::baddbmm(tensorAt(info, 0), tensorAt(info, 1), tensorAt(info, 2), scalarAt(info, 3),
                                        scalarAt(info, 4)));
  }, {0, 1, 2});
}

// conv2d / conv3d (x, weight, bias | 0, stride[], padding[], dilation[], groups)
Napi::Value conv2d(const Info& info) {
  return guard(info, "conv2d", [&] {
    return wrap(info.Env(), at::conv2d(tensorAt(info, 0), tensorAt(info, 1), optionalTensorAt(info, 2), intsAt(info, 3),
                                       intsAt(info, 4), intsAt(info, 5), intAt(info, 6)));
  }, {0, 1});
}

Napi::Value conv3d(const Info& info) {
  return guard(info, "conv3d", [&] {
    return wrap(info.Env(), at::conv3d(tensorAt(info, 0), tensorAt(info, 1), optionalTensorAt(info, 2), intsAt(info, 3),
                                       intsAt(info, 4), intsAt(info, 5), intAt(info, 6)));
  }, {0, 1});
}

// embedding(weight, indices, paddingIdx): rows of weight; paddingIdx (-1: none) gets no gradient.
Napi::Value embedding(const Info& info) {
  return guard(info, "embedding", [&] {
    return wrap(info.Env(), at::embedding(tensorAt(info, 0), tensorAt(info, 1), intAt(info, 2)));
  }, {0, 1});
}

// layerNorm(x, normalizedShape[], weight | 0, bias | 0, eps)
Napi::Value layerNorm(const Info& info) {
  return guard(info, "layerNorm", [&] {
    return wrap(info.Env(), at::layer_norm(tensorAt(info, 0), intsAt(info, 1), optionalTensorAt(info, 2),
                                           optionalTensorAt(info, 3), numberAt(info, 4)));
  }, {0});
}

Napi::Value dropout(const Info& info) {
  return guard(info, "dropout", [&] {
    return wrap(info.Env(), at::dropout(tensorAt(info, 0), numberAt(info, 1), boolAt(info, 2)));
  });
}

// gelu(x, approximate: 'none' | 'tanh')
Napi::Value gelu(const Info& info) {
  return guard(info, "gelu", [&] { return wrap(info.Env(), at::gelu(tensorAt(info, 0), stringAt(info, 1))); });
}

Napi::Value softplus(const Info& info) {
  return guard(info, "softplus", [&] {
    return wrap(info.Env(), at::softplus(tensorAt(info, 0), scalarAt(info, 1), scalarAt(info, 2)));
  });
}

Napi::Value logsigmoid(const Info& info) {
  return guard(info, "logsigmoid", [&] { return wrap(info.Env(), at::log_sigmoid(tensorAt(info, 0))); });
}

// crossEntropy(logits, target, weight | 0, reduction (0 none, 1 mean, 2 sum), ignoreIndex, labelSmoothing)
Napi::Value crossEntropy(const Info& info) {
  return guard(info, "crossEntropy", [&] {
    return wrap(info.Env(), at::cross_entropy_loss(tensorAt(info, 0), tensorAt(info, 1), optionalTensorAt(info, 2),
                                                   intAt(info, 3), intAt(info, 4), numberAt(info, 5)));
  }, {0, 1});
}

Napi::Value nllLoss(const Info& info) {
  return guard(info, "nllLoss", [&] {
    return wrap(info.Env(), at::nll_loss_nd(tensorAt(info, 0), tensorAt(info, 1), optionalTensorAt(info, 2),
                                            intAt(info, 3), intAt(info, 4)));
  }, {0, 1});
}

Napi::Value mseLoss(const Info& info) {
  return guard(info, "mseLoss", [&] {
    return wrap(info.Env(), at::mse_loss(tensorAt(info, 0), tensorAt(info, 1), intAt(info, 2)));
  }, {0, 1});
}

// softmax(q k^T * scale + mask) v over the last two dims; a boolean mask marks positions to keep.
at::Tensor attentionMath(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         const c10::optional<at::Tensor>& mask, double dropoutP, bool causal,
                         c10::optional<double> scale) {
  const double s = scale.value_or(1.0 / std::sqrt(static_cast<double>(q.size(-1))));
  at::Tensor scores = at::matmul(q, k.transpose(-2, -1)).mul(s);
  const double negInf = -std::numeric_limits<double>::infinity();
  if (causal) {
    const int64_t L = q.size(-2), S = k.size(-2);
    at::Tensor keep = at::ones({L, S}, q.options().dtype(at::kBool)).tril(0);
    scores = scores.masked_fill(keep.logical_not(), negInf);
  }
  if (mask) {
    scores = mask->scalar_type() == at::kBool ? scores.masked_fill(mask->logical_not(), negInf) : scores.add(*mask);
  }
  at::Tensor probs = at::softmax(scores, -1);
  if (dropoutP > 0) probs = at::dropout(probs, dropoutP, true);
  return at::matmul(probs, v);
}

// scaledDotProductAttention(q, k, v, mask | 0, dropoutP, isCausal, scale | null)
Napi::Value scaledDotProductAttention(const Info& info) {
  return guard(info, "scaledDotProductAttention", [&] {
    const at::Tensor& q = tensorAt(info, 0);
    const at::Tensor& k = tensorAt(info, 1);
    const at::Tensor& v = tensorAt(info, 2);
    const auto mask = optionalTensorAt(info, 3);
    const double dropoutP = numberAt(info, 4);
    const bool causal = boolAt(info, 5);
    const c10::optional<double> scale =
        info[6].IsNumber() ? c10::optional<double>(numberAt(info, 6)) : c10::nullopt;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
    return wrap(info.Env(), at::scaled_dot_product_attention(q, k, v, mask, dropoutP, causal, scale));
#else
    return wrap(info.Env(), attentionMath(q, k, v, mask, dropoutP, causal, scale));
#endif
  }, {0, 1, 2, 3});
}

}  // namespace

void registerNnOps(Napi::Env env, Napi::Object exports) {
  VL_EXPORT(exports, env, "matmul", matmul);
  VL_EXPORT(exports, env, "mm", mm);
  VL_EXPORT(exports, env, "bmm", bmm);
  VL_EXPORT(exports, env, "linear", linear);
  VL_EXPORT(exports, env, "addmm", addmm);
  VL_EXPORT(exports, env, "baddbmm", baddbmm);
  VL_EXPORT(exports, env, "conv2d", conv2d);
  VL_EXPORT(exports, env, "conv3d", conv3d);
  VL_EXPORT(exports, env, "embedding", embedding);
  VL_EXPORT(exports, env, "layerNorm", layerNorm);
  VL_EXPORT(exports, env, "dropout", dropout);
  VL_EXPORT(exports, env, "gelu", gelu);
  VL_EXPORT(exports, env, "softplus", softplus);
  VL_EXPORT(exports, env, "logsigmoid", logsigmoid);
  VL_EXPORT(exports, env, "crossEntropy", crossEntropy);
  VL_EXPORT(exports, env, "nllLoss", nllLoss);
  VL_EXPORT(exports, env, "mseLoss", mseLoss);
  VL_EXPORT(exports, env, "scaledDotProductAttention", scaledDotProductAttention);
}

}  // namespace vlalign
