// Process-wide settings and facts: threads, CUDA availability, what this binary was built from.
#include <torch/cuda.h>
#include <torch/version.h>

#include "binding.h"

// Generated at configure time by scripts/native-build.cjs: the hash of cpp/.
#include "vlalign_source_hash.h"

// The loader finds this marker in the file's bytes before loading it, so a binary built from other
// sources than the package's cpp/ is never loaded (see lib/torch/native.ts).
extern "C" __attribute__((used, visibility("default"))) const char vlalign_source_marker[] =
    "VLALIGN_SOURCE_HASH=" VLALIGN_SOURCE_HASH ";";

namespace vlalign {
namespace {

Napi::Value setNumThreads(const Info& info) {
  return guard(info, "setNumThreads", [&] {
    const int64_t n = intAt(info, 0);
    if (n < 1)
      throw Napi::RangeError::New(info.Env(), "setNumThreads: expected at least 1 thread, got " + std::to_string(n));
    at::set_num_threads(static_cast<int>(n));
    return info.Env().Undefined();
  });
}

Napi::Value getNumThreads(const Info& info) { return Napi::Number::New(info.Env(), at::get_num_threads()); }

Napi::Value cudaIsAvailable(const Info& info) { return Napi::Boolean::New(info.Env(), torch::cuda::is_available()); }

Napi::Value cudaDeviceCount(const Info& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(torch::cuda::device_count()));
}

Napi::Value buildInfo(const Info& info) {
  const Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("sourceHash", Napi::String::New(env, VLALIGN_SOURCE_HASH));
  out.Set("torchVersion", Napi::String::New(env, TORCH_VERSION));
#ifdef VLALIGN_WITH_CUDA
  out.Set("cuda", Napi::Boolean::New(env, true));
#else
  out.Set("cuda", Napi::Boolean::New(env, false));
#endif
  return out;
}

}  // namespace

void registerRuntimeOps(Napi::Env env, Napi::Object exports) {
  VL_EXPORT(exports, env, "setNumThreads", setNumThreads);
  VL_EXPORT(exports, env, "getNumThreads", getNumThreads);
  VL_EXPORT(exports, env, "cudaIsAvailable", cudaIsAvailable);
  VL_EXPORT(exports, env, "cudaDeviceCount", cudaDeviceCount);
  VL_EXPORT(exports, env, "buildInfo", buildInfo);
}

}  // namespace vlalign
