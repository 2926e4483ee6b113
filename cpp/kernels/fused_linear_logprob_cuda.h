// CUDA path of the fused linear + log-softmax row kernels: cpu/fused_linear_logprob.cc calls these
// instead of its CPU row loops when the logits block lives on a GPU. Declared, and defined in
// fused_linear_logprob_cuda.cc, only when VLALIGN_WITH_CUDA is set (CMakeLists.txt, CUDA libtorch).
//
// Status: compiled, not yet run on a GPU.
#pragma once

#include "cpu/fused_linear_logprob.h"

#ifdef VLALIGN_WITH_CUDA

namespace vlalign::kernels {

// The CUDA twin of statsRows: `logits` is the [rows, V] chunk of a + x W^T (contiguous, on a GPU);
// rewrites it to z = (a + bias) / T and fills `out` (each [rows], same device and dtype). `bias` may
// be undefined; `labels` is int64 [rows] on the same device.
void cudaStatsRows(at::Tensor& logits, const at::Tensor& bias, const at::Tensor& labels, double temperature,
                   LinearLogprobStats& out);

// The CUDA twin of gradRows: overwrites the z left by cudaStatsRows with dL/da, given the chunk's
// stats and the per-token upstream gradients of logp, entropy and meanLogit ([rows], contiguous,
// same dtype and device; undefined = zero).
void cudaGradRows(at::Tensor& logits, const at::Tensor& labels, double temperature, const LinearLogprobStats& stats,
                  const at::Tensor& gradLogp, const at::Tensor& gradEntropy, const at::Tensor& gradMeanLogit);

}  // namespace vlalign::kernels

#endif  // VLALIGN_WITH_CUDA
