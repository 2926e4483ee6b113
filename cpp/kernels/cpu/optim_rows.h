// The optimizer update of one contiguous float32 run, written once over a SIMD type (vec.h) and
// compiled per instruction set like the loss row kernels (row_kernels_<isa>.cc).
#pragma once

#include <cmath>
#include <cstdint>

#include "vec.h"

namespace vlalign::kernels {

// AdamW's scalars, rounded to float as PyTorch rounds Python scalars for float32 tensors.
struct AdamwScalars {
  float decay;          // 1 - lr * weight_decay
  float beta1, oneMinusBeta1, beta2, oneMinusBeta2;
  float bc2Sqrt;        // sqrt(1 - beta2^step)
  float eps;
  float negStepSize;    // -lr / (1 - beta1^step)
  bool maximize;
};

// One pass of torch.optim.AdamW (1.13, foreach or not) over n elements, with its operation order:
// p *= decay; m = m*b1 + (1-b1)*g (one fused multiply-add, as ATen's vectorised add with alpha);
// v = v*b2 + ((1-b2)*g)*g; p += ((-step)*m) / (sqrt(v)/bc2Sqrt + eps).
template <typename V>
void adamwRun(float* p, const float* g, float* m, float* v, int64_t n, const AdamwScalars& s) {
  auto step = [&](auto P, auto G, auto M, auto Q, auto store) {
    using W = decltype(P);
    if (s.maximize) G = W::broadcast(0.0f) - G;
    P = P * W::broadcast(s.decay);
    if constexpr (W::size == 1) {
      M = {std::fma(G.v, s.oneMinusBeta1, M.v * s.beta1)};
    } else {
      M = W::fma(G, W::broadcast(s.oneMinusBeta1), M * W::broadcast(s.beta1));
    }
    Q = Q * W::broadcast(s.beta2) + W::broadcast(s.oneMinusBeta2) * G * G;
    const W denom = Q.sqrt() / W::broadcast(s.bc2Sqrt) + W::broadcast(s.eps);
    P = P + W::broadcast(s.negStepSize) * M / denom;
    store(P, M, Q);
  };
  int64_t i = 0;
  for (; i + V::size <= n; i += V::size) {
    step(V::load(p + i), V::load(g + i), V::load(m + i), V::load(v + i), [&](V P, V M, V Q) {
      P.store(p + i);
      M.store(m + i);
      Q.store(v + i);
    });
  }
  using S = ScalarVec<float>;
  for (; i < n; ++i) {
    step(S::load(p + i), S::load(g + i), S::load(m + i), S::load(v + i), [&](S P, S M, S Q) {
      P.store(p + i);
      M.store(m + i);
      Q.store(v + i);
    });
  }
}

struct OptimKernels {
  const char* isa;
  void (*adamw)(float* p, const float* g, float* m, float* v, int64_t n, const AdamwScalars& s);
};

OptimKernels optimKernelsDefault();
OptimKernels optimKernelsAvx2();
OptimKernels optimKernelsAvx512();
const OptimKernels& optimKernels();

}  // namespace vlalign::kernels
