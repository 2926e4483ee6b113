// c10d process groups for lib/distributed: the state one group shares between its two files
// (distributed_group.cc: rendezvous, creation, destruction; distributed_collectives.cc: the
// collectives and how their completion reaches JS).
//
// Gloo is compiled whenever its headers are there (Debian: libgloo-dev; libtorch builds that ship
// gloo/). NCCL is compiled only where CMakeLists.txt defines VLALIGN_WITH_NCCL: a CUDA libtorch with
// nccl.h found. No such build has been made yet: that path is written against the c10d API but has
// never been compiled or run (docs/distributed.md).
#pragma once

#include <torch/version.h>

#if __has_include(<gloo/context.h>) && !defined(USE_C10D_GLOO)
#define USE_C10D_GLOO
#endif
#if defined(VLALIGN_WITH_NCCL) && !defined(USE_C10D_NCCL)
#define USE_C10D_NCCL
#endif

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#endif

#include <chrono>
#include <exception>
#include <memory>
#include <string>

#include "binding.h"

namespace vlalign {

// The class the Gloo and NCCL process groups derive from: ProcessGroup in 1.13, Backend from 2.0
// (where ProcessGroup became a dispatcher over backends).
#if TORCH_VERSION_MAJOR >= 2
using CollectiveBackend = c10d::Backend;
#else
using CollectiveBackend = c10d::ProcessGroup;
#endif

struct ProcessGroupState {
  std::string backend;  // "gloo" | "nccl"
  int rank = 0;
  int worldSize = 1;
  std::chrono::milliseconds timeout{0};
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<CollectiveBackend> collectives;
};

// The process's group, or null. JS thread only; collectives in flight hold their own reference, so
// destroying the group never waits for them.
std::shared_ptr<ProcessGroupState> currentProcessGroup();

// The message of a c10d / Gloo exception without libtorch's backtrace or Gloo's "[file:line] " prefix.
std::string distributedErrorText(std::exception_ptr error);

void registerDistributedOps(Napi::Env env, Napi::Object exports);
void registerCollectiveOps(Napi::Env env, Napi::Object exports);
void registerDdpOps(Napi::Env env, Napi::Object exports);  // distributed_ddp.cc

}  // namespace vlalign
