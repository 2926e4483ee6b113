// Per-row math of the fused linear + log-softmax kernels, written once over a SIMD type `V`
// (vec.h) and compiled once per instruction set (row_kernels_<isa>.cc).
//
// A row holds one token's logits a[0..n) = x . W^T. With z = (a + bias) / T:
//   stats: lse = log sum exp z, logp = z[label] - lse, entropy H = lse - sum p z,
//          meanLogit = mean(a + bias)                          (two sweeps, one exp per element)
//   grad:  given c = dL/dlogp, e = dL/dH, m = dL/dmeanLogit, overwrite the row with dL/da:
//          dL/da_v = (1/T) [c (1[v = label] - p_v) - e p_v (z_v - lse + H)] + m / n
//                  = p_v (alpha + beta z_v) + gamma, then + c/T at the label   (one sweep)
//          Subnormal results are flushed to 0: they change no fp32 sum, but a GEMM over a block
//          full of them (a peaked softmax) runs two orders of magnitude slower on x86.
#pragma once

#include <algorithm>
#include <limits>

#include "vec.h"

namespace vlalign::kernels {

template <typename T>
struct RowStats {
  T logp, lse, entropy, meanLogit;
};

template <class V>
struct LinearLogprobRows {
  using T = typename V::Scalar;
  using S = ScalarVec<T>;

  // Rewrites row[v] = (row[v] + bias[v]) * invT and returns its statistics.
  static RowStats<T> stats(T* row, const T* bias, int64_t n, T invT, int64_t label) {
    const int64_t body = n - n % V::size;
    V vmax = V::broadcast(-std::numeric_limits<T>::infinity()), vraw = V::broadcast(0);
    const V vinvT = V::broadcast(invT);
    for (int64_t k = 0; k < body; k += V::size) {
      V a = V::load(row + k);
      if (bias) a = a + V::load(bias + k);
      vraw = vraw + a;
      const V z = a * vinvT;
      z.store(row + k);
      vmax = V::max(vmax, z);
    }
    T zmax = vmax.maxElement(), raw = vraw.sum();
    for (int64_t k = body; k < n; ++k) {
      const T a = row[k] + (bias ? bias[k] : T(0));
      raw += a;
      row[k] = a * invT;
      zmax = std::max(zmax, row[k]);
    }
    V vs = V::broadcast(0), vt = V::broadcast(0);
    const V vmaxb = V::broadcast(zmax);
    for (int64_t k = 0; k < body; k += V::size) {
      const V z = V::load(row + k);
      const V e = (z - vmaxb).exp();
      vs = vs + e;
      vt = V::fma(e, z, vt);
    }
    T s = vs.sum(), t = vt.sum();
    for (int64_t k = body; k < n; ++k) {
      const T e = S::broadcast(row[k] - zmax).exp().v;
      s += e;
      t += e * row[k];
    }
    const T lse = zmax + std::log(s);
    const T logp = label >= 0 ? row[label] - lse : T(0);
    return {logp, lse, lse - t / s, raw / static_cast<T>(n)};
  }

  // Overwrites the scaled logits z of a row with dL/da (see the header comment).
  static void grad(T* row, int64_t n, T invT, int64_t label, T lse, T entropy, T c, T e, T m) {
    if (label < 0) c = T(0);  // an ignored row's logp is the constant 0: no log-prob gradient
    const T alpha = -invT * (c + e * (entropy - lse));
    const T beta = -invT * e;
    const T gamma = m / static_cast<T>(n);
    const int64_t body = n - n % V::size;
    const V valpha = V::broadcast(alpha), vbeta = V::broadcast(beta), vgamma = V::broadcast(gamma);
    const V vlse = V::broadcast(lse);
    for (int64_t k = 0; k < body; k += V::size) {
      const V z = V::load(row + k);
      const V p = (z - vlse).exp();
      V::fma(p, V::fma(vbeta, z, valpha), vgamma).flushSubnormal().store(row + k);
    }
    for (int64_t k = body; k < n; ++k) {
      const T p = S::broadcast(row[k] - lse).exp().v;
      row[k] = S::broadcast(p * (alpha + beta * row[k]) + gamma).flushSubnormal().v;
    }
    if (label >= 0) row[label] += invT * c;
  }
};

// The float row kernels of one instruction set, picked once at run time (dispatch.cc).
struct FloatRowKernels {
  const char* isa;
  RowStats<float> (*stats)(float* row, const float* bias, int64_t n, float invT, int64_t label);
  void (*grad)(float* row, int64_t n, float invT, int64_t label, float lse, float entropy, float c, float e, float m);
};

FloatRowKernels rowKernelsDefault();
FloatRowKernels rowKernelsAvx2();
FloatRowKernels rowKernelsAvx512();

}  // namespace vlalign::kernels
