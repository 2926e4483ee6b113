// Row kernels without SIMD: CPUs lacking AVX2, and the reference the vector versions must match.
#include "linear_logprob_rows.h"
#include "optim_rows.h"
#include "quant4bit_rows.h"

namespace vlalign::kernels {

FloatRowKernels rowKernelsDefault() {
  using K = LinearLogprobRows<ScalarVec<float>>;
  return {"default", &K::stats, &K::grad};
}

OptimKernels optimKernelsDefault() { return {"default", &adamwRun<ScalarVec<float>>}; }

Quant4bitKernels quant4bitKernelsDefault() {
  using K = Dequant4bitRows<ScalarVec<float>>;
  return {"default", &K::f32, &K::bf16};
}

}  // namespace vlalign::kernels
