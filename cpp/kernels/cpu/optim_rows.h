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

// One pass of torch.optim.AdamW (1.13, foreach or not) over n elements, with the roundings of
// ATen's vectorised kernels (checked element by element against Python PyTorch 1.13):
// p *= decay; m = fma(g, 1-b1, m*b1) (add_ with alpha); v = fma((1-b2)*g, g, v*b2) (addcmul_);
// p += ((-step)*m) / (sqrt(v)/bc2Sqrt + eps) (addcdiv_, true divisions).
// Every rounding must stay where ATen has it: no contraction of a multiply and a later add into an
// FMA (GCC would fuse the weight decay into the final update), only the explicit ones above.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

template <typename W>
inline void adamwStep(W& P, W G, W& M, W& Q, const AdamwScalars& s) {
  if (s.maximize) G = W::broadcast(0.0f) - G;
  P = P * W::broadcast(s.decay);
  const W scaledG = W::broadcast(s.oneMinusBeta2) * G;
  if constexpr (W::size == 1) {
    M = {std::fma(G.v, s.oneMinusBeta1, M.v * s.beta1)};
    Q = {std::fma(scaledG.v, G.v, Q.v * s.beta2)};
  } else {
    M = W::fma(G, W::broadcast(s.oneMinusBeta1), M * W::broadcast(s.beta1));
    Q = W::fma(scaledG, G, Q * W::broadcast(s.beta2));
  }
  const W denom = Q.sqrt() / W::broadcast(s.bc2Sqrt) + W::broadcast(s.eps);
  P = P + W::broadcast(s.negStepSize) * M / denom;
}

template <typename V>
void adamwRun(float* p, const float* g, float* m, float* v, int64_t n, const AdamwScalars& s) {
  int64_t i = 0;
  for (; i + V::size <= n; i += V::size) {
    V P = V::load(p + i), M = V::load(m + i), Q = V::load(v + i);
    adamwStep(P, V::load(g + i), M, Q, s);
    P.store(p + i);
    M.store(m + i);
    Q.store(v + i);
  }
  using S = ScalarVec<float>;
  for (; i < n; ++i) {
    S P = S::load(p + i), M = S::load(m + i), Q = S::load(v + i);
    adamwStep(P, S::load(g + i), M, Q, s);
    P.store(p + i);
    M.store(m + i);
    Q.store(v + i);
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

struct OptimKernels {
  const char* isa;
  void (*adamw)(float* p, const float* g, float* m, float* v, int64_t n, const AdamwScalars& s);
};

OptimKernels optimKernelsDefault();
OptimKernels optimKernelsAvx2();
OptimKernels optimKernelsAvx512();
const OptimKernels& optimKernels();

}  // namespace vlalign::kernels
