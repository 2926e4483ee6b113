// Row kernels for AVX-512 (F, DQ, BW, VL); this file alone is compiled with -mavx512*.
#include "linear_logprob_rows.h"
#include "optim_rows.h"
#include "quant4bit_rows.h"

namespace vlalign::kernels {

FloatRowKernels rowKernelsAvx512() {
  using K = LinearLogprobRows<Avx512Vec>;
  return {"avx512", &K::stats, &K::grad};
}

OptimKernels optimKernelsAvx512() { return {"avx512", &adamwRun<Avx512Vec>}; }

Quant4bitKernels quant4bitKernelsAvx512() {
  using K = Dequant4bitRows<Avx512Vec>;
  return {"avx512", &K::f32, &K::bf16};
}

}  // namespace vlalign::kernels
