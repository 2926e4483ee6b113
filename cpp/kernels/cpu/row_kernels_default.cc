// Row kernels without SIMD: CPUs lacking AVX2, and the reference the vector versions must match.
#include "linear_logprob_rows.h"

namespace vlalign::kernels {

FloatRowKernels rowKernelsDefault() {
  using K = LinearLogprobRows<ScalarVec<float>>;
  return {"default", &K::stats, &K::grad};
}

}  // namespace vlalign::kernels
