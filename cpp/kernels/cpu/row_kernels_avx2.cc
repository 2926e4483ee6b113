// Row kernels for AVX2 + FMA; this file alone is compiled with -mavx2 -mfma.
#include "linear_logprob_rows.h"
#include "optim_rows.h"
#include "quant4bit_rows.h"

namespace vlalign::kernels {

FloatRowKernels rowKernelsAvx2() {
  using K = LinearLogprobRows<Avx2Vec>;
  return {"avx2", &K::stats, &K::grad};
}

OptimKernels optimKernelsAvx2() { return {"avx2", &adamwRun<Avx2Vec>}; }

Quant4bitKernels quant4bitKernelsAvx2() {
  using K = Dequant4bitRows<Avx2Vec>;
  return {"avx2", &K::f32, &K::bf16};
}

}  // namespace vlalign::kernels
