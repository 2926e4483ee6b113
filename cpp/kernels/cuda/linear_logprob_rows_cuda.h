// CUDA twin of cpu/linear_logprob_rows.h: the per-row math of the fused linear + log-softmax
// kernels on a [rows, n] block of logits that lives on the GPU. Same formulas, same in-place
// contract (see the header comment of cpu/linear_logprob_rows.h):
//
//   stats: rewrites z = (a + bias) * invT in place; lse = log sum exp z, logp = z[label] - lse
//          (0 when label < 0), entropy H = lse - sum p z, meanLogit = mean(a + bias)
//   grad:  overwrites z with dL/da = p (alpha + beta z) + gamma, plus c * invT at the label, where
//          alpha = -invT (c + e (H - lse)), beta = -invT e, gamma = m / n; on an ignored row
//          (label < 0) c counts as 0, since its logp is the constant 0
//
// One thread block per row for the stats (block-wide max, then sum exp and sum exp * z, reduced with
// warp shuffles); the grad is elementwise. Only plain pointers and the CUDA runtime appear here, so
// the .cu compiles stand-alone with nvcc (scripts/check-cuda.sh); the libtorch glue that calls these
// is ../fused_linear_logprob_cuda.cc.
//
// All pointers are device pointers to contiguous arrays: logits [rows, n] row-major, bias [n] or
// null, labels [rows] int64 (negative = ignored row; otherwise < n), per-row arrays [rows]. c, e, m
// (the upstream gradients of logp, entropy, meanLogit) may each be null, meaning zero. Kernels are
// queued on `stream`; the return value is the launch status (cudaGetLastError after the launch), so
// asynchronous faults surface at the next synchronising call, as with any CUDA kernel.
//
// Status: compiled with nvcc (sm_75 .. sm_120), not yet run on a GPU.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace vlalign::kernels {

template <typename T>
cudaError_t launchLinearLogprobStats(T* logits, const T* bias, const int64_t* labels, int64_t rows, int64_t n, T invT,
                                     T* logp, T* lse, T* entropy, T* meanLogit, cudaStream_t stream);

template <typename T>
cudaError_t launchLinearLogprobGrad(T* logits, const int64_t* labels, int64_t rows, int64_t n, T invT, const T* lse,
                                    const T* entropy, const T* c, const T* e, const T* m, cudaStream_t stream);

// Instantiated for float and double in linear_logprob_rows.cu.
extern template cudaError_t launchLinearLogprobStats<float>(float*, const float*, const int64_t*, int64_t, int64_t,
                                                            float, float*, float*, float*, float*, cudaStream_t);
extern template cudaError_t launchLinearLogprobStats<double>(double*, const double*, const int64_t*, int64_t, int64_t,
                                                             double, double*, double*, double*, double*, cudaStream_t);
extern template cudaError_t launchLinearLogprobGrad<float>(float*, const int64_t*, int64_t, int64_t, float,
                                                           const float*, const float*, const float*, const float*,
                                                           const float*, cudaStream_t);
extern template cudaError_t launchLinearLogprobGrad<double>(double*, const int64_t*, int64_t, int64_t, double,
                                                            const double*, const double*, const double*,
                                                            const double*, const double*, cudaStream_t);

}  // namespace vlalign::kernels
