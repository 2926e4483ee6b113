// Row kernels for AVX-512 (F, DQ, BW, VL); this file alone is compiled with -mavx512*.
#include "linear_logprob_rows.h"

namespace vlalign::kernels {

FloatRowKernels rowKernelsAvx512() {
  using K = LinearLogprobRows<Avx512Vec>;
  return {"avx512", &K::stats, &K::grad};
}

}  // namespace vlalign::kernels
