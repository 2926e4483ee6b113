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
    std::vector<at::Tensor> grads = tensorsAt(info, 1, /*zeroIsNone=*/true);
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
