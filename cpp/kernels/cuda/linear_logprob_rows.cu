// CUDA row kernels of the fused linear + log-softmax (see linear_logprob_rows_cuda.h for the
// contract and cpu/linear_logprob_rows.h for the CPU kernels these mirror step for step).
//
// Status: compiled with nvcc (sm_75 .. sm_120), not yet run on a GPU.
#include "linear_logprob_rows_cuda.h"

#include <climits>
#include <cmath>

#include <cuda_runtime.h>

namespace vlalign::kernels {

namespace {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarp = 32;
constexpr int kMaxStatsThreads = 512;  // one block per row; 32 .. 512 threads, a multiple of the warp
constexpr int kGradThreads = 256;
constexpr int64_t kMaxGridX = INT_MAX;
constexpr int64_t kMaxGridY = 65535;

// Precise (not --use_fast_math) math, one overload per dtype.
__device__ __forceinline__ float expOf(float x) { return expf(x); }
__device__ __forceinline__ double expOf(double x) { return exp(x); }
__device__ __forceinline__ float logOf(float x) { return logf(x); }
__device__ __forceinline__ double logOf(double x) { return log(x); }
__device__ __forceinline__ float fmaOf(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double fmaOf(double a, double b, double c) { return fma(a, b, c); }
// fmax ignores a NaN operand; a NaN logit still turns the row's sums (and so lse) into NaN.
__device__ __forceinline__ float maxOf(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double maxOf(double a, double b) { return fmax(a, b); }

template <typename T>
__device__ __forceinline__ T negInf() {
  return static_cast<T>(-INFINITY);
}

template <typename T>
__device__ __forceinline__ T warpMax(T v) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1) v = maxOf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

template <typename T>
__device__ __forceinline__ T warpSum(T v) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

// Block-wide reductions of one or two values; every thread gets the result. blockDim.x must be a
// multiple of 32 (at most 1024), and every thread of the block must call them. Each ends with a
// barrier, so the scratch (>= 32 entries each) can be reused at once, and global writes made before
// the call are visible to the whole block after it.
template <typename T>
__device__ __forceinline__ void blockMaxSum(T& maxValue, T& sumValue, T* scratchMax, T* scratchSum) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  maxValue = warpMax(maxValue);
  sumValue = warpSum(sumValue);
  if (lane == 0) scratchMax[warp] = maxValue, scratchSum[warp] = sumValue;
  __syncthreads();
  maxValue = warpMax(lane < warps ? scratchMax[lane] : negInf<T>());
  sumValue = warpSum(lane < warps ? scratchSum[lane] : T(0));
  __syncthreads();
}

template <typename T>
__device__ __forceinline__ void blockSum2(T& a, T& b, T* scratchA, T* scratchB) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  a = warpSum(a);
  b = warpSum(b);
  if (lane == 0) scratchA[warp] = a, scratchB[warp] = b;
  __syncthreads();
  a = warpSum(lane < warps ? scratchA[lane] : T(0));
  b = warpSum(lane < warps ? scratchB[lane] : T(0));
  __syncthreads();
}

// One block per row (grid-stride over rows). Sweep 1 writes z = (a + bias) * invT and reduces
// max z and sum (a + bias); sweep 2 re-reads z (each thread only its own elements) and reduces
// s = sum exp(z - max) and t = sum exp(z - max) z. Then lse = max + log s, H = lse - t / s.
template <typename T>
__global__ void __launch_bounds__(kMaxStatsThreads)
    linearLogprobStatsKernel(T* __restrict__ logits, const T* __restrict__ bias, const int64_t* __restrict__ labels,
                             int64_t rows, int64_t n, T invT, T* __restrict__ logp, T* __restrict__ lse,
                             T* __restrict__ entropy, T* __restrict__ meanLogit) {
  __shared__ T scratchA[kWarp], scratchB[kWarp];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    T* row = logits + r * n;
    T zmax = negInf<T>(), raw = T(0);
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
      const T a = row[k] + (bias ? bias[k] : T(0));
      raw += a;
      const T z = a * invT;
      row[k] = z;
      zmax = maxOf(zmax, z);
    }
    blockMaxSum(zmax, raw, scratchA, scratchB);

    T s = T(0), t = T(0);
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
      const T z = row[k];
      const T e = expOf(z - zmax);
      s += e;
      t = fmaOf(e, z, t);
    }
    blockSum2(s, t, scratchA, scratchB);

    if (threadIdx.x == 0) {
      const T l = zmax + logOf(s);
      const int64_t label = labels[r];
      // A label >= n is rejected on the host (checkLinearLogprobInputs); NaN rather than a stray read.
      logp[r] = label < 0 ? T(0) : (label < n ? row[label] - l : static_cast<T>(NAN));
      lse[r] = l;
      entropy[r] = l - t / s;
      meanLogit[r] = raw / static_cast<T>(n);
    }
  }
}

// Elementwise: blockIdx.y walks rows, blockIdx.x tiles a row, so few long rows still fill the GPU.
template <typename T>
__global__ void __launch_bounds__(kGradThreads)
    linearLogprobGradKernel(T* __restrict__ logits, const int64_t* __restrict__ labels, int64_t rows, int64_t n,
                            T invT, const T* __restrict__ lse, const T* __restrict__ entropy,
                            const T* __restrict__ c, const T* __restrict__ e, const T* __restrict__ m) {
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const int64_t label = labels[r];
    // An ignored row's logp is the constant 0: its upstream gradient c reaches nothing.
    const T cr = c && label >= 0 ? c[r] : T(0), er = e ? e[r] : T(0), mr = m ? m[r] : T(0);
    const T l = lse[r];
    const T alpha = -invT * (cr + er * (entropy[r] - l));
    const T beta = -invT * er;
    const T gamma = mr / static_cast<T>(n);
    const T labelTerm = invT * cr;
    T* row = logits + r * n;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += stride) {
      const T z = row[k];
      const T p = expOf(z - l);
      T g = fmaOf(p, fmaOf(beta, z, alpha), gamma);
      if (k == label) g += labelTerm;  // the CPU adds c/T after the sweep: same operands, same order
      row[k] = g;
    }
  }
}

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Enough threads for about four elements each, 32 .. kMaxStatsThreads.
int statsThreads(int64_t n) {
  int threads = kWarp;
  while (threads < kMaxStatsThreads && threads * int64_t{4} < n) threads *= 2;
  return threads;
}

}  // namespace

template <typename T>
cudaError_t launchLinearLogprobStats(T* logits, const T* bias, const int64_t* labels, int64_t rows, int64_t n, T invT,
                                     T* logp, T* lse, T* entropy, T* meanLogit, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  const unsigned grid = static_cast<unsigned>(rows < kMaxGridX ? rows : kMaxGridX);
  linearLogprobStatsKernel<T><<<grid, statsThreads(n), 0, stream>>>(logits, bias, labels, rows, n, invT, logp, lse,
                                                                     entropy, meanLogit);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launchLinearLogprobGrad(T* logits, const int64_t* labels, int64_t rows, int64_t n, T invT, const T* lse,
                                    const T* entropy, const T* c, const T* e, const T* m, cudaStream_t stream) {
  if (rows <= 0 || n <= 0) return cudaSuccess;
  const int64_t threads = n < kGradThreads ? ceilDiv(n, kWarp) * kWarp : kGradThreads;
  // About four elements per thread, at most 1024 tiles per row.
  int64_t tiles = ceilDiv(n, threads * 4);
  if (tiles > 1024) tiles = 1024;
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(rows < kMaxGridY ? rows : kMaxGridY));
  linearLogprobGradKernel<T><<<grid, static_cast<unsigned>(threads), 0, stream>>>(logits, labels, rows, n, invT, lse,
                                                                                  entropy, c, e, m);
  return cudaGetLastError();
}

template cudaError_t launchLinearLogprobStats<float>(float*, const float*, const int64_t*, int64_t, int64_t, float,
                                                     float*, float*, float*, float*, cudaStream_t);
template cudaError_t launchLinearLogprobStats<double>(double*, const double*, const int64_t*, int64_t, int64_t, double,
                                                      double*, double*, double*, double*, cudaStream_t);
template cudaError_t launchLinearLogprobGrad<float>(float*, const int64_t*, int64_t, int64_t, float, const float*,
                                                    const float*, const float*, const float*, const float*,
                                                    cudaStream_t);
template cudaError_t launchLinearLogprobGrad<double>(double*, const int64_t*, int64_t, int64_t, double, const double*,
                                                     const double*, const double*, const double*, const double*,
                                                     cudaStream_t);

}  // namespace vlalign::kernels
