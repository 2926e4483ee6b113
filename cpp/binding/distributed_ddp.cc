// DistributedDataParallel's gradient synchronisation on PyTorch's own c10d::Reducer (the object
// torch.nn.parallel.DistributedDataParallel drives): the reducer hooks every parameter's gradient
// accumulator, copies each gradient into its bucket as autograd produces it and starts the bucket's
// all-reduce the moment the bucket is complete, while backward is still running; autograd's final
// callback then waits for every bucket and writes the mean back into each .grad. lib/distributed/
// ddp.ts decides when (prepareForBackward) and checks every argument before calling here.
//
// The buckets are reduced by a communication hook that does what torch's built-in ALLREDUCE hook
// does (divide by the world size, sum-all-reduce in place) and turns a failed all-reduce into an
// error naming DDP, the bucket, the rank and the timeout. backward() runs on the JS thread and the
// final callback blocks it until the buckets are reduced; Gloo's timeout bounds that wait, and a
// dead peer fails it at once ("closed by peer"), so backward() throws instead of hanging.
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>

#include <algorithm>
#include <cctype>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "distributed.h"

namespace vlalign {
namespace {

// The process group the Reducer talks to for its own collectives (bucket order after the first
// iteration, unused-parameter maps). In 1.13 the Gloo / NCCL group is one; from 2.0 a ProcessGroup
// dispatches to the backend we created.
c10::intrusive_ptr<c10d::ProcessGroup> reducerGroup(const ProcessGroupState& group) {
#if TORCH_VERSION_MAJOR >= 2
  auto dispatcher = c10::make_intrusive<c10d::ProcessGroup>(group.store, group.rank, group.worldSize);
  const bool nccl = group.backend == "nccl";
  const auto type = nccl ? c10d::ProcessGroup::BackendType::NCCL : c10d::ProcessGroup::BackendType::GLOO;
  dispatcher->setBackend(nccl ? c10::DeviceType::CUDA : c10::DeviceType::CPU, type, group.collectives);
  dispatcher->setDefaultBackend(type);
  return dispatcher;
#else
  return group.collectives;
#endif
}

std::string failureHint(const std::string& reason) {
  if (reason.find("imed out") != std::string::npos) {
    return "; no peer answered in time: a rank is stuck, has died, or skipped prepareForBackward() on this step";
  }
  if (reason.find("closed by peer") != std::string::npos || reason.find("reset by peer") != std::string::npos ||
      reason.find("Broken pipe") != std::string::npos) {
    return "; a peer process exited or lost its connection";
  }
  return "";
}

// torch's built-in ALLREDUCE communication hook (divide first, then sum, as DDP's default path
// does), whose failure names what failed.
class AveragingAllReduce : public c10d::CommHookInterface {
 public:
  explicit AveragingAllReduce(std::shared_ptr<ProcessGroupState> group) : group_(std::move(group)) {}

  c10::intrusive_ptr<c10::ivalue::Future> runHook(c10d::GradBucket& bucket) override {
    std::vector<at::Tensor> tensors{bucket.getBufferRef()};
    tensors[0].div_(group_->worldSize);
    c10d::AllreduceOptions options;
    options.timeout = group_->timeout;
    auto future = group_->collectives->allreduce(tensors, options)->getFuture();
    const std::shared_ptr<ProcessGroupState> group = group_;
    const size_t index = bucket.getIndex();
    const int64_t bytes = tensors[0].numel() * static_cast<int64_t>(tensors[0].element_size());
    return future->then(
        [group, index, bytes](c10::ivalue::Future& done) -> c10::IValue {
          if (done.hasError()) {
            const std::string reason = distributedErrorText(done.exception_ptr());
            throw std::runtime_error("DataParallel: the gradient all-reduce of bucket " + std::to_string(index) +
                                     " (" + std::to_string(bytes) + " bytes) failed on rank " +
                                     std::to_string(group->rank) + " of " + std::to_string(group->worldSize) +
                                     " (process-group timeout " + std::to_string(group->timeout.count()) +
                                     " ms): " + reason + failureHint(reason));
          }
          return done.value();
        },
        future->elementType());
  }

  // The all-reduce's value: its tensor list (c10d::detail::parseCppCommHookResult is not exported by 1.13).
  at::Tensor parseHookResult(const c10::IValue& result) override {
    return result.isTensor() ? result.toTensor() : result.toTensorVector().at(0);
  }

 private:
  std::shared_ptr<ProcessGroupState> group_;
};

// The Reducer, with the check DDP's forward makes before a synchronised step reachable here.
class DdpReducer : public c10d::Reducer {
 public:
  using c10d::Reducer::Reducer;
};

struct DdpEntry {
  std::shared_ptr<ProcessGroupState> group;
  std::vector<at::Tensor> params;  // the reducer's order, duplicates dropped
  std::vector<int64_t> positions;  // each one's index in the caller's list
  std::unique_ptr<DdpReducer> reducer;
};

// Never destroyed: at exit the reducers are left to the OS (as the process group).
std::unordered_map<uint32_t, DdpEntry>& entries = *new std::unordered_map<uint32_t, DdpEntry>();
uint32_t nextId = 1;

DdpEntry& entryAt(const Info& info, size_t i) {
  const auto id = static_cast<uint32_t>(intAt(info, i));
  auto found = entries.find(id);
  if (found == entries.end()) argumentError(info, i, "the DataParallel was disposed");
  return found->second;
}

void checkParameter(const at::Tensor& p, size_t k, const ProcessGroupState& group) {
  const std::string which = "params[" + std::to_string(k) + "]";
  if (!p.requires_grad() || !p.is_leaf()) {
    throw std::invalid_argument(
        which + " is not a trainable leaf (requiresGrad, made by no op): only those get a .grad to average");
  }
  const bool cuda = p.is_cuda();
  if ((group.backend == "gloo" && cuda) || (group.backend == "nccl" && !cuda)) {
    throw std::invalid_argument(which + " is on " + p.device().str() + ", which the " + group.backend +
                                " group does not reduce");
  }
  if (p.is_sparse()) throw std::invalid_argument(which + " is sparse; DataParallel reduces dense gradients");
}

// Bucket assignment as DistributedDataParallel makes it: in parameter order with a small first cap,
// then reversed, so the bucket of the last parameters (whose gradients come first) is reduced first.
std::vector<std::vector<size_t>> initialBuckets(const std::vector<at::Tensor>& params, size_t firstCap, size_t cap,
                                                std::vector<size_t>* limits) {
  auto [buckets, sizeLimits] = c10d::compute_bucket_assignment_by_size(params, {firstCap, cap});
  std::reverse(buckets.begin(), buckets.end());
  std::reverse(sizeLimits.begin(), sizeLimits.end());
  *limits = std::move(sizeLimits);
  return std::move(buckets);
}

std::unique_ptr<DdpReducer> makeReducer(const ProcessGroupState& group, const std::vector<at::Tensor>& params,
                                        int64_t firstCap, int64_t cap, bool findUnused) {
  std::vector<size_t> limits;
  auto buckets = initialBuckets(params, static_cast<size_t>(firstCap), static_cast<size_t>(cap), &limits);
  std::vector<bool> expectSparse(params.size(), false);
  const bool gradientAsBucketView = false;  // .grad stays the tensor autograd made; the mean is copied in
#if TORCH_VERSION_MAJOR >= 2
  return std::make_unique<DdpReducer>(params, std::move(buckets), reducerGroup(group), std::move(expectSparse), cap,
                                      findUnused, gradientAsBucketView, std::unordered_map<size_t, std::string>(),
                                      firstCap, /*skip_all_reduce_unused_params=*/false,
                                      /*use_python_reducer=*/false, /*bucket_bytes_cap_list=*/std::vector<int64_t>());
#else
  return std::make_unique<DdpReducer>(params, std::move(buckets), std::move(limits), reducerGroup(group),
                                      std::move(expectSparse), cap, findUnused, gradientAsBucketView,
                                      std::unordered_map<size_t, std::string>(), firstCap);
#endif
}

// ddpCreate(paramIds[], positions[] (each one's index in the caller's list, for messages),
//           firstBucketCapBytes, bucketCapBytes, findUnusedParameters) -> id
Napi::Value ddpCreate(const Info& info) {
  return guard(info, "DataParallel.create", [&] {
    std::shared_ptr<ProcessGroupState> group = currentProcessGroup();
    if (!group) throw std::runtime_error("no process group; call initProcessGroup first");
    const std::vector<at::Tensor> given = tensorsAt(info, 0);
    const std::vector<int64_t> callerIndex = intsAt(info, 1);
    if (callerIndex.size() != given.size()) argumentError(info, 1, "one position per parameter");
    DdpEntry entry;
    std::unordered_set<const c10::TensorImpl*> seen;  // a shared (tied) parameter is reduced once, as in DDP
    for (size_t k = 0; k < given.size(); ++k) {
      checkParameter(given[k], static_cast<size_t>(callerIndex[k]), *group);
      if (!seen.insert(given[k].unsafeGetTensorImpl()).second) continue;
      entry.params.push_back(given[k]);
      entry.positions.push_back(callerIndex[k]);
    }
    if (entry.params.empty()) throw std::invalid_argument("no trainable parameter to synchronise");
    entry.group = group;
    entry.reducer = makeReducer(*group, entry.params, intAt(info, 2), intAt(info, 3), boolAt(info, 4));
    entry.reducer->register_comm_hook(std::make_unique<AveragingAllReduce>(group));
    const uint32_t id = nextId++;
    entries.emplace(id, std::move(entry));
    return Napi::Number::New(info.Env(), id);
  });
}

// "... Parameter indices which did not receive grad for rank 1: 0, 3 ..." -> the caller's indices
// of those parameters ("0, 3" are the reducer's own), or "" when the message has no such list.
std::string unreducedPositions(const DdpEntry& entry, const std::string& message) {
  const std::string marker = "did not receive grad for rank ";
  size_t at = message.find(marker);
  if (at == std::string::npos || (at = message.find(": ", at)) == std::string::npos) return "";
  std::string out;
  size_t k = at + 2;
  while (k < message.size() && (std::isdigit(static_cast<unsigned char>(message[k])) || message[k] == ',' ||
                                message[k] == ' ')) {
    if (!std::isdigit(static_cast<unsigned char>(message[k]))) {
      ++k;
      continue;
    }
    size_t end = k;
    while (end < message.size() && std::isdigit(static_cast<unsigned char>(message[end]))) ++end;
    const size_t index = std::stoul(message.substr(k, end - k));
    if (index < entry.positions.size()) out += (out.empty() ? "" : ", ") + std::to_string(entry.positions[index]);
    k = end;
  }
  return out;
}

// DDP's forward checks that the previous synchronised backward reduced every bucket (rebuilding
// the buckets once, in the order gradients arrived, after the first one); this does the same.
void finishPriorStep(DdpEntry& entry) {
  try {
    entry.reducer->rebuild_buckets();
  } catch (const c10::Error& e) {
    const std::string message = e.what_without_backtrace();
    if (message.find("Expected to have finished reduction") == std::string::npos) throw;
    const std::string positions = unreducedPositions(entry, message);
    throw std::runtime_error(
        "the previous synchronised backward never completed: params " +
        (positions.empty() ? "?" : "[" + positions + "]") +
        " (indices into the list given to create) got no gradient, so their buckets were never reduced and no .grad "
        "of that step holds the mean. Every rank must reach every parameter; for parameters unused on some steps pass "
        "{ findUnusedParameters: true } to create and the loss to prepareForBackward(loss)");
  }
}

// ddpPrepareForBackward(id, outputIds[]): the next backward reduces the gradients.
Napi::Value ddpPrepareForBackward(const Info& info) {
  return guard(info, "DataParallel.prepareForBackward", [&] {
    DdpEntry& entry = entryAt(info, 0);
    const std::vector<at::Tensor> outputs = tensorsAt(info, 1);
    finishPriorStep(entry);
    entry.reducer->prepare_for_backward(outputs);
    return info.Env().Undefined();
  });
}

// ddpBuckets(id) -> [{ params: number[] (the positions given to ddpCreate), buffer: tensor id }] in
// the order the buckets are reduced. `buffer` is the bucket itself: during a synchronised backward
// it holds the bucket's gradients, then (once its all-reduce completed) their mean.
Napi::Value ddpBuckets(const Info& info) {
  return guard(info, "DataParallel.buckets", [&]() -> Napi::Value {
    DdpEntry& entry = entryAt(info, 0);
    std::unordered_map<const c10::TensorImpl*, int64_t> positionOf;
    for (size_t k = 0; k < entry.params.size(); ++k) {
      positionOf[entry.params[k].unsafeGetTensorImpl()] = entry.positions[k];
    }
    const Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env);
    for (const c10d::GradBucket& bucket : entry.reducer->get_grad_buckets(/*return_zero_tensors=*/false)) {
      Napi::Array params = Napi::Array::New(env);
      for (const at::Tensor& p : bucket.getParameters()) {
        const size_t position = positionOf.at(p.unsafeGetTensorImpl());
        params.Set(params.Length(), Napi::Number::New(env, static_cast<double>(position)));
      }
      Napi::Object item = Napi::Object::New(env);
      item.Set("params", params);
      item.Set("buffer", wrap(env, bucket.getBuffer()));
      out.Set(out.Length(), item);
    }
    return out;
  });
}

// ddpDispose(id) -> whether it existed. The reducer removes its hooks from the parameters.
Napi::Value ddpDispose(const Info& info) {
  return guard(info, "DataParallel.dispose", [&] {
    const auto id = static_cast<uint32_t>(intAt(info, 0));
    auto found = entries.find(id);
    if (found == entries.end()) return Napi::Boolean::New(info.Env(), false);
    DdpReducer* reducer = found->second.reducer.release();
    entries.erase(found);
    try {
      delete reducer;
    } catch (...) {
      // ~Reducer may throw (a hook already gone); the hooks are then as good as removed.
    }
    return Napi::Boolean::New(info.Env(), true);
  });
}

}  // namespace

void registerDdpOps(Napi::Env env, Napi::Object exports) {
  VL_EXPORT(exports, env, "ddpCreate", ddpCreate);
  VL_EXPORT(exports, env, "ddpPrepareForBackward", ddpPrepareForBackward);
  VL_EXPORT(exports, env, "ddpBuckets", ddpBuckets);
  VL_EXPORT(exports, env, "ddpDispose", ddpDispose);
}

}  // namespace vlalign
