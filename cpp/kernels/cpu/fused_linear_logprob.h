// Fused linear + log-softmax over token chunks: per-token label log-probs, log-sum-exp, entropy
// and mean logit from hidden states and an LM head, and every gradient, without ever holding more
// than one [chunk, V] block of logits.
//
// Shapes: x [N, H], weight [V, H], bias [V] or none, labels [N] int64 (negative = ignored row:
// logp 0, no label term), temperature T > 0 divides the logits (GRPO's sampling temperature).
#pragma once

#include <torch/torch.h>

#include <tuple>

namespace vlalign::kernels {

struct LinearLogprobStats {
  at::Tensor logp, entropy, lse, meanLogit;  // each [rows]
};

// Fills `logits` ([>= rows, V] scratch) with the chunk's scaled logits and returns their stats.
LinearLogprobStats linearLogprobStatsChunk(const at::Tensor& x, const at::Tensor& weight,
                                           const c10::optional<at::Tensor>& bias, const at::Tensor& labels,
                                           double temperature, at::Tensor& logits);

// Turns the logits left by linearLogprobStatsChunk into dL/dlogits in place, given per-token
// upstream gradients of logp, entropy and meanLogit (undefined = zero); returns dL/dx for the chunk
// and adds into gradWeight and gradBias (when defined). With gradFilter > 0 and a chunk where at
// most 1% of the logit gradients reach gradFilter, only those are applied (0: always exact).
at::Tensor linearLogprobGradChunk(at::Tensor& logits, const at::Tensor& x, const at::Tensor& weight,
                                  const at::Tensor& labels, double temperature, const LinearLogprobStats& stats,
                                  const at::Tensor& gradLogp, const at::Tensor& gradEntropy,
                                  const at::Tensor& gradMeanLogit, at::Tensor& gradWeight, at::Tensor& gradBias,
                                  double gradFilter);

// Whole-batch passes in chunks of `chunkRows` rows.
LinearLogprobStats linearLogprobStats(const at::Tensor& x, const at::Tensor& weight,
                                      const c10::optional<at::Tensor>& bias, const at::Tensor& labels,
                                      double temperature, int64_t chunkRows);

std::tuple<at::Tensor, at::Tensor, at::Tensor> linearLogprobBackward(
    const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias, const at::Tensor& labels,
    double temperature, int64_t chunkRows, const at::Tensor& gradLogp, const at::Tensor& gradEntropy,
    const at::Tensor& gradMeanLogit, double gradFilter);

void checkLinearLogprobInputs(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                              const at::Tensor& labels, double temperature);

// The instruction set the float row kernels run with ("avx512", "avx2" or "default").
const char* rowKernelIsa();

}  // namespace vlalign::kernels
