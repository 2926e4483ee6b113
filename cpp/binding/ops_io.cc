// File I/O straight between a file descriptor and tensor storage, so checkpoints of any size are
// read by offset into their final buffer and written without an intermediate JS copy. The
// safetensors format itself (header, validation, atomic rename) lives in lib/torch/safetensors.ts.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "binding.h"

namespace vlalign {
namespace {

std::string errnoText() { return std::strerror(errno); }

// An uninitialised tensor of `shape`. One without elements gets unit strides: its contiguous ones can
// overflow int64 ([0, 2^52, 2^52] has 2^104), which libtorch 2.x refuses ("Stride calculation
// overflowed") where 1.13 did not, and no element of it is ever addressed.
at::Tensor emptyOfShape(const std::vector<int64_t>& shape, at::ScalarType dtype) {
  const auto options = at::TensorOptions().dtype(dtype);
  if (std::find(shape.begin(), shape.end(), 0) == shape.end()) return at::empty(shape, options);
  return at::empty_strided(shape, std::vector<int64_t>(shape.size(), 1), options);
}

// readTensor(fd, offset, dtype, shape): the bytes at [offset, offset + nbytes) as a new CPU tensor.
Napi::Value readTensor(const Info& info) {
  return guard(info, "readTensor", [&] {
    const int fd = static_cast<int>(intAt(info, 0));
    int64_t offset = intAt(info, 1);
    at::Tensor t = emptyOfShape(intsAt(info, 3), dtypeAt(info, 2));
    auto* p = static_cast<char*>(t.data_ptr());
    size_t left = t.nbytes();
    while (left > 0) {
      const ssize_t n = ::pread(fd, p, left, offset);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw Napi::Error::New(info.Env(), "readTensor: " + errnoText());
      if (n == 0) throw Napi::RangeError::New(info.Env(), "readTensor: unexpected end of file");
      p += n;
      offset += n;
      left -= static_cast<size_t>(n);
    }
    return wrap(info.Env(), std::move(t));
  });
}

// writeTensor(fd, t): appends t's elements (row-major, native little-endian) at the fd's position.
Napi::Value writeTensor(const Info& info) {
  return guard(info, "writeTensor", [&] {
    const int fd = static_cast<int>(intAt(info, 0));
    const at::Tensor t = tensorAt(info, 1).detach().to(at::kCPU).contiguous();
    const char* p = static_cast<const char*>(t.data_ptr());
    size_t left = t.nbytes();
    while (left > 0) {
      const ssize_t n = ::write(fd, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw Napi::Error::New(info.Env(), "writeTensor: " + errnoText());
      p += n;
      left -= static_cast<size_t>(n);
    }
    return Napi::Number::New(info.Env(), static_cast<double>(t.nbytes()));
  });
}

}  // namespace

void registerIoOps(Napi::Env env, Napi::Object exports) {
  VL_EXPORT(exports, env, "readTensor", readTensor);
  VL_EXPORT(exports, env, "writeTensor", writeTensor);
}

}  // namespace vlalign
