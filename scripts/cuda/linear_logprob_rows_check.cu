// Stand-alone check of cpp/kernels/cuda/linear_logprob_rows.cu against a plain CPU reference of the
// formulas in cpp/kernels/cpu/linear_logprob_rows.h (long double, straight loops), without libtorch.
// Built by scripts/check-cuda.sh and run only when a GPU is visible; exits 0 with a "skipped" line
// when there is none, 1 on a mismatch or CUDA error.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include <cuda_runtime.h>

#include "../../cpp/kernels/cuda/linear_logprob_rows_cuda.h"

using vlalign::kernels::launchLinearLogprobGrad;
using vlalign::kernels::launchLinearLogprobStats;

namespace {

#define CHECK_CUDA(expr)                                                                        \
  do {                                                                                          \
    const cudaError_t status_ = (expr);                                                         \
    if (status_ != cudaSuccess) {                                                               \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(status_)); \
      std::exit(1);                                                                             \
    }                                                                                           \
  } while (0)

template <typename T>
T* toDevice(const std::vector<T>& host) {
  T* device = nullptr;
  CHECK_CUDA(cudaMalloc(&device, host.size() * sizeof(T) + 1));
  if (!host.empty()) CHECK_CUDA(cudaMemcpy(device, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  return device;
}

template <typename T>
std::vector<T> toHost(const T* device, size_t count) {
  std::vector<T> host(count);
  if (count) CHECK_CUDA(cudaMemcpy(host.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost));
  return host;
}

int failures = 0;

template <typename T>
void expectClose(const char* what, int64_t rows, int64_t n, int64_t r, int64_t k, long double want, T got, double tol) {
  const long double err = std::fabs(static_cast<long double>(got) - want);
  if (!(err <= tol * (1 + std::fabs(want)))) {
    if (failures < 20) {
      std::fprintf(stderr, "mismatch %s (rows %lld, n %lld) at row %lld col %lld: want %.12Lg got %.12g\n", what,
                   (long long)rows, (long long)n, (long long)r, (long long)k, want, (double)got);
    }
    ++failures;
  }
}

template <typename T>
void runCase(int64_t rows, int64_t n, bool withBias, bool withGrads, double temperature, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> normal(0.0, 3.0);
  std::uniform_int_distribution<int64_t> pick(-1, n - 1);
  std::vector<T> a(rows * n), bias(withBias ? n : 0), c(rows), e(rows), m(rows);
  std::vector<int64_t> labels(rows);
  for (auto& v : a) v = static_cast<T>(normal(gen));
  for (auto& v : bias) v = static_cast<T>(normal(gen));
  for (int64_t r = 0; r < rows; ++r) {
    labels[r] = pick(gen);
    c[r] = static_cast<T>(normal(gen)), e[r] = static_cast<T>(normal(gen)), m[r] = static_cast<T>(normal(gen));
  }
  const T invT = static_cast<T>(1.0 / temperature);

  T* dLogits = toDevice(a);
  T* dBias = withBias ? toDevice(bias) : nullptr;
  int64_t* dLabels = toDevice(labels);
  T *dLogp = toDevice(std::vector<T>(rows)), *dLse = toDevice(std::vector<T>(rows));
  T *dEntropy = toDevice(std::vector<T>(rows)), *dMean = toDevice(std::vector<T>(rows));
  T *dC = withGrads ? toDevice(c) : nullptr, *dE = withGrads ? toDevice(e) : nullptr;
  T* dM = withGrads ? toDevice(m) : nullptr;

  CHECK_CUDA(launchLinearLogprobStats<T>(dLogits, dBias, dLabels, rows, n, invT, dLogp, dLse, dEntropy, dMean, 0));
  CHECK_CUDA(cudaDeviceSynchronize());
  const auto z = toHost(dLogits, rows * n);
  const auto logp = toHost(dLogp, rows), lse = toHost(dLse, rows);
  const auto entropy = toHost(dEntropy, rows), mean = toHost(dMean, rows);
  CHECK_CUDA(launchLinearLogprobGrad<T>(dLogits, dLabels, rows, n, invT, dLse, dEntropy, dC, dE, dM, 0));
  CHECK_CUDA(cudaDeviceSynchronize());
  const auto grad = toHost(dLogits, rows * n);

  const double tol = sizeof(T) == 4 ? 2e-5 : 1e-11;
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<long double> zr(n);
    long double raw = 0, zmax = -INFINITY;
    for (int64_t k = 0; k < n; ++k) {
      const long double v = static_cast<long double>(a[r * n + k]) + (withBias ? bias[k] : 0);
      raw += v;
      zr[k] = v * static_cast<long double>(invT);
      zmax = std::max(zmax, zr[k]);
      expectClose("z", rows, n, r, k, zr[k], z[r * n + k], tol);
    }
    long double s = 0, t = 0;
    for (int64_t k = 0; k < n; ++k) s += std::exp(zr[k] - zmax), t += std::exp(zr[k] - zmax) * zr[k];
    const long double wantLse = zmax + std::log(s), wantH = wantLse - t / s;
    expectClose("lse", rows, n, r, -1, wantLse, lse[r], tol);
    expectClose("logp", rows, n, r, labels[r], labels[r] >= 0 ? zr[labels[r]] - wantLse : 0.0L, logp[r], tol);
    expectClose("entropy", rows, n, r, -1, wantH, entropy[r], tol);
    expectClose("meanLogit", rows, n, r, -1, raw / n, mean[r], tol);
    // An ignored row's logp is the constant 0, so its c has no effect.
    const long double cr = withGrads && labels[r] >= 0 ? c[r] : 0, er = withGrads ? e[r] : 0, mr = withGrads ? m[r] : 0;
    const long double it = static_cast<long double>(invT);
    for (int64_t k = 0; k < n; ++k) {
      // dL/da_v = (1/T) [c (1[v = label] - p_v) - e p_v (z_v - lse + H)] + m / n
      const long double p = std::exp(zr[k] - wantLse);
      const long double want = it * (cr * ((k == labels[r]) - p) - er * p * (zr[k] - wantLse + wantH)) + mr / n;
      expectClose("grad", rows, n, r, k, want, grad[r * n + k], tol * 4);
    }
  }
  for (void* p : {(void*)dLogits, (void*)dBias, (void*)dLabels, (void*)dLogp, (void*)dLse, (void*)dEntropy,
                  (void*)dMean, (void*)dC, (void*)dE, (void*)dM}) {
    if (p) CHECK_CUDA(cudaFree(p));
  }
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("linear_logprob_rows_check: skipped: no CUDA device\n");
    return 0;
  }
  const int64_t shapes[][2] = {{1, 1}, {3, 5}, {4, 31}, {7, 32}, {5, 33}, {2, 1000}, {9, 4097}, {3, 50257}, {70000, 3}};
  for (const auto& shape : shapes) {
    for (int variant = 0; variant < 4; ++variant) {
      const bool bias = variant & 1, grads = variant & 2;
      const double temperature = variant == 3 ? 0.7 : 1.0;
      runCase<float>(shape[0], shape[1], bias, grads, temperature, 17 + variant);
      runCase<double>(shape[0], shape[1], bias, grads, temperature, 29 + variant);
    }
  }
  if (failures) {
    std::fprintf(stderr, "linear_logprob_rows_check: %d mismatches\n", failures);
    return 1;
  }
  std::printf("linear_logprob_rows_check: ok (float and double, %zu shapes x 4 variants)\n",
              sizeof(shapes) / sizeof(shapes[0]));
  return 0;
}
