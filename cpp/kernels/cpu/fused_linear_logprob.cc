#include "fused_linear_logprob.h"

#include <ATen/Parallel.h>

#include "../fused_linear_logprob_cuda.h"  // declares the CUDA row kernels under VLALIGN_WITH_CUDA
#include "linear_logprob_rows.h"

namespace vlalign::kernels {

const FloatRowKernels& floatRowKernels();  // dispatch.cc

const char* rowKernelIsa() { return floatRowKernels().isa; }

namespace {

// Row-parallel loop; each row is a full vocabulary sweep, so one row is already a good grain.
template <class F>
void forRows(int64_t rows, F&& body) {
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) body(r);
  });
}

template <typename T>
const T* dataOrNull(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

template <typename T>
void statsRows(at::Tensor& logits, const at::Tensor& bias, const at::Tensor& labels, double temperature,
               LinearLogprobStats& out) {
  const int64_t rows = logits.size(0), n = logits.size(1);
  T* z = logits.data_ptr<T>();
  const T* b = dataOrNull<T>(bias);
  const int64_t* y = labels.data_ptr<int64_t>();
  T *logp = out.logp.data_ptr<T>(), *lse = out.lse.data_ptr<T>();
  T *entropy = out.entropy.data_ptr<T>(), *mean = out.meanLogit.data_ptr<T>();
  const T invT = static_cast<T>(1.0 / temperature);
  forRows(rows, [&](int64_t r) {
    RowStats<T> s;
    if constexpr (std::is_same_v<T, float>) {
      s = floatRowKernels().stats(z + r * n, b, n, invT, y[r]);
    } else {
      s = LinearLogprobRows<ScalarVec<T>>::stats(z + r * n, b, n, invT, y[r]);
    }
    logp[r] = s.logp, lse[r] = s.lse, entropy[r] = s.entropy, mean[r] = s.meanLogit;
  });
}

template <typename T>
void gradRows(at::Tensor& logits, const at::Tensor& labels, double temperature, const LinearLogprobStats& stats,
              const at::Tensor& gLogp, const at::Tensor& gEntropy, const at::Tensor& gMean) {
  const int64_t rows = logits.size(0), n = logits.size(1);
  T* z = logits.data_ptr<T>();
  const int64_t* y = labels.data_ptr<int64_t>();
  const T *lse = stats.lse.data_ptr<T>(), *entropy = stats.entropy.data_ptr<T>();
  const T *c = dataOrNull<T>(gLogp), *e = dataOrNull<T>(gEntropy), *m = dataOrNull<T>(gMean);
  const T invT = static_cast<T>(1.0 / temperature);
  forRows(rows, [&](int64_t r) {
    const T cr = c ? c[r] : T(0), er = e ? e[r] : T(0), mr = m ? m[r] : T(0);
    if constexpr (std::is_same_v<T, float>) {
      floatRowKernels().grad(z + r * n, n, invT, y[r], lse[r], entropy[r], cr, er, mr);
    } else {
      LinearLogprobRows<ScalarVec<T>>::grad(z + r * n, n, invT, y[r], lse[r], entropy[r], cr, er, mr);
    }
  });
}

// Vocabulary columns whose gradient block has any entry of magnitude >= `threshold`, as runs of
// whole 128-column tiles, merged so the GEMMs stay large. Cut Cross-Entropy's filtering: a tile
// below the threshold in every row adds less than the threshold per element to dx and dW, beneath
// what those sums resolve, and is skipped. threshold 0 keeps everything (the exact path).
std::vector<std::pair<int64_t, int64_t>> keptColumns(const at::Tensor& block, double threshold) {
  const int64_t vocab = block.size(1);
  if (threshold <= 0 || block.size(0) == 0) return {{0, vocab}};
  constexpr int64_t kTile = 128;
  const int64_t tiles = (vocab + kTile - 1) / kTile;
  at::Tensor columnMax = block.abs().amax(0);
  if (tiles * kTile != vocab) columnMax = at::constant_pad_nd(columnMax, {0, tiles * kTile - vocab}, 0);
  const at::Tensor keep = columnMax.view({tiles, kTile}).amax(1).ge(threshold).to(at::kCPU).contiguous();
  const bool* k = keep.data_ptr<bool>();
  std::vector<std::pair<int64_t, int64_t>> runs;
  for (int64_t t = 0; t < tiles; ++t) {
    if (!k[t]) continue;
    const int64_t start = t * kTile, end = std::min(vocab, start + kTile);
    if (!runs.empty() && runs.back().first + runs.back().second == start) runs.back().second += end - start;
    else runs.emplace_back(start, end - start);
  }
  return runs;
}

// A per-token upstream gradient as a contiguous tensor of the compute dtype, or undefined.
at::Tensor perToken(const at::Tensor& g, int64_t rows, at::ScalarType dtype, const char* name) {
  if (!g.defined()) return g;
  TORCH_CHECK(g.dim() == 1 && g.size(0) == rows, "fused linear log-softmax: ", name, " must have shape [", rows,
              "], got ", g.sizes());
  return g.to(dtype).contiguous();
}

}  // namespace

void checkLinearLogprobInputs(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                              const at::Tensor& labels, double temperature) {
  TORCH_CHECK(x.dim() == 2, "fused linear log-softmax: hidden states must be [N, H], got ", x.sizes());
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) == x.size(1), "fused linear log-softmax: weight must be [V, ",
              x.size(1), "] for hidden states ", x.sizes(), ", got ", weight.sizes());
  TORCH_CHECK(x.scalar_type() == weight.scalar_type(), "fused linear log-softmax: hidden states (",
              x.scalar_type(), ") and weight (", weight.scalar_type(), ") must share a dtype");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "fused linear log-softmax: float32 or float64 expected, got ", x.scalar_type());
#ifdef VLALIGN_WITH_CUDA
  TORCH_CHECK((x.is_cpu() || x.is_cuda()) && weight.device() == x.device(),
              "fused linear log-softmax: hidden states and weight must be on one CPU or CUDA device, got ", x.device(),
              " and ", weight.device());
#else
  TORCH_CHECK(x.device().is_cpu() && weight.device().is_cpu(),
              "fused linear log-softmax: CPU tensors expected here (CUDA needs a CUDA build)");
#endif
  TORCH_CHECK(labels.device() == x.device(), "fused linear log-softmax: labels must be on ", x.device(),
              " like the hidden states, got ", labels.device());
  if (bias) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0), "fused linear log-softmax: bias must be [",
                weight.size(0), "], got ", bias->sizes());
    TORCH_CHECK(bias->device() == x.device(), "fused linear log-softmax: bias must be on ", x.device(),
                " like the hidden states, got ", bias->device());
  }
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == x.size(0) && labels.scalar_type() == at::kLong,
              "fused linear log-softmax: labels must be int64 [", x.size(0), "], got ", labels.scalar_type(), " ",
              labels.sizes());
  TORCH_CHECK(temperature > 0, "fused linear log-softmax: temperature must be > 0, got ", temperature);
  if (labels.numel() > 0) {
    const int64_t top = labels.max().item<int64_t>();
    TORCH_CHECK_INDEX(top < weight.size(0), "fused linear log-softmax: label ", top,
                      " is out of range for a vocabulary of ", weight.size(0));
  }
}

LinearLogprobStats linearLogprobStatsChunk(const at::Tensor& x, const at::Tensor& weight,
                                           const c10::optional<at::Tensor>& bias, const at::Tensor& labels,
                                           double temperature, at::Tensor& logits) {
  at::NoGradGuard noGrad;
  const int64_t rows = x.size(0), vocab = weight.size(0);
  if (!logits.defined() || logits.size(0) < rows || logits.size(1) != vocab || logits.scalar_type() != x.scalar_type()) {
    logits = at::empty({rows, vocab}, x.options());
  }
  at::Tensor block = logits.narrow(0, 0, rows);
  at::mm_out(block, x, weight.t());
  const auto options = x.options();
  LinearLogprobStats out{at::empty({rows}, options), at::empty({rows}, options), at::empty({rows}, options),
                         at::empty({rows}, options)};
  const at::Tensor b = bias ? bias->contiguous() : at::Tensor();
  const at::Tensor y = labels.contiguous();
#ifdef VLALIGN_WITH_CUDA
  if (block.is_cuda()) {
    cudaStatsRows(block, b, y, temperature, out);
    return out;
  }
#endif
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "linearLogprobStats", [&] { statsRows<scalar_t>(block, b, y, temperature, out); });
  return out;
}

at::Tensor linearLogprobGradChunk(at::Tensor& logits, const at::Tensor& x, const at::Tensor& weight,
                                  const at::Tensor& labels, double temperature, const LinearLogprobStats& stats,
                                  const at::Tensor& gradLogp, const at::Tensor& gradEntropy,
                                  const at::Tensor& gradMeanLogit, at::Tensor& gradWeight, at::Tensor& gradBias,
                                  double gradFilter) {
  at::NoGradGuard noGrad;
  const int64_t rows = x.size(0);
  const auto dtype = x.scalar_type();
  at::Tensor block = logits.narrow(0, 0, rows);
  const at::Tensor y = labels.contiguous();
  const at::Tensor c = perToken(gradLogp, rows, dtype, "gradient of logp");
  const at::Tensor e = perToken(gradEntropy, rows, dtype, "gradient of entropy");
  const at::Tensor m = perToken(gradMeanLogit, rows, dtype, "gradient of meanLogit");
#ifdef VLALIGN_WITH_CUDA
  if (block.is_cuda()) {
    cudaGradRows(block, y, temperature, stats, c, e, m);
  } else
#endif
  AT_DISPATCH_FLOATING_TYPES(dtype, "linearLogprobGrad", [&] { gradRows<scalar_t>(block, y, temperature, stats, c, e, m); });
  at::Tensor gradX = at::zeros({rows, x.size(1)}, x.options());
  for (const auto& [start, length] : keptColumns(block, gradFilter)) {
    const at::Tensor g = block.narrow(1, start, length);
    gradX.addmm_(g, weight.narrow(0, start, length));
    gradWeight.narrow(0, start, length).addmm_(g.t(), x);
    if (gradBias.defined()) gradBias.narrow(0, start, length).add_(g.sum(0));
  }
  return gradX;
}

LinearLogprobStats linearLogprobStats(const at::Tensor& x, const at::Tensor& weight,
                                      const c10::optional<at::Tensor>& bias, const at::Tensor& labels,
                                      double temperature, int64_t chunkRows) {
  checkLinearLogprobInputs(x, weight, bias, labels, temperature);
  TORCH_CHECK(chunkRows > 0, "fused linear log-softmax: chunk size must be positive, got ", chunkRows);
  const int64_t n = x.size(0);
  const auto options = x.options();
  LinearLogprobStats out{at::empty({n}, options), at::empty({n}, options), at::empty({n}, options),
                         at::empty({n}, options)};
  at::Tensor logits;
  const at::Tensor xc = x.contiguous(), wc = weight.contiguous();
  for (int64_t start = 0; start < n; start += chunkRows) {
    const int64_t rows = std::min(chunkRows, n - start);
    const LinearLogprobStats s =
        linearLogprobStatsChunk(xc.narrow(0, start, rows), wc, bias, labels.narrow(0, start, rows), temperature, logits);
    out.logp.narrow(0, start, rows).copy_(s.logp);
    out.entropy.narrow(0, start, rows).copy_(s.entropy);
    out.lse.narrow(0, start, rows).copy_(s.lse);
    out.meanLogit.narrow(0, start, rows).copy_(s.meanLogit);
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linearLogprobBackward(
    const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias, const at::Tensor& labels,
    double temperature, int64_t chunkRows, const at::Tensor& gradLogp, const at::Tensor& gradEntropy,
    const at::Tensor& gradMeanLogit, double gradFilter) {
  at::NoGradGuard noGrad;
  const int64_t n = x.size(0);
  const at::Tensor xc = x.contiguous(), wc = weight.contiguous();
  at::Tensor gradX = at::empty_like(xc);
  at::Tensor gradWeight = at::zeros_like(wc);
  at::Tensor gradBias = bias ? at::zeros_like(*bias) : at::Tensor();
  auto slice = [](const at::Tensor& t, int64_t start, int64_t rows) { return t.defined() ? t.narrow(0, start, rows) : t; };
  at::Tensor logits;
  for (int64_t start = 0; start < n; start += chunkRows) {
    const int64_t rows = std::min(chunkRows, n - start);
    const at::Tensor xs = xc.narrow(0, start, rows), ys = labels.narrow(0, start, rows);
    const LinearLogprobStats s = linearLogprobStatsChunk(xs, wc, bias, ys, temperature, logits);
    gradX.narrow(0, start, rows)
        .copy_(linearLogprobGradChunk(logits, xs, wc, ys, temperature, s, slice(gradLogp, start, rows),
                                      slice(gradEntropy, start, rows), slice(gradMeanLogit, start, rows), gradWeight,
                                      gradBias, gradFilter));
  }
  return {gradX, gradWeight, gradBias};
}

}  // namespace vlalign::kernels
