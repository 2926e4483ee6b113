// The QLoRA linear layer on a 4-bit weight: y = x W^T + b and dx = dy W, computed over tiles of W's
// output rows. Each tile is dequantised into one scratch buffer reused for every tile and handed
// to BLAS, which reads and writes the strided column blocks of y and dy in place (ldc / lda), so
// the extra memory is one tile, never the whole dequantised weight. The weight is frozen: no dW.
#include <ATen/Parallel.h>

#include "quant4bit.h"

namespace vlalign::kernels {

namespace {

// Rows of W per tile: about `tileBytes` of dequantised weight, at least one row.
int64_t tileRows(const Weight4bit& w, int64_t elementSize, int64_t tileBytes) {
  const int64_t rows = tileBytes / std::max<int64_t>(1, w.inFeatures * elementSize);
  return std::min(w.outFeatures, std::max<int64_t>(1, rows));
}

// Dequantises W rows [row0, row0 + rows) into `scratch` ([>= rows, in], contiguous), in parallel
// over rows.
void dequantizeRows(const Weight4bit& w, int64_t row0, int64_t rows, at::Tensor& scratch) {
  const uint8_t* packed = w.packed.data_ptr<uint8_t>();
  const float* absmax = w.absmax.data_ptr<float>();
  const float* code = w.code.data_ptr<float>();
  const int64_t in = w.inFeatures;
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, scratch.scalar_type(), "linear4bit", [&] {
    scalar_t* out = scratch.data_ptr<scalar_t>();
    at::parallel_for(0, rows, 1, [&](int64_t r0, int64_t r1) {
      dequantize4bitRange(packed, absmax, code, w.blocksize, (row0 + r0) * in, (r1 - r0) * in, out + r0 * in);
    });
  });
}

}  // namespace

void checkWeight4bit(const Weight4bit& w) {
  const int64_t n = w.outFeatures * w.inFeatures;
  TORCH_CHECK(w.outFeatures > 0 && w.inFeatures > 0, "linear4bit: the weight shape must be positive, got [",
              w.outFeatures, ", ", w.inFeatures, "]");
  TORCH_CHECK(w.packed.scalar_type() == at::kByte && w.packed.numel() == (n + 1) / 2 && w.packed.is_contiguous(),
              "linear4bit: packed must be contiguous uint8 with ", (n + 1) / 2, " bytes for a [", w.outFeatures, ", ",
              w.inFeatures, "] weight, got ", w.packed.scalar_type(), " with ", w.packed.numel());
  TORCH_CHECK(w.absmax.scalar_type() == at::kFloat && w.absmax.is_contiguous() &&
                  w.absmax.numel() == (n + w.blocksize - 1) / w.blocksize,
              "linear4bit: absmax must be contiguous float32 with ", (n + w.blocksize - 1) / w.blocksize,
              " values, got ", w.absmax.scalar_type(), " with ", w.absmax.numel());
  TORCH_CHECK(w.code.scalar_type() == at::kFloat && w.code.is_contiguous() && w.code.numel() == 16,
              "linear4bit: code must be 16 contiguous float32 values");
  TORCH_CHECK(w.packed.device().is_cpu(), "linear4bit: the CPU kernel needs CPU tensors");
}

at::Tensor linear4bitForward(const at::Tensor& x, const Weight4bit& w, const c10::optional<at::Tensor>& bias,
                             int64_t tileBytes) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == w.inFeatures, "linear4bit: x must be [N, ", w.inFeatures, "], got ",
              x.sizes());
  const auto dtype = x.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kBFloat16,
              "linear4bit: x must be float32, float64 or bfloat16, got ", dtype);
  at::Tensor y = at::empty({x.size(0), w.outFeatures}, x.options());
  const int64_t step = tileRows(w, x.element_size(), tileBytes);
  at::Tensor scratch = at::empty({step, w.inFeatures}, x.options());
  for (int64_t r0 = 0; r0 < w.outFeatures; r0 += step) {
    const int64_t rows = std::min(step, w.outFeatures - r0);
    at::Tensor tile = scratch.narrow(0, 0, rows);
    dequantizeRows(w, r0, rows, tile);
    at::Tensor yCols = y.narrow(1, r0, rows);
    if (bias) {
      at::addmm_out(yCols, bias->narrow(0, r0, rows), x, tile.t());
    } else {
      at::mm_out(yCols, x, tile.t());
    }
  }
  return y;
}

at::Tensor linear4bitBackwardInput(const at::Tensor& dy, const Weight4bit& w, int64_t tileBytes) {
  TORCH_CHECK(dy.dim() == 2 && dy.size(1) == w.outFeatures, "linear4bit backward: dy must be [N, ", w.outFeatures,
              "], got ", dy.sizes());
  at::Tensor dx = at::zeros({dy.size(0), w.inFeatures}, dy.options());
  const int64_t step = tileRows(w, dy.element_size(), tileBytes);
  at::Tensor scratch = at::empty({step, w.inFeatures}, dy.options());
  for (int64_t r0 = 0; r0 < w.outFeatures; r0 += step) {
    const int64_t rows = std::min(step, w.outFeatures - r0);
    at::Tensor tile = scratch.narrow(0, 0, rows);
    dequantizeRows(w, r0, rows, tile);
    dx.addmm_(dy.narrow(1, r0, rows), tile);
  }
  return dx;
}

}  // namespace vlalign::kernels
