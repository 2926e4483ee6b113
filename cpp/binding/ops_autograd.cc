// Autograd: requires_grad, backward, .grad, retain_grad, grad mode, torch.autograd.grad, the
// autograd node whose backward is a JS function (gradient checkpointing) and the CPU RNG state.
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>

#include <type_traits>
#include <utility>

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

// How the graph owns its nodes, as Edge::function says: libtorch 1.x (and the 2.x releases before
// the change) holds them in std::shared_ptr, deleted through torch::autograd::deleteNode so that
// tearing down a deep graph does not recurse; later 2.x (2.13, 2.14) hold them in c10::intrusive_ptr,
// whose release does the same. The type, not a version number, picks the path, and deleteNode is
// found by argument-dependent lookup, so it need only exist where the shared_ptr path is compiled.
using NodePtr = decltype(torch::autograd::Edge::function);

template <typename NodeT, typename... Args>
NodePtr makeNode(Args&&... args) {
  if constexpr (std::is_same_v<NodePtr, std::shared_ptr<torch::autograd::Node>>) {
    return std::shared_ptr<NodeT>(new NodeT(std::forward<Args>(args)...), [](NodeT* node) { deleteNode(node); });
  } else {
    return c10::make_intrusive<NodeT>(std::forward<Args>(args)...);
  }
}

// A graph node whose backward calls a JS function synchronously: on CPU the engine runs a node on
// the thread that called backward(), which is the JS thread, inside that N-API call. The callback
// gets one id per output gradient (0 for none) and one per saved tensor, and returns one fresh id
// per input (0 for none), which this node takes over. The node owns what it saved, so the tensors
// live exactly as long as the graph. A JS exception propagates through the engine as the
// Napi::Error it is, so backward() rethrows the user's own error.
struct JsBackwardNode : public torch::autograd::Node {
  JsBackwardNode(napi_env env, napi_ref callback, std::vector<at::Tensor> saved)
      : env_(env), callback_(callback), saved_(std::move(saved)) {}
  JsBackwardNode(const JsBackwardNode&) = delete;
  JsBackwardNode& operator=(const JsBackwardNode&) = delete;
  // The last owner may be an engine worker thread; the reference is then released later on JS's.
  ~JsBackwardNode() override { releaseReferenceOnJsThread(env_, callback_); }

  std::string name() const override { return "JsBackward"; }

  // The engine calls this after a backward without retain_graph.
  void release_variables() override {
    saved_.clear();
    released_ = true;
  }

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    TORCH_CHECK(onJsThread(),
                "the backward of a JS-defined function (checkpoint / functionWithBackward) ran on a thread other than "
                "the JS thread, as autograd does for CUDA tensors; JS callbacks run only for CPU graphs");
    TORCH_CHECK(!released_, "trying to backward through a checkpoint / functionWithBackward a second time; its saved "
                "tensors were freed after the first backward (pass retainGraph: true to the first call)");
    Napi::Env env(env_);
    Napi::HandleScope scope(env);
    Napi::Array gradIds = Napi::Array::New(env, grads.size());
    for (size_t k = 0; k < grads.size(); ++k) gradIds.Set(static_cast<uint32_t>(k), wrapOptional(env, grads[k]));
    napi_value fn = nullptr;
    TORCH_CHECK(napi_get_reference_value(env_, callback_, &fn) == napi_ok && fn != nullptr,
                "JsBackward: the backward callback is gone");
    const Napi::Value result = Napi::Function(env, fn).Call({gradIds, wrapAll(env, saved_)});

    const size_t expected = num_outputs();
    TORCH_CHECK(result.IsArray(), "the JS backward must return an array of input gradients");
    Napi::Array ids = result.As<Napi::Array>();
    torch::autograd::variable_list inputGrads(expected);
    std::vector<uint32_t> owned;
    for (uint32_t k = 0; k < ids.Length(); ++k) {
      uint32_t id = 0;
      if (napi_get_value_uint32(env_, ids.Get(k), &id) == napi_ok && id != 0) owned.push_back(id);
      const at::Tensor* t = id == 0 ? nullptr : tensors().find(id);
      if (t != nullptr && k < expected) inputGrads[k] = *t;
    }
    for (uint32_t id : owned) tensors().release(id);
    TORCH_CHECK(ids.Length() == expected, "the JS backward returned ", ids.Length(), " gradients for ", expected,
                " inputs");
    return inputGrads;
  }

 private:
  napi_env env_;
  napi_ref callback_;
  std::vector<at::Tensor> saved_;
  bool released_ = false;
};

// functionWithBackward(inputs[], outputs[], saved[], backward, always) -> outputs sharing the given
// outputs' data whose grad_fn calls backward(gradIds, savedIds); the node keeps detached aliases of
// `saved`. Plain detached aliases when grad mode is off, or when no input requires grad unless
// `always` (a checkpointed block may reach parameters that are no input of it).
Napi::Value functionWithBackward(const Info& info) {
  return guard(info, "functionWithBackward", [&] {
    const std::vector<at::Tensor> inputs = tensorsAt(info, 0);
    std::vector<at::Tensor> outputs = tensorsAt(info, 1);
    std::vector<at::Tensor> saved = tensorsAt(info, 2);
    if (!info[3].IsFunction()) argumentTypeError(info, 3, "a function");
    const bool always = boolAt(info, 4);
    for (at::Tensor& out : outputs) out = out.detach();
    if (!at::GradMode::is_enabled() || !(always || torch::autograd::any_variable_requires_grad(inputs))) {
      return wrapAll(info.Env(), outputs);
    }
    for (at::Tensor& t : saved) t = t.detach();
    for (const at::Tensor& out : outputs) {
      TORCH_CHECK(out.is_floating_point() || out.is_complex(), "functionWithBackward: an output of dtype ",
                  out.scalar_type(), " cannot carry a gradient; return only floating-point outputs");
    }
    napi_ref callback = nullptr;
    NAPI_THROW_IF_FAILED(info.Env(), napi_create_reference(info.Env(), info[3], 1, &callback), Napi::Value());
    const NodePtr node = makeNode<JsBackwardNode>(napi_env(info.Env()), callback, std::move(saved));
    node->set_next_edges(torch::autograd::collect_next_edges(inputs));
    for (at::Tensor& out : outputs) torch::autograd::create_gradient_edge(out, node);
    return wrapAll(info.Env(), outputs);
  }, {0, 1});
}

// backwardMany(tensors[], grads[] (0 = none), retainGraph, createGraph): torch.autograd.backward.
Napi::Value backwardMany(const Info& info) {
  return guard(info, "backward", [&] {
    const std::vector<at::Tensor> roots = tensorsAt(info, 0);
    const std::vector<at::Tensor> grads = tensorsAt(info, 1, /*zeroIsNone=*/true);
    torch::autograd::backward(roots, grads, boolAt(info, 2), boolAt(info, 3));
    return info.Env().Undefined();
  }, {0, 1});
}

// The default CPU generator's state (a uint8 tensor), so a recomputation can replay dropout masks.
Napi::Value getRngState(const Info& info) {
  return guard(info, "getRngState", [&] {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    return wrap(info.Env(), gen.get_state());
  });
}

Napi::Value setRngState(const Info& info) {
  return guard(info, "setRngState", [&] {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(tensorAt(info, 0));
    return info.Env().Undefined();
  }, {0});
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
  VL_EXPORT(exports, env, "functionWithBackward", functionWithBackward);
  VL_EXPORT(exports, env, "backwardMany", backwardMany);
  VL_EXPORT(exports, env, "getRngState", getRngState);
  VL_EXPORT(exports, env, "setRngState", setRngState);
}

}  // namespace vlalign
