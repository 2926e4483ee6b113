// Collectives over the process group, each returning a Promise. The call enqueues c10d work; one
// that completes within 50 us (a small tensor on a quick peer) is settled before the call returns,
// any other completes on a backend thread, which hands the settling to the JS thread through a
// thread-safe function, so the event loop never waits on the network and no libuv pool thread is
// held. A collective that cannot complete fails after the group's timeout
// (Gloo applies it to every send / receive); the rejection names the op, the rank and the timeout.
//
// As with torch.distributed's async_op=True, the tensors belong to the collective until its Promise
// settles: lib/distributed allocates outputs and checks every argument before calling here.
#include <chrono>
#include <functional>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "distributed.h"

namespace vlalign {
namespace {

enum class Reduction { kSum, kAvg, kMax, kMin };

Reduction reductionAt(const Info& info, size_t i) {
  const std::string name = stringAt(info, i);
  if (name == "sum") return Reduction::kSum;
  if (name == "avg") return Reduction::kAvg;
  if (name == "max") return Reduction::kMax;
  if (name == "min") return Reduction::kMin;
  argumentTypeError(info, i, "'sum', 'avg', 'max' or 'min', not '" + name + "'");
}

// NCCL averages natively; Gloo has no AVG, so it sums and the result is divided on completion.
bool nativeAverage(const ProcessGroupState& group) { return group.backend == "nccl"; }

c10d::ReduceOp reduceOp(const ProcessGroupState& group, Reduction r) {
  switch (r) {
    case Reduction::kAvg: return nativeAverage(group) ? c10d::ReduceOp::AVG : c10d::ReduceOp::SUM;
    case Reduction::kMax: return c10d::ReduceOp::MAX;
    case Reduction::kMin: return c10d::ReduceOp::MIN;
    default: return c10d::ReduceOp::SUM;
  }
}

std::function<void()> divideIfAverage(const ProcessGroupState& group, Reduction r, const at::Tensor& t) {
  if (r != Reduction::kAvg || nativeAverage(group)) return nullptr;
  const int64_t n = group.worldSize;
  return [t, n]() mutable { t.div_(n); };
}

struct PendingCollective {
  const char* op;
  std::shared_ptr<ProcessGroupState> group;  // keeps the backend alive until the work settles
  c10::intrusive_ptr<c10d::Work> work;
  std::function<void()> finish;  // runs on the JS thread after the work succeeded
  Napi::Promise::Deferred deferred;
};

std::string failureMessage(const char* op, const ProcessGroupState& group, std::exception_ptr error) {
  const std::string reason = distributedErrorText(error);
  std::string hint;
  if (reason.find("Timed out") != std::string::npos || reason.find("timed out") != std::string::npos) {
    hint = "; no peer answered in time: a rank is stuck, has died, or runs a different collective";
  } else if (reason.find("closed by peer") != std::string::npos || reason.find("reset by peer") != std::string::npos ||
             reason.find("Broken pipe") != std::string::npos) {
    hint = "; a peer process exited or lost its connection";
  }
  return std::string(op) + " failed on rank " + std::to_string(group.rank) + " of " + std::to_string(group.worldSize) +
         " (process-group timeout " + std::to_string(group.timeout.count()) + " ms): " + reason + hint;
}

// Completions reach the JS thread through one thread-safe function per environment, kept for the
// addon's lifetime: making one per call cost as much as a small all-reduce itself. It is referenced
// only while collectives are in flight, so an idle group never keeps the process alive.
struct CompletionQueue;
void settle(Napi::Env env, Napi::Function, CompletionQueue* queue, PendingCollective* p);
using Completion = Napi::TypedThreadSafeFunction<CompletionQueue, PendingCollective, settle>;

struct CompletionQueue {
  Completion completion;
  size_t inFlight = 0;  // JS thread only

  static CompletionQueue& of(Napi::Env env) {
    if (auto* queue = env.GetInstanceData<CompletionQueue>()) return *queue;
    auto* queue = new CompletionQueue;
    queue->completion = Completion::New(env, "vlalign.collective", 0, 1, queue);
    queue->completion.Unref(env);
    env.SetInstanceData(queue);  // freed with the environment; the function is torn down with it
    return *queue;
  }

  void started(Napi::Env env) {
    if (inFlight++ == 0) completion.Ref(env);
  }

  void settled(Napi::Env env) {
    if (--inFlight == 0) completion.Unref(env);
  }
};

// On the JS thread once the work's future has completed. wait() returns at once then (or rethrows
// the work's error); for NCCL it also makes the current CUDA stream wait for the collective.
void resolve(Napi::Env env, PendingCollective* p) {
  try {
    try {
      p->work->wait();
      if (p->finish) {
        at::NoGradGuard noGrad;  // in place on tensors that may require grad, as the collective itself
        p->finish();
      }
      p->deferred.Resolve(env.Undefined());
    } catch (...) {
      p->deferred.Reject(Napi::Error::New(env, failureMessage(p->op, *p->group, std::current_exception())).Value());
    }
  } catch (...) {
    // Resolving failed (the environment is shutting down): nothing is left to tell.
  }
}

void settle(Napi::Env env, Napi::Function, CompletionQueue* queue, PendingCollective* p) {
  std::unique_ptr<PendingCollective> owned(p);
  if (env == nullptr) return;  // the environment is going away: nothing is left to settle
  queue->settled(env);
  resolve(env, p);
}

// A small collective completes within microseconds, sooner than a backend thread can wake this one:
// it is settled here if it completes within this bound (the event loop waits no longer than that).
constexpr std::chrono::microseconds kSettleHereWithin{50};

bool completesSoon(const c10::intrusive_ptr<c10::ivalue::Future>& future) {
  const auto deadline = std::chrono::steady_clock::now() + kSettleHereWithin;
  while (!future->completed()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

Napi::Value launch(const Info& info, const char* op, std::shared_ptr<ProcessGroupState> group,
                   c10::intrusive_ptr<c10d::Work> work, std::function<void()> finish = nullptr) {
  const Napi::Env env = info.Env();
  c10::intrusive_ptr<c10::ivalue::Future> future = work->getFuture();
  auto* pending = new PendingCollective{op, std::move(group), std::move(work), std::move(finish),
                                        Napi::Promise::Deferred::New(env)};
  const Napi::Promise promise = pending->deferred.Promise();
  if (completesSoon(future)) {
    std::unique_ptr<PendingCollective> owned(pending);
    resolve(env, pending);
    return promise;
  }
  CompletionQueue& queue = CompletionQueue::of(env);
  queue.started(env);
  // Runs on the backend thread that completes the work.
  future->addCallback([completion = queue.completion, pending](c10::ivalue::Future&) {
    completion.NonBlockingCall(pending);
  });
  return promise;
}

// The synchronous form (a trailing `true` argument): this thread waits for the work, as
// torch.distributed's blocking collectives do, for callers that cannot yield to the event loop (a
// module's forward, an autograd node's backward). Gloo runs the work on its own threads meanwhile;
// the group's timeout bounds the wait.
Napi::Value waitHere(const Info& info, const char* op, const std::shared_ptr<ProcessGroupState>& group,
                     const c10::intrusive_ptr<c10d::Work>& work, const std::function<void()>& finish) {
  try {
    work->wait();
    if (finish) {
      at::NoGradGuard noGrad;
      finish();
    }
  } catch (...) {
    throw Napi::Error::New(info.Env(), failureMessage(op, *group, std::current_exception()));
  }
  return info.Env().Undefined();
}

bool synchronous(const Info& info, size_t i) { return info.Length() > i && info[i].IsBoolean() && info[i].ToBoolean(); }

// Settles a started collective: a Promise, or (synchronous) undefined once it completed.
Napi::Value complete(const Info& info, size_t syncArg, const char* op, std::shared_ptr<ProcessGroupState> group,
                     c10::intrusive_ptr<c10d::Work> work, std::function<void()> finish = nullptr) {
  if (synchronous(info, syncArg)) return waitHere(info, op, group, work, finish);
  return launch(info, op, std::move(group), std::move(work), std::move(finish));
}

std::shared_ptr<ProcessGroupState> requireGroup(const Info& info, const char* op) {
  std::shared_ptr<ProcessGroupState> group = currentProcessGroup();
  if (!group) throw Napi::Error::New(info.Env(), std::string(op) + ": no process group; call initProcessGroup first");
  return group;
}

// distAllReduce(t, op): t becomes the reduction of every rank's t.
Napi::Value distAllReduce(const Info& info) {
  return guard(info, "allReduce", [&] {
    auto group = requireGroup(info, "allReduce");
    const at::Tensor& t = tensorAt(info, 0);
    const Reduction r = reductionAt(info, 1);
    std::vector<at::Tensor> tensors{t};
    c10d::AllreduceOptions options;
    options.reduceOp = reduceOp(*group, r);
    options.timeout = group->timeout;
    auto work = group->collectives->allreduce(tensors, options);
    return launch(info, "allReduce", group, std::move(work), divideIfAverage(*group, r, t));
  }, {0});
}

// distAllGather(out, in, sync?): out ([world * n, ...]) receives every rank's in ([n, ...]) in rank order.
Napi::Value distAllGather(const Info& info) {
  return guard(info, "allGather", [&] {
    auto group = requireGroup(info, "allGather");
    at::Tensor out = tensorAt(info, 0);
    at::Tensor in = tensorAt(info, 1);
    c10d::AllgatherOptions options;
    options.timeout = group->timeout;
    if (group->backend == "nccl") {
      return complete(info, 2, "allGather", group, group->collectives->_allgather_base(out, in, options));
    }
    // Gloo 1.13 has no _allgather_base: gather into per-rank views of `out` (contiguous slices).
    std::vector<std::vector<at::Tensor>> outputs(1);
    for (int64_t r = 0; r < group->worldSize; ++r) outputs[0].push_back(out.narrow(0, r * in.size(0), in.size(0)));
    std::vector<at::Tensor> inputs{in};
    return complete(info, 2, "allGather", group, group->collectives->allgather(outputs, inputs, options));
  }, {0, 1});
}

// distReduceScatter(out, in, op, sync?): out ([n, ...]) receives the reduction of every rank's slice r of
// in ([world * n, ...]), r being this rank.
Napi::Value distReduceScatter(const Info& info) {
  return guard(info, "reduceScatter", [&] {
    auto group = requireGroup(info, "reduceScatter");
    at::Tensor out = tensorAt(info, 0);
    at::Tensor in = tensorAt(info, 1);
    const Reduction r = reductionAt(info, 2);
    if (group->backend == "nccl") {
      c10d::ReduceScatterOptions options;
      options.reduceOp = reduceOp(*group, r);
      options.timeout = group->timeout;
      return complete(info, 3, "reduceScatter", group, group->collectives->_reduce_scatter_base(out, in, options));
    }
    // Gloo 1.13 has no reduce-scatter. An all-to-all brings every rank's slice r here (the same
    // (N-1)/N bytes per rank as a ring reduce-scatter, half of an all-reduce); the slices are then
    // reduced here on completion.
    at::Tensor received = at::empty_like(in);
    std::vector<int64_t> equalSplit;
    c10d::AllToAllOptions options;
    options.timeout = group->timeout;
    auto work = group->collectives->alltoall_base(received, in, equalSplit, equalSplit, options);
    const int64_t n = group->worldSize;
    auto reduce = [out, received, n, r]() mutable {
      const at::Tensor slices = received.view({n, -1});
      at::Tensor flat = out.view({-1});
      switch (r) {
        case Reduction::kMax: at::amax_out(flat, slices, {0}); break;
        case Reduction::kMin: at::amin_out(flat, slices, {0}); break;
        default: at::sum_out(flat, slices, {0}, false, out.scalar_type());
      }
      if (r == Reduction::kAvg) flat.div_(n);
    };
    return complete(info, 3, "reduceScatter", group, std::move(work), reduce);
  }, {0, 1});
}

// distBroadcast(t, src): every rank's t becomes rank src's.
Napi::Value distBroadcast(const Info& info) {
  return guard(info, "broadcast", [&] {
    auto group = requireGroup(info, "broadcast");
    std::vector<at::Tensor> tensors{tensorAt(info, 0)};
    c10d::BroadcastOptions options;
    options.rootRank = intAt(info, 1);
    options.timeout = group->timeout;
    return launch(info, "broadcast", group, group->collectives->broadcast(tensors, options));
  }, {0});
}

// distBarrier(): settles once every rank has entered the barrier (after this rank's earlier collectives).
Napi::Value distBarrier(const Info& info) {
  return guard(info, "barrier", [&] {
    auto group = requireGroup(info, "barrier");
    c10d::BarrierOptions options;
    options.timeout = group->timeout;
    return launch(info, "barrier", group, group->collectives->barrier(options));
  });
}

}  // namespace

void registerCollectiveOps(Napi::Env env, Napi::Object exports) {
  VL_EXPORT(exports, env, "distAllReduce", distAllReduce);
  VL_EXPORT(exports, env, "distAllGather", distAllGather);
  VL_EXPORT(exports, env, "distReduceScatter", distReduceScatter);
  VL_EXPORT(exports, env, "distBroadcast", distBroadcast);
  VL_EXPORT(exports, env, "distBarrier", distBarrier);
}

}  // namespace vlalign
