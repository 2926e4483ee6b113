#include "tensor_table.h"

#include <utility>

namespace vlalign {

namespace {
// Views and aliases share their base's storage; only a tensor that is not a view reports its storage,
// which counts each fresh allocation once (a detached alias is counted twice, a known over-estimate).
int64_t ownedBytes(const at::Tensor& t) {
  if (!t.defined() || t.is_view() || !t.has_storage()) return 0;
  return static_cast<int64_t>(t.storage().nbytes());
}
}  // namespace

uint32_t TensorTable::put(at::Tensor t) {
  const int64_t bytes = ownedBytes(t);
  uint32_t id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
    slots_[id] = std::move(t);
    reportedBytes_[id] = bytes;
  } else {
    id = static_cast<uint32_t>(slots_.size());
    slots_.push_back(std::move(t));
    reportedBytes_.push_back(bytes);
  }
  ++live_;
  externalDelta_ += bytes;
  return id;
}

bool TensorTable::release(uint32_t id) {
  at::Tensor* t = find(id);
  if (t == nullptr) return false;
  t->reset();
  externalDelta_ -= reportedBytes_[id];
  reportedBytes_[id] = 0;
  free_.push_back(id);
  --live_;
  return true;
}

int64_t TensorTable::takeExternalDelta(int64_t threshold) {
  if (externalDelta_ < threshold && externalDelta_ > -threshold) return 0;
  const int64_t delta = externalDelta_;
  externalDelta_ = 0;
  return delta;
}

TensorTable& tensors() {
  static TensorTable table;
  return table;
}

}  // namespace vlalign
