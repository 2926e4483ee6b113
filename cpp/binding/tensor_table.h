// The handle table: JS holds plain uint32 ids, native code owns the at::Tensor behind each.
//
// An id is an index into `slots_`; freed ids are reused. Id 0 is never handed out so JS can use it
// for "no tensor" (an undefined grad, an absent bias). A per-call lookup is one bounds check and one
// load, which is what keeps a small op close to libtorch's own cost.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace vlalign {

class TensorTable {
 public:
  TensorTable() : slots_(1), reportedBytes_(1, 0) {}

  // Stores `t` and returns its id. Bytes a new storage brings are accumulated for V8 (see external).
  uint32_t put(at::Tensor t);

  // Null when `id` was never issued or was already freed.
  at::Tensor* find(uint32_t id) {
    if (id == 0 || id >= slots_.size() || !slots_[id].defined()) return nullptr;
    return &slots_[id];
  }

  // Returns false when `id` is not live (double free is a no-op for the caller to report or ignore).
  bool release(uint32_t id);

  size_t live() const { return live_; }
  const std::vector<at::Tensor>& slots() const { return slots_; }

  // Bytes put minus bytes released since the last call; the caller passes it to
  // napi_adjust_external_memory in batches so V8 sees native pressure without a call per op.
  int64_t takeExternalDelta(int64_t threshold);

 private:
  std::vector<at::Tensor> slots_;
  std::vector<int64_t> reportedBytes_;  // what each slot added to the external count
  std::vector<uint32_t> free_;
  size_t live_ = 0;
  int64_t externalDelta_ = 0;
};

TensorTable& tensors();

}  // namespace vlalign
