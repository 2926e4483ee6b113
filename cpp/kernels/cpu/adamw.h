// Fused multi-tensor AdamW: one pass over each parameter updates p, exp_avg and exp_avg_sq in
// place (torch.optim.AdamW's arithmetic, see optim_rows.h), vectorised per ISA and parallel over
// chunks. Parameters are float32 or bfloat16; state is float32; gradients have the parameter's dtype.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace vlalign::kernels {

struct AdamwOptions {
  double lr, beta1, beta2, eps, weightDecay;
  int64_t step;  // the step count after this update (1 on the first call)
  bool maximize;
};

// Skips parameters whose gradient is undefined.
void adamwStep(std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads, std::vector<at::Tensor>& expAvg,
               std::vector<at::Tensor>& expAvgSq, const AdamwOptions& options);

}  // namespace vlalign::kernels
