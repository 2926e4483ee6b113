// Picks the widest row kernels (losses, optimizers, 4-bit dequantisation) this CPU runs, once.
// VLALIGN_CPU_CAPABILITY=default|avx2|avx512 overrides (as ATEN_CPU_CAPABILITY does for ATen), e.g. to compare versions
// in a benchmark.
#include <cstdlib>
#include <string>

#include "linear_logprob_rows.h"
#include "optim_rows.h"
#include "quant4bit_rows.h"

namespace vlalign::kernels {

namespace {
enum class Isa { Default, Avx2, Avx512 };

Isa detectIsa() {
  const char* forced = std::getenv("VLALIGN_CPU_CAPABILITY");
  const std::string want = forced ? forced : "";
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (want == "default") return Isa::Default;
  if (want == "avx2" && avx2) return Isa::Avx2;
  if ((want.empty() || want == "avx512") && avx512) return Isa::Avx512;
  if (avx2) return Isa::Avx2;
  return Isa::Default;
}

Isa chosenIsa() {
  static const Isa isa = detectIsa();
  return isa;
}
}  // namespace

const FloatRowKernels& floatRowKernels() {
  static const FloatRowKernels chosen = chosenIsa() == Isa::Avx512 ? rowKernelsAvx512()
                                        : chosenIsa() == Isa::Avx2 ? rowKernelsAvx2()
                                                                   : rowKernelsDefault();
  return chosen;
}

const OptimKernels& optimKernels() {
  static const OptimKernels chosen = chosenIsa() == Isa::Avx512 ? optimKernelsAvx512()
                                     : chosenIsa() == Isa::Avx2 ? optimKernelsAvx2()
                                                                : optimKernelsDefault();
  return chosen;
}

const Quant4bitKernels& quant4bitKernels() {
  static const Quant4bitKernels chosen = chosenIsa() == Isa::Avx512 ? quant4bitKernelsAvx512()
                                         : chosenIsa() == Isa::Avx2 ? quant4bitKernelsAvx2()
                                                                    : quant4bitKernelsDefault();
  return chosen;
}

}  // namespace vlalign::kernels
