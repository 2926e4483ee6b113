// Blockwise quantisation as bitsandbytes defines it (backends/default/ops.py, the reference every
// backend is tested against): absmax per block, values scaled by its float32 reciprocal (the last,
// partial block divides by its absmax instead, and stores that absmax clamped to 1e-38, as
// bitsandbytes does), clamped to [-1, 1], and mapped to the nearest code through float32
// midpoints with ties to the lower code. Dequantisation reads per-block scaled copies of the code
// (code[i] * absmax, the same float32 product bitsandbytes computes per element).
#include "quant4bit.h"

#include <ATen/Parallel.h>

#include "quant4bit_rows.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

namespace vlalign::kernels {

namespace {

constexpr float kMinScale = 1e-38f;  // bitsandbytes' absmax.clamp(min=1e-38)

// The published NF4 values (QLoRA; bitsandbytes' get_4bit_type("nf4")).
constexpr std::array<float, 16> kNf4 = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
    0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
    0.7229568362236023f, 1.0f};
// FP4 (1 sign, 2 exponent, 1 mantissa bit) in bit-pattern order, before division by its max 12.
constexpr std::array<float, 16> kFp4 = {0.0f,  0.0625f,  8.0f,  12.0f,  4.0f,  6.0f,  2.0f,  3.0f,
                                        -0.0f, -0.0625f, -8.0f, -12.0f, -4.0f, -6.0f, -2.0f, -3.0f};

// Nearest-code lookup: `mid` holds the midpoints between consecutive sorted codes and `order` the
// code index of each sorted position. lower_bound counts midpoints strictly below the value, which
// is torch.bucketize(value, mid, right=False).
struct NearestCode {
  std::vector<float> mid;
  std::vector<uint8_t> order;

  explicit NearestCode(const at::Tensor& code) {
    const at::Tensor c = code.to(at::kFloat).contiguous();
    const float* v = c.data_ptr<float>();
    const int64_t n = c.numel();
    std::vector<int64_t> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    // Stable, so fp4's +0 (index 0) sorts before -0 (index 8), as torch.argsort does.
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return v[a] < v[b]; });
    for (int64_t i = 0; i + 1 < n; ++i) mid.push_back((v[idx[i]] + v[idx[i + 1]]) / 2.0f);
    for (int64_t i : idx) order.push_back(static_cast<uint8_t>(i));
  }

  uint8_t operator()(float scaled) const {
    return order[std::lower_bound(mid.begin(), mid.end(), scaled) - mid.begin()];
  }
};

float clampUnit(float v) { return std::min(1.0f, std::max(-1.0f, v)); }

// Quantises each block of `flat` (float32) with `nearest`; emit(i, code) stores element i's code.
template <typename Emit>
at::Tensor quantizeBlocks(const at::Tensor& flat, int64_t blocksize, const NearestCode& nearest, Emit emit) {
  const int64_t n = flat.numel();
  const int64_t blocks = (n + blocksize - 1) / blocksize;
  at::Tensor absmax = at::empty({blocks}, at::kFloat);
  const float* x = flat.data_ptr<float>();
  float* am = absmax.data_ptr<float>();
  at::parallel_for(0, blocks, 16, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t start = b * blocksize;
      const int64_t end = std::min(n, start + blocksize);
      float m = 0.0f;
      for (int64_t i = start; i < end; ++i) m = std::max(m, std::fabs(x[i]));
      const float scale = std::max(m, kMinScale);
      if (end - start == blocksize) {
        am[b] = m;
        const float inv = 1.0f / scale;
        for (int64_t i = start; i < end; ++i) emit(i, nearest(clampUnit(x[i] * inv)));
      } else {
        am[b] = scale;
        for (int64_t i = start; i < end; ++i) emit(i, nearest(clampUnit(x[i] / scale)));
      }
    }
  });
  return absmax;
}

void checkBlocksize(int64_t blocksize) {
  TORCH_CHECK(blocksize >= 32 && blocksize <= 4096 && (blocksize & (blocksize - 1)) == 0,
              "blocksize must be a power of two from 32 to 4096, got ", blocksize);
}

}  // namespace

at::Tensor code4bit(const std::string& quantType) {
  TORCH_CHECK(quantType == "nf4" || quantType == "fp4", "quantType must be 'nf4' or 'fp4', got '", quantType, "'");
  const auto& table = quantType == "nf4" ? kNf4 : kFp4;
  at::Tensor code = at::empty({16}, at::kFloat);
  std::copy(table.begin(), table.end(), code.data_ptr<float>());
  // bitsandbytes normalises by the largest magnitude (a float32 division; nf4's is already 1).
  return code.div_(code.abs().max());
}

at::Tensor dynamicMap8bit() {
  // create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8) with the same float32 ops:
  // for exponent i, the means of linspace(0.1, 1, 2^i + 1) times +-10^(i - 6), then 0 and 1.
  std::vector<float> data;
  for (int i = 0; i < 7; ++i) {
    const at::Tensor bounds = at::linspace(0.1, 1, (int64_t{1} << i) + 1, at::kFloat);
    const int64_t k = bounds.numel();
    const at::Tensor means = (bounds.slice(0, 0, k - 1) + bounds.slice(0, 1, k)) / 2.0;
    const double scale = std::pow(10.0, -6 + i);
    for (const at::Tensor& part : {means * scale, means * -scale}) {
      const float* p = part.contiguous().data_ptr<float>();
      data.insert(data.end(), p, p + part.numel());
    }
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  std::sort(data.begin(), data.end());
  TORCH_INTERNAL_ASSERT(data.size() == 256);
  at::Tensor map = at::empty({256}, at::kFloat);
  std::copy(data.begin(), data.end(), map.data_ptr<float>());
  return map;
}

Blockwise quantize4bit(const at::Tensor& weight, const at::Tensor& code, int64_t blocksize) {
  checkBlocksize(blocksize);
  TORCH_CHECK(weight.scalar_type() == at::kFloat || weight.scalar_type() == at::kBFloat16 ||
                  weight.scalar_type() == at::kHalf,
              "quantize4bit: weight must be float32, bfloat16 or float16, got ", weight.scalar_type());
  TORCH_CHECK(weight.numel() > 0, "quantize4bit: weight is empty");
  TORCH_CHECK(code.numel() == 16, "quantize4bit: code must have 16 entries, got ", code.numel());
  const at::Tensor flat = weight.reshape(-1).to(at::kFloat).contiguous();
  const int64_t n = flat.numel();
  const NearestCode nearest(code);
  // Blocks have an even size, so no byte straddles two blocks (and threads).
  at::Tensor packed = at::empty({(n + 1) / 2, 1}, at::kByte);
  uint8_t* p = packed.data_ptr<uint8_t>();
  at::Tensor absmax = quantizeBlocks(flat, blocksize, nearest, [&](int64_t i, uint8_t c) {
    if (i % 2 == 0) {
      p[i / 2] = static_cast<uint8_t>(c << 4);
    } else {
      p[i / 2] |= c;
    }
  });
  // An odd count pads the last byte's low nibble with the code of 0, as bitsandbytes does.
  if (n % 2 == 1) p[n / 2] |= nearest(0.0f);
  return {packed, absmax};
}

Blockwise quantizeBlockwise8(const at::Tensor& values, const at::Tensor& code, int64_t blocksize) {
  TORCH_CHECK(blocksize > 0, "quantizeBlockwise8: blocksize must be positive, got ", blocksize);
  TORCH_CHECK(code.numel() == 256, "quantizeBlockwise8: code must have 256 entries, got ", code.numel());
  const at::Tensor flat = values.reshape(-1).to(at::kFloat).contiguous();
  const NearestCode nearest(code);
  at::Tensor codes = at::empty(values.sizes(), at::kByte);
  uint8_t* c = codes.data_ptr<uint8_t>();
  at::Tensor absmax = quantizeBlocks(flat, blocksize, nearest, [&](int64_t i, uint8_t q) { c[i] = q; });
  return {codes, absmax};
}

at::Tensor dequantizeBlockwise8(const at::Tensor& codes, const at::Tensor& absmax, const at::Tensor& code,
                                int64_t blocksize) {
  TORCH_CHECK(codes.scalar_type() == at::kByte, "dequantizeBlockwise8: codes must be uint8, got ", codes.scalar_type());
  const int64_t n = codes.numel();
  TORCH_CHECK(absmax.numel() == (n + blocksize - 1) / blocksize, "dequantizeBlockwise8: ", n, " codes need ",
              (n + blocksize - 1) / blocksize, " absmax values for blocksize ", blocksize, ", got ", absmax.numel());
  TORCH_CHECK(code.numel() == 256, "dequantizeBlockwise8: code must have 256 entries, got ", code.numel());
  const at::Tensor q = codes.contiguous();
  const at::Tensor am = absmax.to(at::kFloat).contiguous();
  const at::Tensor table = code.to(at::kFloat).contiguous();
  at::Tensor out = at::empty({n}, at::kFloat);
  const uint8_t* qp = q.data_ptr<uint8_t>();
  const float* ap = am.data_ptr<float>();
  const float* tp = table.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, n, 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) op[i] = tp[qp[i]] * ap[i / blocksize];
  });
  return out.view(codes.sizes());
}

template <typename Out>
void dequantize4bitRange(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize,
                         int64_t begin, int64_t count, Out* out) {
  // float32 and bfloat16 (what linear4bit computes in) go through the SIMD kernels, which give
  // the same bits as the loop below.
  if constexpr (std::is_same_v<Out, float>) {
    return quant4bitKernels().f32(packed, absmax, code, blocksize, begin, count, out);
  } else if constexpr (std::is_same_v<Out, c10::BFloat16>) {
    static_assert(sizeof(c10::BFloat16) == sizeof(uint16_t));
    return quant4bitKernels().bf16(packed, absmax, code, blocksize, begin, count, reinterpret_cast<uint16_t*>(out));
  }
  const int64_t end = begin + count;
  int64_t i = begin;
  while (i < end) {
    const int64_t block = i / blocksize;
    const int64_t blockEnd = std::min(end, (block + 1) * blocksize);
    std::array<Out, 16> scaled;  // code[k] * absmax: the float32 product, then rounded to Out
    for (int k = 0; k < 16; ++k) scaled[k] = static_cast<Out>(code[k] * absmax[block]);
    Out* o = out + (i - begin);
    if (i % 2 == 1 && i < blockEnd) *o++ = scaled[packed[i++ / 2] & 0xF];
    // Two elements per byte: high nibble first.
    for (; i + 1 < blockEnd; i += 2) {
      const uint8_t byte = packed[i / 2];
      o[0] = scaled[byte >> 4];
      o[1] = scaled[byte & 0xF];
      o += 2;
    }
    if (i < blockEnd) *o = scaled[packed[i++ / 2] >> 4];
  }
}

template void dequantize4bitRange<float>(const uint8_t*, const float*, const float*, int64_t, int64_t, int64_t, float*);
template void dequantize4bitRange<double>(const uint8_t*, const float*, const float*, int64_t, int64_t, int64_t,
                                          double*);
template void dequantize4bitRange<c10::BFloat16>(const uint8_t*, const float*, const float*, int64_t, int64_t, int64_t,
                                                 c10::BFloat16*);
template void dequantize4bitRange<c10::Half>(const uint8_t*, const float*, const float*, int64_t, int64_t, int64_t,
                                             c10::Half*);

at::Tensor dequantize4bit(const at::Tensor& packed, const at::Tensor& absmax, const at::Tensor& code,
                          int64_t blocksize, at::IntArrayRef shape, at::ScalarType dtype) {
  checkBlocksize(blocksize);
  const int64_t n = c10::multiply_integers(shape);
  TORCH_CHECK(packed.scalar_type() == at::kByte && packed.numel() == (n + 1) / 2,
              "dequantize4bit: packed must be uint8 with ", (n + 1) / 2, " bytes for shape ", shape, ", got ",
              packed.scalar_type(), " with ", packed.numel());
  TORCH_CHECK(absmax.scalar_type() == at::kFloat && absmax.numel() == (n + blocksize - 1) / blocksize,
              "dequantize4bit: absmax must be float32 with ", (n + blocksize - 1) / blocksize, " values, got ",
              absmax.scalar_type(), " with ", absmax.numel());
  TORCH_CHECK(code.numel() == 16, "dequantize4bit: code must have 16 entries, got ", code.numel());
  const at::Tensor p = packed.contiguous(), am = absmax.contiguous(), c = code.to(at::kFloat).contiguous();
  at::Tensor out = at::empty(shape, at::TensorOptions().dtype(dtype));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, dtype, "dequantize4bit", [&] {
    scalar_t* o = out.data_ptr<scalar_t>();
    // Chunks of whole blocks (even sized), so each thread starts on a byte boundary.
    const int64_t blocks = (n + blocksize - 1) / blocksize;
    at::parallel_for(0, blocks, 64, [&](int64_t b0, int64_t b1) {
      const int64_t begin = b0 * blocksize;
      const int64_t count = std::min(n, b1 * blocksize) - begin;
      dequantize4bitRange(p.data_ptr<uint8_t>(), am.data_ptr<float>(), c.data_ptr<float>(), blocksize, begin, count,
                          o + begin);
    });
  });
  return out;
}

}  // namespace vlalign::kernels
