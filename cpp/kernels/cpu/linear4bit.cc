// The QLoRA linear layer on a 4-bit weight: y = x W^T + b and dx = dy W, computed over tiles of W.
// Each tile is dequantised (SIMD, quant4bit_rows.h) into one scratch buffer reused for every tile
// and handed to BLAS, which reads and writes the strided column blocks of y and dx in place (ldc /
// lda), so the extra memory is one tile, never the whole dequantised weight. The weight is frozen:
// no dW. Tiles should be large (the default is 16 MiB): every tile is two parallel regions
// (dequantise, GEMM), and on a loaded machine each fork/join waits for the slowest thread, while
// GEMMs under ~512 rows lose speed to re-packing x per call.
#include <ATen/Parallel.h>

#include "quant4bit.h"

namespace vlalign::kernels {

namespace {

// Rows of W per tile: about `tileBytes` of dequantised weight, at least one row.
int64_t tileRows(const Weight4bit& w, int64_t elementSize, int64_t tileBytes) {
  const int64_t rows = tileBytes / std::max<int64_t>(1, w.inFeatures * elementSize);
  return std::min(w.outFeatures, std::max<int64_t>(1, rows));
}

// Columns of W per tile, the same budget; a multiple of 64 when possible, so every row segment
// starts where the SIMD dequantisation does (when inFeatures is a multiple of 64 too).
int64_t tileCols(const Weight4bit& w, int64_t elementSize, int64_t tileBytes) {
  int64_t cols = tileBytes / std::max<int64_t>(1, w.outFeatures * elementSize);
  if (cols >= 64) cols -= cols % 64;
  return std::min(w.inFeatures, std::max<int64_t>(1, cols));
}

// Dequantises W[r0 : r0 + rows, c0 : c0 + cols] into `tile` ([rows, cols], contiguous), in
// parallel over rows (a task gets at least ~32k elements: tiny tiles are not worth a fork).
void dequantizeTile(const Weight4bit& w, int64_t r0, int64_t rows, int64_t c0, int64_t cols, at::Tensor& tile) {
  const uint8_t* packed = w.packed.data_ptr<uint8_t>();
  const float* absmax = w.absmax.data_ptr<float>();
  const float* code = w.code.data_ptr<float>();
  const int64_t in = w.inFeatures;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / cols);
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, tile.scalar_type(), "linear4bit", [&] {
    scalar_t* out = tile.data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain, [&](int64_t a, int64_t b) {
      if (cols == in) {  // whole rows: one contiguous run
        dequantize4bitRange(packed, absmax, code, w.blocksize, (r0 + a) * in, (b - a) * in, out + a * in);
        return;
      }
      for (int64_t r = a; r < b; ++r) {
        dequantize4bitRange(packed, absmax, code, w.blocksize, (r0 + r) * in + c0, cols, out + r * cols);
      }
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
    dequantizeTile(w, r0, rows, 0, w.inFeatures, tile);
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
  at::Tensor dx = at::empty({dy.size(0), w.inFeatures}, dy.options());
  if (dy.scalar_type() == at::kBFloat16) {
    // bfloat16 GEMMs go to oneDNN, where accumulating into dx (beta = 1) costs a pass per call:
    // tile W by columns instead, so each GEMM writes its own columns of dx once.
    const int64_t step = tileCols(w, dy.element_size(), tileBytes);
    at::Tensor scratch = at::empty({w.outFeatures * step}, dy.options());
    for (int64_t c0 = 0; c0 < w.inFeatures; c0 += step) {
      const int64_t cols = std::min(step, w.inFeatures - c0);
      at::Tensor tile = scratch.narrow(0, 0, w.outFeatures * cols).view({w.outFeatures, cols});
      dequantizeTile(w, 0, w.outFeatures, c0, cols, tile);
      at::Tensor dxCols = dx.narrow(1, c0, cols);
      at::mm_out(dxCols, dy, tile);
    }
    return dx;
  }
  // OpenBLAS accumulates cheaply; row tiles keep its GEMMs (K = tile rows) at full speed.
  const int64_t step = tileRows(w, dy.element_size(), tileBytes);
  at::Tensor scratch = at::empty({step, w.inFeatures}, dy.options());
  for (int64_t r0 = 0; r0 < w.outFeatures; r0 += step) {
    const int64_t rows = std::min(step, w.outFeatures - r0);
    at::Tensor tile = scratch.narrow(0, 0, rows);
    dequantizeTile(w, r0, rows, 0, w.inFeatures, tile);
    // The first tile writes dx (beta = 0): no zero fill and no extra read of dx.
    if (r0 == 0) {
      at::mm_out(dx, dy.narrow(1, 0, rows), tile);
    } else {
      dx.addmm_(dy.narrow(1, r0, rows), tile);
    }
  }
  return dx;
}

}  // namespace vlalign::kernels
