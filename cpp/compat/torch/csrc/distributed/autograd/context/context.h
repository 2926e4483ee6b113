// Stand-in for a libtorch header that Debian's libtorch-dev (1.13) leaves out but
// c10d/reducer.hpp includes: distributed_ddp.cc needs only the two names reducer.hpp uses (the
// type of Reducer's RpcContext member and GradCallback's static_assert). Their real definitions
// live in libtorch_cpu; nothing here is instantiated. binding.gyp puts cpp/compat after
// libtorch's own include directories, so a libtorch that ships the header (pip wheels, the
// libtorch zip) uses its own.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>

namespace torch {
namespace distributed {
namespace autograd {

class DistAutogradContext {
 public:
  using GradCallback = std::function<bool(at::Tensor&)>;
};

using ContextPtr = std::shared_ptr<DistAutogradContext>;

}  // namespace autograd
}  // namespace distributed
}  // namespace torch
