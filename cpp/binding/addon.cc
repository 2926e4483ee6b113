// The addon's entry point: every op family adds its functions to one flat exports object, which
// lib/torch/native.ts loads. Tensors cross as uint32 ids into the handle table (tensor_table.h).
#include "binding.h"
#include "distributed.h"

namespace vlalign {

Napi::Object init(Napi::Env env, Napi::Object exports) {
  registerTensorOps(env, exports);
  registerCreationOps(env, exports);
  registerMathOps(env, exports);
  registerReductionOps(env, exports);
  registerShapeOps(env, exports);
  registerIndexingOps(env, exports);
  registerNnOps(env, exports);
  registerAutogradOps(env, exports);
  registerIoOps(env, exports);
  registerRuntimeOps(env, exports);
  registerLossOps(env, exports);
  registerQuantOps(env, exports);
  registerOptimOps(env, exports);
  registerDistributedOps(env, exports);
  return exports;
}

}  // namespace vlalign

static Napi::Object initAddon(Napi::Env env, Napi::Object exports) { return vlalign::init(env, exports); }

NODE_API_MODULE(vlalign_addon, initAddon)
