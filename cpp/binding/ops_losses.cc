// The loss engine's native half: fused linear + log-softmax passes (cpp/kernels/cpu), the
// autograd Function that exposes them per token, and the Function that attaches gradients a
// single-pass loss computed during its forward.
#include "../kernels/cpu/fused_linear_logprob.h"
#include "binding.h"

namespace vlalign {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
namespace K = kernels;

at::Tensor orUndefined(const c10::optional<at::Tensor>& t) { return t ? *t : at::Tensor(); }

// Function::apply takes an absent tensor as c10::nullopt (an undefined at::Tensor argument fails),
// and a tensor list argument is not seen as inputs at all, so every tensor is its own argument.
using OptionalTensor = c10::optional<at::Tensor>;

OptionalTensor definedOrNone(const at::Tensor& t) { return t.defined() ? OptionalTensor(t) : c10::nullopt; }

// Per-token [logp, entropy, meanLogit] whose backward recomputes each chunk's logits (8NHV FLOPs
// in all, memory O(chunk x V)); composes with any loss written over per-token log-probs.
struct LinearLogprobsFunction : public torch::autograd::Function<LinearLogprobsFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                               const OptionalTensor& bias, const at::Tensor& labels, double temperature,
                               int64_t chunkRows, double gradFilter) {
    const K::LinearLogprobStats s = K::linearLogprobStats(x, weight, bias, labels, temperature, chunkRows);
    ctx->saved_data["gradFilter"] = gradFilter;
    ctx->save_for_backward({x, weight, bias.value_or(at::Tensor()), labels});
    ctx->saved_data["temperature"] = temperature;
    ctx->saved_data["chunkRows"] = chunkRows;
    return {s.logp, s.entropy, s.meanLogit};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    auto [gradX, gradWeight, gradBias] = K::linearLogprobBackward(
        saved[0], saved[1], definedOrNone(saved[2]), saved[3], ctx->saved_data["temperature"].toDouble(),
        ctx->saved_data["chunkRows"].toInt(), grads[0], grads[1], grads[2], ctx->saved_data["gradFilter"].toDouble());
    return {gradX, gradWeight, gradBias, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// A scalar whose gradients with respect to (x, weight, bias) were computed already, during a
// single fused pass; backward only scales them by the upstream gradient.
struct PrecomputedGradientsFunction : public torch::autograd::Function<PrecomputedGradientsFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& value, const at::Tensor& x,
                            const at::Tensor& weight, const OptionalTensor& bias, const at::Tensor& gradX,
                            const at::Tensor& gradWeight, const OptionalTensor& gradBias) {
    ctx->saved_data["gradX"] = gradX;
    ctx->saved_data["gradWeight"] = gradWeight;
    ctx->saved_data["gradBias"] = gradBias.value_or(at::Tensor());
    return value.detach().clone();
  }

  static variable_list backward(AutogradContext* ctx, variable_list upstream) {
    const at::Tensor& g = upstream[0];
    const bool unit = g.numel() == 1 && g.item<double>() == 1.0;
    // Taken out of the context so the graph holds no second reference: AccumulateGrad can then
    // adopt dW as the weight's .grad instead of copying it.
    auto scaled = [&](const char* name) {
      const at::Tensor grad = ctx->saved_data[name].toTensor();
      ctx->saved_data.erase(name);
      return !grad.defined() || unit ? grad : grad * g;
    };
    const at::Tensor none;
    return {none, scaled("gradX"), scaled("gradWeight"), scaled("gradBias"), none, none, none};
  }
};

Napi::Value statsResult(Napi::Env env, const K::LinearLogprobStats& s) {
  return wrapAll(env, {s.logp, s.entropy, s.lse, s.meanLogit});
}

// linearLogprobStats(x, weight, bias | 0, labels, temperature, chunkRows) -> [logp, entropy, lse, meanLogit]
Napi::Value linearLogprobStats(const Info& info) {
  return guard(info, "linearLogprobStats", [&] {
    const auto stats = K::linearLogprobStats(tensorAt(info, 0), tensorAt(info, 1), optionalTensorAt(info, 2),
                                             tensorAt(info, 3), numberAt(info, 4), intAt(info, 5));
    return statsResult(info.Env(), stats);
  }, {0, 1, 2, 3});
}

// linearLogprobStatsChunk(x, weight, bias | 0, labels, temperature, scratch): scratch keeps the
// chunk's logits for the matching linearLogprobGradChunk call.
Napi::Value linearLogprobStatsChunk(const Info& info) {
  return guard(info, "linearLogprobStatsChunk", [&] {
    const at::Tensor& x = tensorAt(info, 0);
    const at::Tensor& weight = tensorAt(info, 1);
    const auto bias = optionalTensorAt(info, 2);
    const at::Tensor& labels = tensorAt(info, 3);
    const double temperature = numberAt(info, 4);
    K::checkLinearLogprobInputs(x, weight, bias, labels, temperature);
    return statsResult(info.Env(), K::linearLogprobStatsChunk(x, weight, bias, labels, temperature, tensorAt(info, 5)));
  }, {0, 1, 2, 3});
}

// linearLogprobGradChunk(scratch, x, weight, labels, temperature, lse, entropy, gLogp | 0,
//   gEntropy | 0, gMeanLogit | 0, gradWeight, gradBias | 0, gradFilter) -> gradX for the chunk
Napi::Value linearLogprobGradChunk(const Info& info) {
  return guard(info, "linearLogprobGradChunk", [&] {
    K::LinearLogprobStats stats;
    stats.lse = tensorAt(info, 5);
    stats.entropy = tensorAt(info, 6);
    at::Tensor gradBias = orUndefined(optionalTensorAt(info, 11));
    return wrap(info.Env(),
                K::linearLogprobGradChunk(
                    tensorAt(info, 0), tensorAt(info, 1), tensorAt(info, 2), tensorAt(info, 3), numberAt(info, 4),
                    stats, orUndefined(optionalTensorAt(info, 7)), orUndefined(optionalTensorAt(info, 8)),
                    orUndefined(optionalTensorAt(info, 9)), tensorAt(info, 10), gradBias, numberAt(info, 12)));
  }, {1, 2, 3});
}

// linearLogprobs(x, weight, bias | 0, labels, temperature, chunkRows, gradFilter)
//   -> [logp, entropy, meanLogit], differentiable
Napi::Value linearLogprobs(const Info& info) {
  return guard(info, "linearLogprobs", [&] {
    const auto outputs = LinearLogprobsFunction::apply(tensorAt(info, 0), tensorAt(info, 1), optionalTensorAt(info, 2),
                                                       tensorAt(info, 3), numberAt(info, 4), intAt(info, 5),
                                                       numberAt(info, 6));
    return wrapAll(info.Env(), outputs);
  }, {0, 1, 2, 3});
}

// attachGradients(value, x, weight, bias | 0, gradX, gradWeight, gradBias | 0) -> scalar loss
Napi::Value attachGradients(const Info& info) {
  return guard(info, "attachGradients", [&] {
    const OptionalTensor bias = optionalTensorAt(info, 3);
    const OptionalTensor gradBias = optionalTensorAt(info, 6);
    TORCH_CHECK(bias.has_value() == gradBias.has_value(),
                "attachGradients: bias and its gradient must be given together");
    return wrap(info.Env(), PrecomputedGradientsFunction::apply(tensorAt(info, 0), tensorAt(info, 1), tensorAt(info, 2),
                                                                bias, tensorAt(info, 4), tensorAt(info, 5), gradBias));
  });
}

Napi::Value rowKernelIsa(const Info& info) { return Napi::String::New(info.Env(), K::rowKernelIsa()); }

}  // namespace

void registerLossOps(Napi::Env env, Napi::Object exports) {
  VL_EXPORT(exports, env, "linearLogprobStats", linearLogprobStats);
  VL_EXPORT(exports, env, "linearLogprobStatsChunk", linearLogprobStatsChunk);
  VL_EXPORT(exports, env, "linearLogprobGradChunk", linearLogprobGradChunk);
  VL_EXPORT(exports, env, "linearLogprobs", linearLogprobs);
  VL_EXPORT(exports, env, "attachGradients", attachGradients);
  VL_EXPORT(exports, env, "rowKernelIsa", rowKernelIsa);
}

}  // namespace vlalign
