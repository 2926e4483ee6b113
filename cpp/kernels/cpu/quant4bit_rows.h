// Dequantisation of 4-bit codes (quant4bit.h's layout) into float32 or bfloat16, compiled once per
// instruction set (row_kernels_<isa>.cc) and picked at run time (dispatch.cc). Every version gives
// the scalar reference's bits: code[k] * absmax is one float32 multiply (done on the 16-entry table
// once per block), bfloat16 rounds it to nearest even as c10::BFloat16 does (NaN -> 0x7FC0).
//
// Vector body: the bytes b0 b1 ... are duplicated (b0 b0 b1 b1 ...) and widened to 32-bit lanes,
// even lanes shifted right by 4, which yields the element order (high nibble first) as table
// indices; a permute reads the scaled table (AVX-512 permutes use only the low 4 index bits, AVX2
// picks from two 8-entry halves by bit 3). Loads and stores never straddle a block: blocksizes are
// powers of two >= 32, so a block is whole vectors once the start is aligned.
//
// No c10 / ATen types here: this header is compiled with wide-ISA flags, and an inline c10 function
// instantiated in such a file could be the copy the linker keeps for every caller. bfloat16 is
// passed as its uint16_t bits, and each helper is a member of a template over the ISA's vector
// type, so no symbol is shared between ISA files.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "vec.h"

namespace vlalign::kernels {

template <class V>
struct Dequant4bitRows {
  static uint16_t roundBf16(float value) {
    if (value != value) return 0x7FC0;
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    return static_cast<uint16_t>((bits + ((bits >> 16) & 1) + 0x7FFF) >> 16);
  }

  template <typename Out>
  static Out convert(float value) {
    if constexpr (sizeof(Out) == 2) {
      return roundBf16(value);
    } else {
      return value;
    }
  }

  // Elements [i, end) one at a time (heads and tails that are not whole vectors).
  template <typename Out>
  static void scalarRun(const uint8_t* packed, const float* code, float scale, int64_t i, int64_t end, Out* o) {
    for (; i < end; ++i) {
      const uint8_t byte = packed[i / 2];
      o[i] = convert<Out>(code[i % 2 == 0 ? byte >> 4 : byte & 0xF] * scale);
    }
  }

  // Elements [i, end) of one block, i a multiple of `step` and end - i a multiple of `step`.
  template <typename Out>
  static void vectorRun(const uint8_t* packed, const float* code, float scale, int64_t i, int64_t end, Out* o);

  static constexpr int64_t step =
#if defined(__AVX512F__)
      std::is_same_v<V, Avx512Vec> ? 32 :
#endif
#if defined(__AVX2__) && defined(__FMA__)
      std::is_same_v<V, Avx2Vec> ? 16 :
#endif
      2;

  // out[k] = code[nibble(begin + k)] * absmax[(begin + k) / blocksize], k < count.
  template <typename Out>
  static void run(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize, int64_t begin,
                  int64_t count, Out* out) {
    Out* o = out - begin;  // indexed by element
    const int64_t end = begin + count;
    for (int64_t i = begin; i < end;) {
      const int64_t block = i / blocksize;
      const int64_t blockEnd = std::min(end, (block + 1) * blocksize);
      const float scale = absmax[block];
      const int64_t head = std::min(blockEnd, (i + step - 1) / step * step);
      const int64_t body = head + (blockEnd - head) / step * step;
      scalarRun(packed, code, scale, i, head, o);
      vectorRun(packed, code, scale, head, body, o);
      scalarRun(packed, code, scale, body, blockEnd, o);
      i = blockEnd;
    }
  }

  static void f32(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize, int64_t begin,
                  int64_t count, float* out) {
    run(packed, absmax, code, blocksize, begin, count, out);
  }
  static void bf16(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize, int64_t begin,
                   int64_t count, uint16_t* out) {
    run(packed, absmax, code, blocksize, begin, count, out);
  }
};

template <class V>
template <typename Out>
void Dequant4bitRows<V>::vectorRun(const uint8_t* packed, const float* code, float scale, int64_t i, int64_t end,
                                   Out* o) {
  if (i >= end) return;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<V, Avx512Vec>) {
    const __m512 table = _mm512_mul_ps(_mm512_loadu_ps(code), _mm512_set1_ps(scale));
    __m512i bf16Table = _mm512_setzero_si512();
    if constexpr (sizeof(Out) == 2) {
      const __m512i bits = _mm512_castps_si512(table);
      const __m512i bias = _mm512_add_epi32(_mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1)),
                                            _mm512_set1_epi32(0x7FFF));
      const __mmask16 nan = _mm512_cmp_ps_mask(table, table, _CMP_UNORD_Q);
      bf16Table = _mm512_mask_mov_epi32(_mm512_srli_epi32(_mm512_add_epi32(bits, bias), 16), nan,
                                        _mm512_set1_epi32(0x7FC0));
    }
    const __m512i shifts = _mm512_set_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);
    for (; i < end; i += 32) {
      const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + i / 2));
      const __m512i lo = _mm512_srlv_epi32(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(bytes, bytes)), shifts);
      const __m512i hi = _mm512_srlv_epi32(_mm512_cvtepu8_epi32(_mm_unpackhi_epi8(bytes, bytes)), shifts);
      if constexpr (sizeof(Out) == 2) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + i),
                            _mm512_cvtepi32_epi16(_mm512_permutexvar_epi32(lo, bf16Table)));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + i + 16),
                            _mm512_cvtepi32_epi16(_mm512_permutexvar_epi32(hi, bf16Table)));
      } else {
        _mm512_storeu_ps(o + i, _mm512_permutexvar_ps(lo, table));
        _mm512_storeu_ps(o + i + 16, _mm512_permutexvar_ps(hi, table));
      }
    }
    return;
  }
#endif
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<V, Avx2Vec>) {
    const __m256 scaleV = _mm256_set1_ps(scale);
    __m256 tableLo = _mm256_mul_ps(_mm256_loadu_ps(code), scaleV);
    __m256 tableHi = _mm256_mul_ps(_mm256_loadu_ps(code + 8), scaleV);
    if constexpr (sizeof(Out) == 2) {
      // The rounded bits, kept in float lanes so the same permute + blend reads them.
      auto round = [](__m256 t) {
        const __m256i bits = _mm256_castps_si256(t);
        const __m256i bias = _mm256_add_epi32(_mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1)),
                                              _mm256_set1_epi32(0x7FFF));
        const __m256 rounded = _mm256_castsi256_ps(_mm256_srli_epi32(_mm256_add_epi32(bits, bias), 16));
        return _mm256_blendv_ps(rounded, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FC0)),
                                _mm256_cmp_ps(t, t, _CMP_UNORD_Q));
      };
      tableLo = round(tableLo);
      tableHi = round(tableHi);
    }
    const __m256i shifts = _mm256_set_epi32(0, 4, 0, 4, 0, 4, 0, 4);
    auto lookup = [&](__m128i eightBytes) {
      const __m256i idx = _mm256_srlv_epi32(_mm256_cvtepu8_epi32(eightBytes), shifts);
      // Bit 3 of the index, moved to the sign bit, picks the upper half of the table.
      return _mm256_blendv_ps(_mm256_permutevar8x32_ps(tableLo, idx), _mm256_permutevar8x32_ps(tableHi, idx),
                              _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
    };
    for (; i < end; i += 16) {
      const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed + i / 2));
      const __m128i pairs = _mm_unpacklo_epi8(bytes, bytes);
      const __m256 a = lookup(pairs), b = lookup(_mm_srli_si128(pairs, 8));
      if constexpr (sizeof(Out) == 2) {
        // packus interleaves 128-bit lanes (a0-3 b0-3 a4-7 b4-7); the permute restores the order.
        const __m256i packed16 = _mm256_packus_epi32(_mm256_castps_si256(a), _mm256_castps_si256(b));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + i), _mm256_permute4x64_epi64(packed16, 0xD8));
      } else {
        _mm256_storeu_ps(o + i, a);
        _mm256_storeu_ps(o + i + 8, b);
      }
    }
    return;
  }
#endif
  // Scalar: a 16-entry table per block, two elements per byte.
  Out table[16];
  for (int k = 0; k < 16; ++k) table[k] = convert<Out>(code[k] * scale);
  for (; i < end; i += 2) {
    const uint8_t byte = packed[i / 2];
    o[i] = table[byte >> 4];
    o[i + 1] = table[byte & 0xF];
  }
}

struct Quant4bitKernels {
  const char* isa;
  void (*f32)(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize, int64_t begin,
              int64_t count, float* out);
  void (*bf16)(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize, int64_t begin,
               int64_t count, uint16_t* out);
};

Quant4bitKernels quant4bitKernelsDefault();
Quant4bitKernels quant4bitKernelsAvx2();
Quant4bitKernels quant4bitKernelsAvx512();
const Quant4bitKernels& quant4bitKernels();

}  // namespace vlalign::kernels
