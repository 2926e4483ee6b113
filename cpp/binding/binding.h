// What every op binding needs: argument unpacking, result wrapping and the one error guard.
//
// Arguments arrive already validated by lib/torch (types, option names), so unpacking here is about
// safety, not friendliness: a wrong type is a TypeError and a stale id an Error, never a crash.
#pragma once

#define NAPI_VERSION 8
#include <napi.h>
#include <torch/torch.h>

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "tensor_table.h"

namespace vlalign {

using Info = Napi::CallbackInfo;

// ---- argument unpacking -------------------------------------------------------------------------

// An argument that could not be unpacked ("argument 1: expected an integer"). guard() rethrows it
// with the op's name in front; outside a guard it reaches JS as the plain TypeError / Error it is.
class ArgumentError : public Napi::Error {
 public:
  ArgumentError(Napi::Error error, bool typeError) : Napi::Error(std::move(error)), typeError_(typeError) {}
  bool isTypeError() const { return typeError_; }

 private:
  bool typeError_;
};

// "argument <i>: expected <what>" as a TypeError, and "argument <i>: <problem>" as an Error.
[[noreturn]] void argumentTypeError(const Info& info, size_t i, const std::string& expected);
[[noreturn]] void argumentError(const Info& info, size_t i, const std::string& problem);

at::Tensor& tensorAt(const Info& info, size_t i);
c10::optional<at::Tensor> optionalTensorAt(const Info& info, size_t i);  // 0, null, undefined: none
// array of ids; with zeroIsNone, id 0 gives an undefined tensor (an optional entry)
std::vector<at::Tensor> tensorsAt(const Info& info, size_t i, bool zeroIsNone = false);
double numberAt(const Info& info, size_t i);
int64_t intAt(const Info& info, size_t i);
c10::optional<int64_t> optionalIntAt(const Info& info, size_t i);
bool boolAt(const Info& info, size_t i);
std::string stringAt(const Info& info, size_t i);
std::vector<int64_t> intsAt(const Info& info, size_t i);
c10::optional<std::vector<int64_t>> optionalIntsAt(const Info& info, size_t i);
at::ScalarType dtypeAt(const Info& info, size_t i);
c10::optional<at::ScalarType> optionalDtypeAt(const Info& info, size_t i);
c10::Device deviceAt(const Info& info, size_t i);
// JS numbers that are integral become integer scalars (as Python ints do), others doubles.
at::Scalar scalarAt(const Info& info, size_t i);

// ---- results ------------------------------------------------------------------------------------

Napi::Value wrap(Napi::Env env, at::Tensor t);
Napi::Value wrapAll(Napi::Env env, const std::vector<at::Tensor>& ts);
Napi::Value wrapOptional(Napi::Env env, const at::Tensor& t);  // undefined tensor -> 0

// Releases JS buffers whose zero-copy tensors were freed off the JS thread (ops_creation.cc).
void releasePendingBufferRefs();

// Deletes an N-API reference now on the JS thread, else queues it for the next free() (references
// may only be touched on the JS thread; autograd nodes that hold one can die on a worker thread).
void releaseReferenceOnJsThread(napi_env env, napi_ref ref);
// True on the thread that loaded the addon, while its environment is alive.
bool onJsThread();

// Passes accumulated native allocation changes to V8 once they exceed a threshold.
void reportExternalMemory(Napi::Env env);

// ---- errors -------------------------------------------------------------------------------------

std::string shapeString(at::IntArrayRef sizes);
std::string describeTensors(const Info& info, std::initializer_list<size_t> tensorArgs);

// Turns any C++ exception thrown by `body` into a JS error naming `op`: c10::TypeError -> TypeError,
// c10::IndexError -> RangeError, other libtorch errors -> Error, all without libtorch's C++
// backtrace. When `tensorArgs` is given, the shapes of those arguments are appended, so a shape
// mismatch names both shapes.
[[noreturn]] void rethrowAsJs(const Info& info, const char* op, std::initializer_list<size_t> tensorArgs);
[[noreturn]] void rethrowWithOpName(const Info& info, const char* op, const ArgumentError& error);

template <class Body>
inline Napi::Value guard(const Info& info, const char* op, Body&& body,
                         std::initializer_list<size_t> tensorArgs = {}) {
  try {
    return body();
  } catch (const ArgumentError& e) {
    rethrowWithOpName(info, op, e);
  } catch (const Napi::Error&) {
    throw;  // an exception from a JS callback: passed on as it was
  } catch (...) {
    rethrowAsJs(info, op, tensorArgs);
  }
}

// ---- registration -------------------------------------------------------------------------------

// Each op family file defines one of these and adds its functions to the addon's exports.
void registerTensorOps(Napi::Env env, Napi::Object exports);
void registerCreationOps(Napi::Env env, Napi::Object exports);
void registerMathOps(Napi::Env env, Napi::Object exports);
void registerReductionOps(Napi::Env env, Napi::Object exports);
void registerShapeOps(Napi::Env env, Napi::Object exports);
void registerIndexingOps(Napi::Env env, Napi::Object exports);
void registerNnOps(Napi::Env env, Napi::Object exports);
void registerAutogradOps(Napi::Env env, Napi::Object exports);
void registerIoOps(Napi::Env env, Napi::Object exports);
void registerRuntimeOps(Napi::Env env, Napi::Object exports);
void registerLossOps(Napi::Env env, Napi::Object exports);
void registerQuantOps(Napi::Env env, Napi::Object exports);
void registerOptimOps(Napi::Env env, Napi::Object exports);

}  // namespace vlalign

// Adds `fn` to `exports` under `name` with node-addon-api's allocation-free templated callback.
#define VL_EXPORT(exports, env, name, fn) \
  (exports).Set((name), Napi::Function::New<fn>((env), (name)))
