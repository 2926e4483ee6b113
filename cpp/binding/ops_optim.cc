// Fused optimizer steps over lists of parameters (lib/optim drives them).
#include "../kernels/cpu/adamw.h"
#include "binding.h"

namespace vlalign {
namespace {

// adamwStep_(params[], grads[] (0 = none), expAvg[], expAvgSq[], lr, beta1, beta2, eps,
// weightDecay, step, maximize)
Napi::Value adamwStep_(const Info& info) {
  return guard(info, "adamwStep_", [&] {
    std::vector<at::Tensor> params = tensorsAt(info, 0);
    if (!info[1].IsArray()) throw Napi::TypeError::New(info.Env(), "argument 1: expected an array of tensors or 0");
    Napi::Array gradIds = info[1].As<Napi::Array>();
    std::vector<at::Tensor> grads;
    for (uint32_t k = 0; k < gradIds.Length(); ++k) {
      uint32_t id = 0;
      napi_get_value_uint32(info.Env(), gradIds.Get(k), &id);
      const at::Tensor* g = id == 0 ? nullptr : tensors().find(id);
      TORCH_CHECK(id == 0 || g != nullptr, "adamwStep_: grads[", k, "] was disposed");
      grads.push_back(g == nullptr ? at::Tensor() : *g);
    }
    std::vector<at::Tensor> expAvg = tensorsAt(info, 2);
    std::vector<at::Tensor> expAvgSq = tensorsAt(info, 3);
    const kernels::AdamwOptions options{numberAt(info, 4), numberAt(info, 5), numberAt(info, 6), numberAt(info, 7),
                                        numberAt(info, 8), intAt(info, 9), boolAt(info, 10)};
    // In place on leaves that may require grad: the update is not part of any graph.
    at::NoGradGuard noGrad;
    kernels::adamwStep(params, grads, expAvg, expAvgSq, options);
    return info.Env().Undefined();
  });
}

}  // namespace

void registerOptimOps(Napi::Env env, Napi::Object exports) { VL_EXPORT(exports, env, "adamwStep_", adamwStep_); }

}  // namespace vlalign
