// Row kernels for AVX2 + FMA; this file alone is compiled with -mavx2 -mfma.
#include "linear_logprob_rows.h"

namespace vlalign::kernels {

FloatRowKernels rowKernelsAvx2() {
  using K = LinearLogprobRows<Avx2Vec>;
  return {"avx2", &K::stats, &K::grad};
}

}  // namespace vlalign::kernels
