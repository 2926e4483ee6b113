// The process group: a TCPStore rendezvous (hosted by rank 0, or by torchrun's agent when it says
// so), then a Gloo or NCCL backend over it. One group per process, as torch.distributed's default
// group. lib/distributed resolves every setting (options, torchrun / SLURM environment) and passes
// them here; nothing in this file reads the environment.
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <utility>
#include <vector>

#include "distributed.h"

#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace vlalign {
namespace {

// Never destroyed: at exit the group is left to the OS. Its destructor joins the backend's threads,
// which would hold the exit until a collective stuck on a dead peer timed out.
std::shared_ptr<ProcessGroupState>& current = *new std::shared_ptr<ProcessGroupState>();
bool initializing = false;

struct GroupConfig {
  std::string backend;
  int rank = 0;
  int worldSize = 1;
  std::string masterAddr;
  int masterPort = 0;
  std::chrono::milliseconds timeout{0};
  bool hostStore = false;          // this process serves the TCPStore (rank 0 unless torchrun's agent does)
  std::string storePrefix;         // torchrun's agent store: keys live under /worker/attempt_<restart>
  std::vector<std::string> glooInterfaces;  // GLOO_SOCKET_IFNAME
  std::string glooHostname;        // the address Gloo binds; empty: this machine's hostname, else loopback
};

Napi::Value fieldAt(const Info& info, const Napi::Object& o, const char* key, bool isString) {
  Napi::Value v = o.Get(key);
  if (isString ? !v.IsString() : !v.IsNumber()) {
    argumentTypeError(info, 0, std::string(isString ? "a string" : "a number") + " for " + key);
  }
  return v;
}

std::string stringField(const Info& info, const Napi::Object& o, const char* key) {
  return fieldAt(info, o, key, true).As<Napi::String>().Utf8Value();
}

int intField(const Info& info, const Napi::Object& o, const char* key) {
  return fieldAt(info, o, key, false).As<Napi::Number>().Int32Value();
}

GroupConfig configAt(const Info& info) {
  if (!info[0].IsObject()) argumentTypeError(info, 0, "an object");
  const Napi::Object o = info[0].As<Napi::Object>();
  GroupConfig c;
  c.backend = stringField(info, o, "backend");
  c.rank = intField(info, o, "rank");
  c.worldSize = intField(info, o, "worldSize");
  c.masterAddr = stringField(info, o, "masterAddr");
  c.masterPort = intField(info, o, "masterPort");
  c.timeout = std::chrono::milliseconds(fieldAt(info, o, "timeoutMs", false).As<Napi::Number>().Int64Value());
  c.hostStore = o.Get("hostStore").ToBoolean().Value();
  c.storePrefix = stringField(info, o, "storePrefix");
  c.glooHostname = stringField(info, o, "glooHostname");
  const Napi::Value interfaces = o.Get("glooInterfaces");
  if (!interfaces.IsArray()) argumentTypeError(info, 0, "an array for glooInterfaces");
  const Napi::Array list = interfaces.As<Napi::Array>();
  for (uint32_t k = 0; k < list.Length(); ++k) c.glooInterfaces.push_back(list.Get(k).ToString().Utf8Value());
  return c;
}

c10::intrusive_ptr<c10d::Store> connectStore(const GroupConfig& c) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(c.masterPort);
  options.isServer = c.hostStore;
  options.numWorkers = static_cast<size_t>(c.worldSize);  // the host waits until every rank has connected
  options.waitWorkers = true;
  options.timeout = c.timeout;
  c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(c.masterAddr, options);
  if (!c.storePrefix.empty()) store = c10::make_intrusive<c10d::PrefixStore>(c.storePrefix, store);
  // Our own namespace inside a store that torchrun's agent also uses.
  return c10::make_intrusive<c10d::PrefixStore>("vlalign", store);
}

#ifdef USE_C10D_GLOO
c10::intrusive_ptr<CollectiveBackend> glooGroup(const GroupConfig& c, const c10::intrusive_ptr<c10d::Store>& store) {
  auto options = c10d::ProcessGroupGloo::Options::create(c.timeout);
  for (const std::string& name : c.glooInterfaces) {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
  }
  if (options->devices.empty() && c.glooHostname.empty()) {
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  } else if (options->devices.empty()) {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(c.glooHostname));
  }
  // Two worker threads per device, as torch.distributed sets them: one collective can run while
  // the next is prepared.
  options->threads = static_cast<int>(options->devices.size()) * 2;
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, c.rank, c.worldSize, options);
}
#endif

#ifdef USE_C10D_NCCL
c10::intrusive_ptr<CollectiveBackend> ncclGroup(const GroupConfig& c, const c10::intrusive_ptr<c10d::Store>& store) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = c.timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, c.rank, c.worldSize, options);
}
#endif

c10::intrusive_ptr<CollectiveBackend> createBackend(const GroupConfig& c,
                                                    const c10::intrusive_ptr<c10d::Store>& store) {
#ifdef USE_C10D_GLOO
  if (c.backend == "gloo") return glooGroup(c, store);
#endif
#ifdef USE_C10D_NCCL
  if (c.backend == "nccl") return ncclGroup(c, store);
#endif
  throw std::runtime_error("backend '" + c.backend + "' is not compiled into this build of vlalign (" +
                           (c.backend == "nccl" ? "NCCL needs a CUDA libtorch and nccl.h at build time"
                                                : "Gloo's headers were missing at build time: install libgloo-dev") +
                           ")");
}

// Rendezvous and backend creation block until every rank has joined (or the timeout passes), so
// they run on a worker thread; the group becomes the process's on the JS thread.
class InitWorker : public Napi::AsyncWorker {
 public:
  InitWorker(Napi::Env env, GroupConfig config)
      : Napi::AsyncWorker(env, "vlalign.initProcessGroup"),
        config_(std::move(config)),
        deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      auto state = std::make_shared<ProcessGroupState>();
      state->backend = config_.backend;
      state->rank = config_.rank;
      state->worldSize = config_.worldSize;
      state->timeout = config_.timeout;
      state->store = connectStore(config_);
      state->collectives = createBackend(config_, state->store);
      state_ = std::move(state);
    } catch (...) {
      SetError("initProcessGroup: rank " + std::to_string(config_.rank) + " of " + std::to_string(config_.worldSize) +
               " could not form the " + config_.backend + " group through " + config_.masterAddr + ":" +
               std::to_string(config_.masterPort) + " (timeout " + std::to_string(config_.timeout.count()) +
               " ms): " + distributedErrorText(std::current_exception()));
    }
  }

  void OnOK() override {
    initializing = false;
    current = std::move(state_);
    deferred_.Resolve(Env().Undefined());
  }

  void OnError(const Napi::Error& error) override {
    initializing = false;
    deferred_.Reject(error.Value());
  }

 private:
  GroupConfig config_;
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<ProcessGroupState> state_;
};

// distInit({ backend, rank, worldSize, masterAddr, masterPort, timeoutMs, hostStore, storePrefix,
// glooInterfaces, glooHostname }) -> Promise<void>
Napi::Value distInit(const Info& info) {
  return guard(info, "initProcessGroup", [&]() -> Napi::Value {
    if (current || initializing) {
      throw Napi::Error::New(info.Env(), "initProcessGroup: this process already has a process group " +
                                             std::string(initializing ? "being created" : "; destroy it first"));
    }
    auto* worker = new InitWorker(info.Env(), configAt(info));
    const Napi::Promise promise = worker->promise();
    initializing = true;
    worker->Queue();
    return promise;
  });
}

// distDestroy() -> whether there was a group. Collectives still in flight keep the backend alive
// until they settle (or time out); nothing here waits for them.
Napi::Value distDestroy(const Info& info) {
  const bool had = static_cast<bool>(current);
  current.reset();
  return Napi::Boolean::New(info.Env(), had);
}

// distInfo() -> { backend, rank, worldSize, timeoutMs } | null
Napi::Value distInfo(const Info& info) {
  const Napi::Env env = info.Env();
  if (!current) return env.Null();
  Napi::Object out = Napi::Object::New(env);
  out.Set("backend", Napi::String::New(env, current->backend));
  out.Set("rank", Napi::Number::New(env, current->rank));
  out.Set("worldSize", Napi::Number::New(env, current->worldSize));
  out.Set("timeoutMs", Napi::Number::New(env, static_cast<double>(current->timeout.count())));
  return out;
}

// distBackends() -> the backends this binary was compiled with.
Napi::Value distBackends(const Info& info) {
  Napi::Array out = Napi::Array::New(info.Env());
#ifdef USE_C10D_GLOO
  out.Set(out.Length(), Napi::String::New(info.Env(), "gloo"));
#endif
#ifdef USE_C10D_NCCL
  out.Set(out.Length(), Napi::String::New(info.Env(), "nccl"));
#endif
  return out;
}

// "[../gloo/transport/tcp/pair.cc:598] Connection closed by peer" -> "Connection closed by peer"
std::string withoutSourcePrefix(std::string text) {
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find("] ");
    if (close != std::string::npos && text.find(':') < close) text.erase(0, close + 2);
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace

std::shared_ptr<ProcessGroupState> currentProcessGroup() { return current; }

std::string distributedErrorText(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const c10::Error& e) {
    return withoutSourcePrefix(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return withoutSourcePrefix(e.what());
  } catch (...) {
    return "unknown native error";
  }
}

void registerDistributedOps(Napi::Env env, Napi::Object exports) {
  VL_EXPORT(exports, env, "distInit", distInit);
  VL_EXPORT(exports, env, "distDestroy", distDestroy);
  VL_EXPORT(exports, env, "distInfo", distInfo);
  VL_EXPORT(exports, env, "distBackends", distBackends);
  registerCollectiveOps(env, exports);
  registerDdpOps(env, exports);
}

}  // namespace vlalign
