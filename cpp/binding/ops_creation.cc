// Tensor creation: from JS bytes, filled, ranges, random, and the *Like forms.
#include <cstring>
#include <mutex>
#include <thread>

#include "binding.h"

namespace vlalign {
namespace {

at::TensorOptions optionsAt(const Info& info, size_t dtypeArg, size_t deviceArg) {
  return at::TensorOptions().dtype(dtypeAt(info, dtypeArg)).device(deviceAt(info, deviceArg));
}

// fromBytes(bytes: ArrayBufferView | ArrayBuffer, dtype, shape): copies the bytes into a new tensor.
Napi::Value FromBytes(const Info& info) {
  return guard(info, "tensor", [&] {
    void* data = nullptr;
    size_t length = 0;
    if (info[0].IsTypedArray()) {
      Napi::TypedArray view = info[0].As<Napi::TypedArray>();
      data = static_cast<uint8_t*>(view.ArrayBuffer().Data()) + view.ByteOffset();
      length = view.ByteLength();
    } else if (info[0].IsDataView()) {
      Napi::DataView view = info[0].As<Napi::DataView>();
      data = static_cast<uint8_t*>(view.ArrayBuffer().Data()) + view.ByteOffset();
      length = view.ByteLength();
    } else if (info[0].IsArrayBuffer()) {
      Napi::ArrayBuffer buffer = info[0].As<Napi::ArrayBuffer>();
      data = buffer.Data();
      length = buffer.ByteLength();
    } else {
      argumentTypeError(info, 0, "a typed array, Buffer or ArrayBuffer");
    }
    const at::ScalarType dtype = dtypeAt(info, 1);
    const std::vector<int64_t> shape = intsAt(info, 2);
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
    if (t.nbytes() != length) {
      throw Napi::RangeError::New(
          info.Env(), "tensor: " + std::to_string(length) + " bytes given but shape " + shapeString(shape) +
                          " of " + std::string(c10::toString(dtype)) + " needs " + std::to_string(t.nbytes()));
    }
    if (length > 0) std::memcpy(t.data_ptr(), data, length);
    return wrap(info.Env(), std::move(t));
  });
}

// ---- zero-copy tensors over JS memory (torch.frombuffer) ----------------------------------------
//
// The tensor holds a reference to the ArrayBuffer so GC cannot free the bytes under it. The last
// tensor reference may drop on another thread (an autograd or intra-op worker), but N-API references
// may only be released on the JS thread: such releases wait in a queue drained on the next free().
// After the environment is torn down (process exit) references are simply dropped.
struct BufferRef {
  napi_env env;
  napi_ref ref;
};

std::mutex pendingMutex;
std::vector<BufferRef*> pendingReleases;
std::thread::id jsThread;
bool envAlive = false;

void releaseBufferRef(void* context) {
  auto* r = static_cast<BufferRef*>(context);
  if (!envAlive) {
    delete r;
  } else if (std::this_thread::get_id() == jsThread) {
    napi_delete_reference(r->env, r->ref);
    delete r;
  } else {
    std::lock_guard<std::mutex> lock(pendingMutex);
    pendingReleases.push_back(r);
  }
}

// fromBuffer(view, dtype, shape): shares the bytes of a typed array or Buffer (aligned to dtype).
Napi::Value FromBuffer(const Info& info) {
  return guard(info, "frombuffer", [&] {
    if (!info[0].IsTypedArray()) argumentTypeError(info, 0, "a typed array or Buffer");
    Napi::TypedArray view = info[0].As<Napi::TypedArray>();
    Napi::ArrayBuffer buffer = view.ArrayBuffer();
    const at::ScalarType dtype = dtypeAt(info, 1);
    const std::vector<int64_t> shape = intsAt(info, 2);
    auto* data = static_cast<uint8_t*>(buffer.Data()) + view.ByteOffset();
    const int64_t itemsize = static_cast<int64_t>(c10::elementSize(dtype));
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    if (numel * itemsize != static_cast<int64_t>(view.ByteLength())) {
      throw Napi::RangeError::New(info.Env(), "frombuffer: " + std::to_string(view.ByteLength()) +
                                                  " bytes given but shape " + shapeString(shape) + " needs " +
                                                  std::to_string(numel * itemsize));
    }
    if (reinterpret_cast<uintptr_t>(data) % itemsize != 0) {
      throw Napi::RangeError::New(info.Env(), "frombuffer: the buffer is not aligned to its " +
                                                  std::to_string(itemsize) +
                                                  "-byte elements; copy it with torch.tensor instead");
    }
    auto* ref = new BufferRef{info.Env(), nullptr};
    napi_create_reference(info.Env(), buffer, 1, &ref->ref);
    at::Tensor t = at::from_blob(
        data, shape, [ref](void*) { releaseBufferRef(ref); }, at::TensorOptions().dtype(dtype));
    return wrap(info.Env(), std::move(t));
  });
}

Napi::Value Zeros(const Info& info) {
  return guard(info, "zeros", [&] { return wrap(info.Env(), at::zeros(intsAt(info, 0), optionsAt(info, 1, 2))); });
}

Napi::Value Ones(const Info& info) {
  return guard(info, "ones", [&] { return wrap(info.Env(), at::ones(intsAt(info, 0), optionsAt(info, 1, 2))); });
}

Napi::Value Empty(const Info& info) {
  return guard(info, "empty", [&] { return wrap(info.Env(), at::empty(intsAt(info, 0), optionsAt(info, 1, 2))); });
}

Napi::Value Full(const Info& info) {
  return guard(info, "full", [&] {
    return wrap(info.Env(), at::full(intsAt(info, 0), scalarAt(info, 1), optionsAt(info, 2, 3)));
  });
}

Napi::Value Arange(const Info& info) {
  return guard(info, "arange", [&] {
    return wrap(info.Env(),
                at::arange(scalarAt(info, 0), scalarAt(info, 1), scalarAt(info, 2), optionsAt(info, 3, 4)));
  });
}

Napi::Value Linspace(const Info& info) {
  return guard(info, "linspace", [&] {
    return wrap(info.Env(), at::linspace(scalarAt(info, 0), scalarAt(info, 1), intAt(info, 2), optionsAt(info, 3, 4)));
  });
}

Napi::Value Eye(const Info& info) {
  return guard(info, "eye", [&] {
    return wrap(info.Env(), at::eye(intAt(info, 0), intAt(info, 1), optionsAt(info, 2, 3)));
  });
}

Napi::Value Rand(const Info& info) {
  return guard(info, "rand", [&] { return wrap(info.Env(), at::rand(intsAt(info, 0), optionsAt(info, 1, 2))); });
}

Napi::Value Randn(const Info& info) {
  return guard(info, "randn", [&] { return wrap(info.Env(), at::randn(intsAt(info, 0), optionsAt(info, 1, 2))); });
}

Napi::Value Randint(const Info& info) {
  return guard(info, "randint", [&] {
    return wrap(info.Env(), at::randint(intAt(info, 0), intAt(info, 1), intsAt(info, 2), optionsAt(info, 3, 4)));
  });
}

// *Like(id, dtype | null): same shape and device, dtype overridable.
at::TensorOptions likeOptions(const Info& info, const at::Tensor& t, size_t dtypeArg) {
  return t.options().dtype(optionalDtypeAt(info, dtypeArg).value_or(t.scalar_type()));
}

Napi::Value ZerosLike(const Info& info) {
  return guard(info, "zerosLike", [&] {
    const at::Tensor& t = tensorAt(info, 0);
    return wrap(info.Env(), at::zeros(t.sizes(), likeOptions(info, t, 1)));
  });
}

Napi::Value OnesLike(const Info& info) {
  return guard(info, "onesLike", [&] {
    const at::Tensor& t = tensorAt(info, 0);
    return wrap(info.Env(), at::ones(t.sizes(), likeOptions(info, t, 1)));
  });
}

Napi::Value EmptyLike(const Info& info) {
  return guard(info, "emptyLike", [&] {
    const at::Tensor& t = tensorAt(info, 0);
    return wrap(info.Env(), at::empty(t.sizes(), likeOptions(info, t, 1)));
  });
}

Napi::Value FullLike(const Info& info) {
  return guard(info, "fullLike", [&] {
    const at::Tensor& t = tensorAt(info, 0);
    return wrap(info.Env(), at::full(t.sizes(), scalarAt(info, 1), likeOptions(info, t, 2)));
  });
}

Napi::Value RandLike(const Info& info) {
  return guard(info, "randLike", [&] {
    const at::Tensor& t = tensorAt(info, 0);
    return wrap(info.Env(), at::rand(t.sizes(), likeOptions(info, t, 1)));
  });
}

Napi::Value RandnLike(const Info& info) {
  return guard(info, "randnLike", [&] {
    const at::Tensor& t = tensorAt(info, 0);
    return wrap(info.Env(), at::randn(t.sizes(), likeOptions(info, t, 1)));
  });
}

Napi::Value RandintLike(const Info& info) {
  return guard(info, "randintLike", [&] {
    const at::Tensor& t = tensorAt(info, 0);
    return wrap(info.Env(), at::randint(intAt(info, 1), intAt(info, 2), t.sizes(), likeOptions(info, t, 3)));
  });
}

Napi::Value ManualSeed(const Info& info) {
  return guard(info, "manualSeed", [&] {
    torch::manual_seed(static_cast<uint64_t>(intAt(info, 0)));
    return info.Env().Undefined();
  });
}

}  // namespace

void releaseReferenceOnJsThread(napi_env env, napi_ref ref) { releaseBufferRef(new BufferRef{env, ref}); }

bool onJsThread() { return envAlive && std::this_thread::get_id() == jsThread; }

void releasePendingBufferRefs() {
  std::vector<BufferRef*> ready;
  {
    std::lock_guard<std::mutex> lock(pendingMutex);
    if (pendingReleases.empty()) return;
    ready.swap(pendingReleases);
  }
  for (BufferRef* r : ready) {
    napi_delete_reference(r->env, r->ref);
    delete r;
  }
}

void registerCreationOps(Napi::Env env, Napi::Object exports) {
  jsThread = std::this_thread::get_id();
  envAlive = true;
  napi_add_env_cleanup_hook(env, [](void*) { envAlive = false; }, nullptr);
  VL_EXPORT(exports, env, "fromBytes", FromBytes);
  VL_EXPORT(exports, env, "fromBuffer", FromBuffer);
  VL_EXPORT(exports, env, "zeros", Zeros);
  VL_EXPORT(exports, env, "ones", Ones);
  VL_EXPORT(exports, env, "empty", Empty);
  VL_EXPORT(exports, env, "full", Full);
  VL_EXPORT(exports, env, "arange", Arange);
  VL_EXPORT(exports, env, "linspace", Linspace);
  VL_EXPORT(exports, env, "eye", Eye);
  VL_EXPORT(exports, env, "rand", Rand);
  VL_EXPORT(exports, env, "randn", Randn);
  VL_EXPORT(exports, env, "randint", Randint);
  VL_EXPORT(exports, env, "zerosLike", ZerosLike);
  VL_EXPORT(exports, env, "onesLike", OnesLike);
  VL_EXPORT(exports, env, "emptyLike", EmptyLike);
  VL_EXPORT(exports, env, "fullLike", FullLike);
  VL_EXPORT(exports, env, "randLike", RandLike);
  VL_EXPORT(exports, env, "randnLike", RandnLike);
  VL_EXPORT(exports, env, "randintLike", RandintLike);
  VL_EXPORT(exports, env, "manualSeed", ManualSeed);
}

}  // namespace vlalign
