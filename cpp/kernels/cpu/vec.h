// The few SIMD operations the row kernels need, one struct per instruction set. Each ISA's kernel
// file includes this header with its own compiler flags, so only that file's struct is compiled
// with wide instructions; `ScalarVec` serves float64 and CPUs without AVX2.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace vlalign::kernels {

template <typename T>
struct ScalarVec {
  using Scalar = T;
  static constexpr int64_t size = 1;
  T v;
  static ScalarVec load(const T* p) { return {*p}; }
  static ScalarVec broadcast(T x) { return {x}; }
  void store(T* p) const { *p = v; }
  friend ScalarVec operator+(ScalarVec a, ScalarVec b) { return {a.v + b.v}; }
  friend ScalarVec operator-(ScalarVec a, ScalarVec b) { return {a.v - b.v}; }
  friend ScalarVec operator*(ScalarVec a, ScalarVec b) { return {a.v * b.v}; }
  friend ScalarVec operator/(ScalarVec a, ScalarVec b) { return {a.v / b.v}; }
  ScalarVec sqrt() const { return {std::sqrt(v)}; }
  static ScalarVec fma(ScalarVec a, ScalarVec b, ScalarVec c) { return {a.v * b.v + c.v}; }
  static ScalarVec max(ScalarVec a, ScalarVec b) { return {a.v > b.v ? a.v : b.v}; }
  ScalarVec exp() const { return {std::exp(v)}; }
  ScalarVec flushSubnormal() const { return {std::abs(v) < std::numeric_limits<T>::min() ? T(0) : v}; }
  T sum() const { return v; }
  T maxElement() const { return v; }
};

// exp(x) for x <= 0 (every caller subtracts the row max first): x = n ln2 + r with |r| <= ln2/2,
// exp(r) by its degree-6 Taylor polynomial (relative error < 2e-7, about one float ulp), times 2^n.
// Inputs below -87 flush to 0, as the float exponent cannot go lower.
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kExpUnderflow = -87.0f;

#if defined(__AVX512F__)
struct Avx512Vec {
  using Scalar = float;
  static constexpr int64_t size = 16;
  __m512 v;
  static Avx512Vec load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static Avx512Vec broadcast(float x) { return {_mm512_set1_ps(x)}; }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  friend Avx512Vec operator+(Avx512Vec a, Avx512Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
  friend Avx512Vec operator-(Avx512Vec a, Avx512Vec b) { return {_mm512_sub_ps(a.v, b.v)}; }
  friend Avx512Vec operator*(Avx512Vec a, Avx512Vec b) { return {_mm512_mul_ps(a.v, b.v)}; }
  friend Avx512Vec operator/(Avx512Vec a, Avx512Vec b) { return {_mm512_div_ps(a.v, b.v)}; }
  Avx512Vec sqrt() const { return {_mm512_sqrt_ps(v)}; }
  static Avx512Vec fma(Avx512Vec a, Avx512Vec b, Avx512Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
  static Avx512Vec max(Avx512Vec a, Avx512Vec b) { return {_mm512_max_ps(a.v, b.v)}; }
  Avx512Vec exp() const {
    const __m512 x = _mm512_max_ps(v, _mm512_set1_ps(kExpUnderflow));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512 result = _mm512_scalef_ps(p, n);
    const __mmask16 under = _mm512_cmp_ps_mask(v, _mm512_set1_ps(kExpUnderflow), _CMP_LT_OQ);
    return {_mm512_mask_blend_ps(under, result, _mm512_setzero_ps())};
  }
  Avx512Vec flushSubnormal() const {
    const __mmask16 tiny =
        _mm512_cmp_ps_mask(_mm512_abs_ps(v), _mm512_set1_ps(std::numeric_limits<float>::min()), _CMP_LT_OQ);
    return {_mm512_mask_blend_ps(tiny, v, _mm512_setzero_ps())};
  }
  float sum() const { return _mm512_reduce_add_ps(v); }
  float maxElement() const { return _mm512_reduce_max_ps(v); }
};
#endif

#if defined(__AVX2__) && defined(__FMA__)
struct Avx2Vec {
  using Scalar = float;
  static constexpr int64_t size = 8;
  __m256 v;
  static Avx2Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static Avx2Vec broadcast(float x) { return {_mm256_set1_ps(x)}; }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
  friend Avx2Vec operator+(Avx2Vec a, Avx2Vec b) { return {_mm256_add_ps(a.v, b.v)}; }
  friend Avx2Vec operator-(Avx2Vec a, Avx2Vec b) { return {_mm256_sub_ps(a.v, b.v)}; }
  friend Avx2Vec operator*(Avx2Vec a, Avx2Vec b) { return {_mm256_mul_ps(a.v, b.v)}; }
  friend Avx2Vec operator/(Avx2Vec a, Avx2Vec b) { return {_mm256_div_ps(a.v, b.v)}; }
  Avx2Vec sqrt() const { return {_mm256_sqrt_ps(v)}; }
  static Avx2Vec fma(Avx2Vec a, Avx2Vec b, Avx2Vec c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
  static Avx2Vec max(Avx2Vec a, Avx2Vec b) { return {_mm256_max_ps(a.v, b.v)}; }
  Avx2Vec exp() const {
    const __m256 x = _mm256_max_ps(v, _mm256_set1_ps(kExpUnderflow));
    const __m256 n =
        _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    // 2^n: add n to the exponent field (n >= -126 here, so the result stays a normal float).
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    const __m256 result = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
    const __m256 under = _mm256_cmp_ps(v, _mm256_set1_ps(kExpUnderflow), _CMP_LT_OQ);
    return {_mm256_blendv_ps(result, _mm256_setzero_ps(), under)};
  }
  Avx2Vec flushSubnormal() const {
    const __m256 magnitude = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
    const __m256 tiny = _mm256_cmp_ps(magnitude, _mm256_set1_ps(std::numeric_limits<float>::min()), _CMP_LT_OQ);
    return {_mm256_blendv_ps(v, _mm256_setzero_ps(), tiny)};
  }
  float sum() const {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
  }
  float maxElement() const {
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, v);
    float m = lanes[0];
    for (int k = 1; k < 8; ++k) m = lanes[k] > m ? lanes[k] : m;
    return m;
  }
};
#endif

}  // namespace vlalign::kernels
