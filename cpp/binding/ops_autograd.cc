// Autograd: requires_grad, backward, .grad, retain_grad, grad mode and torch.autograd.grad.
#include <torch/csrc/autograd/autograd.h>

#include "binding.h"

namespace vlalign {
namespace {

Napi::Value requiresGrad(const Info& info) {
  return Napi::Boolean::New(info.Env(), tensorAt(info, 0).requires_grad());
}

Napi::Value requiresGrad_(const Info& info) {
  return guard(info, "requiresGrad_", [&] {
    tensorAt(info, 0).requires_grad_(boolAt(info, 1));
    return info.Env().Undefined();
  });
}

Napi::Value isLeaf(const Info& info) { return Napi::Boolean::New(info.Env(), tensorAt(info, 0).is_leaf()); }

Napi::Value gradFn(const Info& info) {
  const auto& fn = tensorAt(info, 0).grad_fn();
  if (!fn) return info.Env().Null();
  return Napi::String::New(info.Env(), fn->name());
}

// backward(t, grad | 0, retainGraph, createGraph)
Napi::Value backward(const Info& info) {
  return guard(info, "backward", [&] {
    const at::Tensor& t = tensorAt(info, 0);
    const auto grad = optionalTensorAt(info, 1);
    t.backward(grad.value_or(at::Tensor()), boolAt(info, 2), boolAt(info, 3));
    return info.Env().Undefined();
  }, {0, 1});
}

Napi::Value grad(const Info& info) {
  return guard(info, "grad", [&] { return wrapOptional(info.Env(), tensorAt(info, 0).grad()); });
}

// setGrad(t, g | 0): 0 clears the gradient (t.grad = None).
Napi::Value setGrad(const Info& info) {
  return guard(info, "setGrad", [&] {
    at::Tensor& t = tensorAt(info, 0);
    t.mutable_grad() = optionalTensorAt(info, 1).value_or(at::Tensor());
    return info.Env().Undefined();
  }, {0, 1});
}

Napi::Value retainGrad(const Info& info) {
  return guard(info, "retainGrad", [&] {
    tensorAt(info, 0).retain_grad();
    return info.Env().Undefined();
  });
}

Napi::Value isGradEnabled(const Info& info) { return Napi::Boolean::New(info.Env(), at::GradMode::is_enabled()); }

Napi::Value setGradEnabled(const Info& info) {
  at::GradMode::set_enabled(boolAt(info, 0));
  return info.Env().Undefined();
}

// autogradGrad(outputs[], inputs[], gradOutputs[] | null, retainGraph, createGraph, allowUnused)
// -> one id per input, 0 where an unused input has no gradient.
Napi::Value autogradGrad(const Info& info) {
  return guard(info, "autograd.grad", [&] {
    const std::vector<at::Tensor> outputs = tensorsAt(info, 0);
    const std::vector<at::Tensor> inputs = tensorsAt(info, 1);
    std::vector<at::Tensor> gradOutputs;
    if (info[2].IsArray()) gradOutputs = tensorsAt(info, 2);
    const bool createGraph = boolAt(info, 4);
    const std::vector<at::Tensor> grads = torch::autograd::grad(outputs, inputs, gradOutputs, boolAt(info, 3),
                                                                createGraph, boolAt(info, 5));
    Napi::Array out = Napi::Array::New(info.Env(), grads.size());
    for (size_t k = 0; k < grads.size(); ++k) out.Set(static_cast<uint32_t>(k), wrapOptional(info.Env(), grads[k]));
    return out;
  }, {0, 1});
}

}  // namespace

void registerAutogradOps(Napi::Env env, Napi::Object exports) {
  VL_EXPORT(exports, env, "requiresGrad", requiresGrad);
  VL_EXPORT(exports, env, "requiresGrad_", requiresGrad_);
  VL_EXPORT(exports, env, "isLeaf", isLeaf);
  VL_EXPORT(exports, env, "gradFn", gradFn);
  VL_EXPORT(exports, env, "backward", backward);
  VL_EXPORT(exports, env, "grad", grad);
  VL_EXPORT(exports, env, "setGrad", setGrad);
  VL_EXPORT(exports, env, "retainGrad", retainGrad);
  VL_EXPORT(exports, env, "isGradEnabled", isGradEnabled);
  VL_EXPORT(exports, env, "setGradEnabled", setGradEnabled);
  VL_EXPORT(exports, env, "autogradGrad", autogradGrad);
}

}  // namespace vlalign
