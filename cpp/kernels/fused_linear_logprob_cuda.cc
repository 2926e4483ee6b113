// libtorch glue of the CUDA row kernels (cuda/linear_logprob_rows.cu): device and layout checks,
// the device guard and the current stream, then one kernel launch per chunk.
//
// Every build compiles this file (scripts/native-build.cjs lists each .cc outside a cuda/
// directory), but its body exists only with VLALIGN_WITH_CUDA, which CMakeLists.txt defines when
// libtorch has CUDA; the CPU build sees an empty file and needs no CUDA headers.
//
// Status: compiled, not yet run on a GPU.
#ifdef VLALIGN_WITH_CUDA

#include "fused_linear_logprob_cuda.h"

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda/linear_logprob_rows_cuda.h"

namespace vlalign::kernels {

namespace {

template <typename T>
const T* dataOrNull(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

void checkLogits(const at::Tensor& logits) {
  TORCH_CHECK(logits.is_cuda() && logits.dim() == 2 && logits.is_contiguous(),
              "fused linear log-softmax (CUDA): logits must be a contiguous 2-D CUDA tensor, got ", logits.device(),
              " ", logits.sizes());
}

// An optional [rows] or [n] operand: on the logits' device, contiguous (the kernels index it flat).
void checkOperand(const at::Tensor& t, const at::Tensor& logits, int64_t size, const char* name) {
  if (!t.defined()) return;
  TORCH_CHECK(t.device() == logits.device(), "fused linear log-softmax: ", name, " must be on ", logits.device(),
              " like the hidden states, got ", t.device());
  TORCH_CHECK(t.dim() == 1 && t.size(0) == size && t.is_contiguous(), "fused linear log-softmax (CUDA): ", name,
              " must be a contiguous [", size, "] tensor, got ", t.sizes());
}

}  // namespace

void cudaStatsRows(at::Tensor& logits, const at::Tensor& bias, const at::Tensor& labels, double temperature,
                   LinearLogprobStats& out) {
  checkLogits(logits);
  const int64_t rows = logits.size(0), n = logits.size(1);
  checkOperand(bias, logits, n, "bias");
  checkOperand(labels, logits, rows, "labels");
  checkOperand(out.logp, logits, rows, "logp");
  checkOperand(out.lse, logits, rows, "lse");
  checkOperand(out.entropy, logits, rows, "entropy");
  checkOperand(out.meanLogit, logits, rows, "meanLogit");
  const c10::cuda::CUDAGuard guard(logits.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(logits.device().index()).stream();
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "cudaStatsRows", [&] {
    const scalar_t invT = static_cast<scalar_t>(1.0 / temperature);
    C10_CUDA_CHECK(launchLinearLogprobStats<scalar_t>(
        logits.data_ptr<scalar_t>(), dataOrNull<scalar_t>(bias), labels.data_ptr<int64_t>(), rows, n, invT,
        out.logp.data_ptr<scalar_t>(), out.lse.data_ptr<scalar_t>(), out.entropy.data_ptr<scalar_t>(),
        out.meanLogit.data_ptr<scalar_t>(), stream));
  });
}

void cudaGradRows(at::Tensor& logits, const at::Tensor& labels, double temperature, const LinearLogprobStats& stats,
                  const at::Tensor& gradLogp, const at::Tensor& gradEntropy, const at::Tensor& gradMeanLogit) {
  checkLogits(logits);
  const int64_t rows = logits.size(0), n = logits.size(1);
  checkOperand(labels, logits, rows, "labels");
  checkOperand(stats.lse, logits, rows, "lse");
  checkOperand(stats.entropy, logits, rows, "entropy");
  checkOperand(gradLogp, logits, rows, "gradient of logp");
  checkOperand(gradEntropy, logits, rows, "gradient of entropy");
  checkOperand(gradMeanLogit, logits, rows, "gradient of meanLogit");
  const c10::cuda::CUDAGuard guard(logits.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(logits.device().index()).stream();
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "cudaGradRows", [&] {
    const scalar_t invT = static_cast<scalar_t>(1.0 / temperature);
    C10_CUDA_CHECK(launchLinearLogprobGrad<scalar_t>(
        logits.data_ptr<scalar_t>(), labels.data_ptr<int64_t>(), rows, n, invT, stats.lse.data_ptr<scalar_t>(),
        stats.entropy.data_ptr<scalar_t>(), dataOrNull<scalar_t>(gradLogp), dataOrNull<scalar_t>(gradEntropy),
        dataOrNull<scalar_t>(gradMeanLogit), stream));
  });
}

}  // namespace vlalign::kernels

#endif  // VLALIGN_WITH_CUDA
