// Row kernels for AVX-512 (F, DQ, BW, VL); this file alone is compiled with -mavx512*.
#include "linear_logprob_rows.h"
#include "optim_rows.h"

namespace vlalign::kernels {

FloatRowKernels rowKernelsAvx512() {
  using K = LinearLogprobRows<Avx512Vec>;
  return {"avx512", &K::stats, &K::grad};
}

OptimKernels optimKernelsAvx512() { return {"avx512", &adamwRun<Avx512Vec>}; }

}  // namespace vlalign::kernels
