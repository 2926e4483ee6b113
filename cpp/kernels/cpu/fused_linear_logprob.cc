#include "fused_linear_logprob.h"

#include <ATen/Parallel.h>

#include "../fused_linear_logprob_cuda.h"  // declares the CUDA row kernels under VLALIGN_WITH_CUDA
#include "linear_logprob_rows.h"

#include <algorithm>
#include <tuple>
#include <vector>

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

// Cut Cross-Entropy's observation, per element: where the softmax is peaked, nearly every logit
// gradient of a chunk is far below what the dx and dW sums resolve. When at most kSparseDensity of
// the block reaches `threshold`, only those entries are applied (as row gathers and scatters, cost
// O(entries x H) instead of O(rows x V x H)); otherwise the caller runs the dense GEMMs on all of it.
constexpr double kSparseDensity = 0.01;

struct SignificantEntries {
  at::Tensor rows, columns, values;
};

template <typename T>
c10::optional<SignificantEntries> significantEntries(const at::Tensor& block, double threshold) {
  const int64_t rows = block.size(0), n = block.size(1);
  const T* g = block.data_ptr<T>();
  const T cut = static_cast<T>(threshold);
  const int64_t limit = static_cast<int64_t>(kSparseDensity * static_cast<double>(rows * n));
  // A dense block shows itself in its first rows: give up before sweeping all of it.
  const int64_t probeRows = std::min<int64_t>(rows, 4);
  int64_t probed = 0;
  for (int64_t k = 0; k < probeRows * n; ++k) probed += std::abs(g[k]) >= cut;
  if (probed > static_cast<int64_t>(kSparseDensity * static_cast<double>(probeRows * n))) return c10::nullopt;
  std::vector<int64_t> counts(rows + 1, 0);
  forRows(rows, [&](int64_t r) {
    int64_t k = 0;
    for (int64_t v = 0; v < n; ++v) k += std::abs(g[r * n + v]) >= cut;
    counts[r + 1] = k;
  });
  for (int64_t r = 0; r < rows; ++r) counts[r + 1] += counts[r];
  if (counts[rows] > limit) return c10::nullopt;
  SignificantEntries out{at::empty({counts[rows]}, block.options().dtype(at::kLong)),
                         at::empty({counts[rows]}, block.options().dtype(at::kLong)),
                         at::empty({counts[rows]}, block.options())};
  int64_t *outRows = out.rows.data_ptr<int64_t>(), *outColumns = out.columns.data_ptr<int64_t>();
  T* outValues = out.values.data_ptr<T>();
  forRows(rows, [&](int64_t r) {
    int64_t k = counts[r];
    for (int64_t v = 0; v < n; ++v) {
      const T value = g[r * n + v];
      if (std::abs(value) < cut) continue;
      outRows[k] = r, outColumns[k] = v, outValues[k] = value;
      ++k;
    }
  });
  return out;
}

// dx_r += g W[v], dW[v] += g x_r, db[v] += g for each entry (r, v, g).
void applyEntries(const SignificantEntries& e, const at::Tensor& x, const at::Tensor& weight, at::Tensor& gradX,
                  at::Tensor& gradWeight, at::Tensor& gradBias) {
  // In batches, so the gathered rows ([batch, H]) stay small whatever the entry count.
  constexpr int64_t kBatch = 4096;
  const int64_t total = e.values.numel();
  for (int64_t start = 0; start < total; start += kBatch) {
    const int64_t count = std::min(kBatch, total - start);
    const at::Tensor rows = e.rows.narrow(0, start, count), columns = e.columns.narrow(0, start, count);
    const at::Tensor values = e.values.narrow(0, start, count);
    const at::Tensor g = values.unsqueeze(1);
    gradX.index_add_(0, rows, weight.index_select(0, columns).mul_(g));
    gradWeight.index_add_(0, columns, x.index_select(0, rows).mul_(g));
    if (gradBias.defined()) gradBias.index_add_(0, columns, values);
  }
}

// Moves the one-hot part c_r/T at (r, label_r) out of the gradient block and applies it directly:
// dx_r += c_r/T W[label_r], dW[label_r] += c_r/T x_r, db[label_r] += c_r/T.
void applyLabelTerm(at::Tensor& block, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& labels,
                    const at::Tensor& scaled, at::Tensor& gradX, at::Tensor& gradWeight, at::Tensor& gradBias) {
  const at::Tensor rows = labels.ge(0).nonzero().squeeze(1);
  if (rows.numel() == 0) return;
  const at::Tensor y = labels.index_select(0, rows);
  const at::Tensor term = scaled.index_select(0, rows);
  const c10::List<c10::optional<at::Tensor>> entries({rows, y});
  block.index_put_(entries, at::index(block, entries).sub(term));
  gradX.index_add_(0, rows, weight.index_select(0, y).mul(term.unsqueeze(1)));
  gradWeight.index_add_(0, y, x.index_select(0, rows).mul(term.unsqueeze(1)));
  if (gradBias.defined()) gradBias.index_add_(0, y, term);
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
  if (!logits.defined() || logits.size(0) < rows || logits.size(1) != vocab ||
      logits.scalar_type() != x.scalar_type()) {
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
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "linearLogprobStats",
                             [&] { statsRows<scalar_t>(block, b, y, temperature, out); });
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
  } else  // NOLINT(readability/braces): the CPU path below is the else branch only in CUDA builds
#endif
    AT_DISPATCH_FLOATING_TYPES(dtype, "linearLogprobGrad",
                               [&] { gradRows<scalar_t>(block, y, temperature, stats, c, e, m); });
  at::Tensor gradX = at::zeros({rows, x.size(1)}, x.options());
  if (gradFilter > 0 && c.defined() && block.is_cpu()) {
    // The label entries (c/T, never negligible) leave the block first, so the density test sees
    // the softmax part alone.
    applyLabelTerm(block, x, weight, y, c.mul(1.0 / temperature), gradX, gradWeight, gradBias);
    c10::optional<SignificantEntries> sparse;
    AT_DISPATCH_FLOATING_TYPES(dtype, "significantEntries",
                               [&] { sparse = significantEntries<scalar_t>(block, gradFilter); });
    if (sparse) {
      applyEntries(*sparse, x, weight, gradX, gradWeight, gradBias);
      return gradX;
    }
  }
  gradX.addmm_(block, weight);
  gradWeight.addmm_(block.t(), x);
  if (gradBias.defined()) gradBias.add_(block.sum(0));
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
    const LinearLogprobStats s = linearLogprobStatsChunk(xc.narrow(0, start, rows), wc, bias,
                                                         labels.narrow(0, start, rows), temperature, logits);
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
  auto slice = [](const at::Tensor& t, int64_t start, int64_t rows) {
    return t.defined() ? t.narrow(0, start, rows) : t;
  };
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
