// Picks the widest row kernels this CPU runs, once. VLALIGN_CPU_CAPABILITY=default|avx2|avx512
// overrides (as ATEN_CPU_CAPABILITY does for ATen), e.g. to compare versions in a benchmark.
#include <cstdlib>
#include <string>

#include "linear_logprob_rows.h"

namespace vlalign::kernels {

namespace {
FloatRowKernels detect() {
  const char* forced = std::getenv("VLALIGN_CPU_CAPABILITY");
  const std::string want = forced ? forced : "";
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (want == "default") return rowKernelsDefault();
  if (want == "avx2" && avx2) return rowKernelsAvx2();
  if ((want.empty() || want == "avx512") && avx512) return rowKernelsAvx512();
  if (avx2 && want != "default") return rowKernelsAvx2();
  return rowKernelsDefault();
}
}  // namespace

const FloatRowKernels& floatRowKernels() {
  static const FloatRowKernels chosen = detect();
  return chosen;
}

}  // namespace vlalign::kernels
