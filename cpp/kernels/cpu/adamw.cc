// The AdamW front: argument checks, scalar rounding, and the chunked parallel loop. bfloat16
// parameters (and gradients) go through a float32 buffer per chunk and are rounded back to
// nearest even, so state stays float32 while the parameter keeps its dtype.
#include "adamw.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "optim_rows.h"

namespace vlalign::kernels {

namespace {

constexpr int64_t kGrain = 1 << 15;  // elements per task: enough to hide the fork cost
constexpr int64_t kBuffer = 1024;    // bf16 elements widened at a time (stays in L1)

void checkParam(size_t k, const at::Tensor& p, const at::Tensor& g, const at::Tensor& m, const at::Tensor& v) {
  const std::string at = "[" + std::to_string(k) + "]";
  TORCH_CHECK(p.device().is_cpu(), "adamwStep: params", at, " must be on the CPU");
  TORCH_CHECK(p.scalar_type() == at::kFloat || p.scalar_type() == at::kBFloat16,
              "adamwStep: params", at, " must be float32 or bfloat16, got ", p.scalar_type());
  TORCH_CHECK(g.scalar_type() == p.scalar_type(), "adamwStep: grads", at, " must have the dtype of params", at, " (",
              p.scalar_type(), "), got ", g.scalar_type());
  TORCH_CHECK(m.scalar_type() == at::kFloat && v.scalar_type() == at::kFloat, "adamwStep: expAvg", at,
              " and expAvgSq", at, " must be float32");
  TORCH_CHECK(g.sizes() == p.sizes() && m.sizes() == p.sizes() && v.sizes() == p.sizes(), "adamwStep: params", at, " ",
              p.sizes(), ", grads", at, " ", g.sizes(), ", expAvg", at, " ", m.sizes(), " and expAvgSq", at, " ",
              v.sizes(), " must have one shape");
  TORCH_CHECK(p.is_contiguous() && m.is_contiguous() && v.is_contiguous(), "adamwStep: params", at,
              " and its state must be contiguous (they are updated in place)");
}

void updateBf16(const OptimKernels& kernels, c10::BFloat16* p, const c10::BFloat16* g, float* m, float* v, int64_t n,
                const AdamwScalars& s) {
  float pf[kBuffer], gf[kBuffer];
  for (int64_t i0 = 0; i0 < n; i0 += kBuffer) {
    const int64_t len = std::min(kBuffer, n - i0);
    for (int64_t i = 0; i < len; ++i) {
      pf[i] = static_cast<float>(p[i0 + i]);
      gf[i] = static_cast<float>(g[i0 + i]);
    }
    kernels.adamw(pf, gf, m + i0, v + i0, len, s);
    for (int64_t i = 0; i < len; ++i) p[i0 + i] = c10::BFloat16(pf[i]);
  }
}

}  // namespace

void adamwStep(std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads, std::vector<at::Tensor>& expAvg,
               std::vector<at::Tensor>& expAvgSq, const AdamwOptions& o) {
  TORCH_CHECK(grads.size() == params.size() && expAvg.size() == params.size() && expAvgSq.size() == params.size(),
              "adamwStep: ", params.size(), " params need as many grads, expAvg and expAvgSq, got ", grads.size(), ", ",
              expAvg.size(), " and ", expAvgSq.size());
  TORCH_CHECK(o.step >= 1, "adamwStep: step must be >= 1, got ", o.step);
  // Python computes these in double; the kernels see them rounded to float, as ATen's do.
  AdamwScalars s;
  s.decay = static_cast<float>(1.0 - o.lr * o.weightDecay);
  s.beta1 = static_cast<float>(o.beta1);
  s.oneMinusBeta1 = static_cast<float>(1.0 - o.beta1);
  s.beta2 = static_cast<float>(o.beta2);
  s.oneMinusBeta2 = static_cast<float>(1.0 - o.beta2);
  s.bc2Sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(o.beta2, static_cast<double>(o.step))));
  s.eps = static_cast<float>(o.eps);
  s.negStepSize = static_cast<float>(-(o.lr / (1.0 - std::pow(o.beta1, static_cast<double>(o.step)))));
  s.maximize = o.maximize;
  const OptimKernels& kernels = optimKernels();
  for (size_t k = 0; k < params.size(); ++k) {
    if (!grads[k].defined()) continue;
    checkParam(k, params[k], grads[k], expAvg[k], expAvgSq[k]);
    const at::Tensor g = grads[k].contiguous();
    float* m = expAvg[k].data_ptr<float>();
    float* v = expAvgSq[k].data_ptr<float>();
    const int64_t n = params[k].numel();
    if (params[k].scalar_type() == at::kFloat) {
      float* p = params[k].data_ptr<float>();
      const float* gp = g.data_ptr<float>();
      at::parallel_for(0, n, kGrain,
                       [&](int64_t i0, int64_t i1) { kernels.adamw(p + i0, gp + i0, m + i0, v + i0, i1 - i0, s); });
    } else {
      c10::BFloat16* p = params[k].data_ptr<c10::BFloat16>();
      const c10::BFloat16* gp = g.data_ptr<c10::BFloat16>();
      at::parallel_for(0, n, kGrain, [&](int64_t i0, int64_t i1) {
        updateBf16(kernels, p + i0, gp + i0, m + i0, v + i0, i1 - i0, s);
      });
    }
  }
}

}  // namespace vlalign::kernels
