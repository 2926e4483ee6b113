// bitsandbytes-compatible 4-bit (NF4 / FP4) and 8-bit dynamic blockwise quantisation, and the
// QLoRA linear layer that multiplies by a 4-bit weight without ever dequantising all of it.
//
// Layout (bitsandbytes' quantize_4bit): the row-major weight is flattened and cut into blocks of
// `blocksize` elements; each block stores its absmax (fp32) and one 4-bit code index per element,
// two per byte, the first element in the high nibble: packed is uint8 [ceil(n/2), 1]. Values map
// to the nearest code through midpoints between sorted codes; a value exactly on a midpoint takes
// the lower code (torch.bucketize, right=False). Double quantisation stores the absmax minus its
// mean as 8-bit codes of the signed dynamic map, blockwise with an fp32 absmax per 256 values.
#pragma once

#include <torch/torch.h>

#include <string>

namespace vlalign::kernels {

// The 16-entry code of "nf4" or "fp4" (fp4 in bit-pattern order, as bitsandbytes' get_4bit_type).
at::Tensor code4bit(const std::string& quantType);
// bitsandbytes' create_dynamic_map(signed=True): 256 sorted float32 values in [-1, 1].
at::Tensor dynamicMap8bit();

struct Blockwise {
  at::Tensor codes;   // uint8: packed [ceil(n/2), 1] for 4 bits, the input's shape for 8 bits
  at::Tensor absmax;  // float32 [blocks]
};

// 4-bit codes of `weight` (float32 / bf16 / f16, any shape) with a 16-entry `code`.
Blockwise quantize4bit(const at::Tensor& weight, const at::Tensor& code, int64_t blocksize);
// 8-bit codes of `values` (float32) with a sorted 256-entry `code` (bitsandbytes' quantize_blockwise).
Blockwise quantizeBlockwise8(const at::Tensor& values, const at::Tensor& code, int64_t blocksize);
// code[codes] * absmax per block, float32 (bitsandbytes' dequantize_blockwise).
at::Tensor dequantizeBlockwise8(const at::Tensor& codes, const at::Tensor& absmax, const at::Tensor& code,
                                int64_t blocksize);

// Dequantises flat elements [begin, begin + count) into `out` (float, double, BFloat16 or Half):
// code[nibble] * absmax[block] in float32, then rounded to the output type.
template <typename Out>
void dequantize4bitRange(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize,
                         int64_t begin, int64_t count, Out* out);

// The whole weight in `dtype`, shape `shape` (absmax already restored from double quantisation).
at::Tensor dequantize4bit(const at::Tensor& packed, const at::Tensor& absmax, const at::Tensor& code,
                          int64_t blocksize, at::IntArrayRef shape, at::ScalarType dtype);

// The quantised weight of a linear layer, [outFeatures, inFeatures] once dequantised.
struct Weight4bit {
  at::Tensor packed, absmax, code;  // absmax float32 [blocks] (restored)
  int64_t blocksize, outFeatures, inFeatures;
};

void checkWeight4bit(const Weight4bit& w);
// y = x W^T (+ bias), x [N, in] float32 / float64 / bf16, W dequantised a tile of output rows at a
// time into one reused scratch buffer of about `tileBytes`.
at::Tensor linear4bitForward(const at::Tensor& x, const Weight4bit& w, const c10::optional<at::Tensor>& bias,
                             int64_t tileBytes);
// dx = dy W, dy [N, out], tiled the same way (bfloat16: tiles of W's columns, see linear4bit.cc).
at::Tensor linear4bitBackwardInput(const at::Tensor& dy, const Weight4bit& w, int64_t tileBytes);

}  // namespace vlalign::kernels
