#!/usr/bin/env bash
# Compile check of the CUDA kernels, with no libtorch and no GPU needed: every cpp/kernels/cuda/*.cu
# is compiled to an object with nvcc for the architectures below (those files use only the CUDA
# runtime and plain pointers), and each header there must also be includable by the host C++
# compiler, as the libtorch glue (cpp/kernels/fused_linear_logprob_cuda.cc) includes it. Then
# scripts/cuda/linear_logprob_rows_check.cu is linked against the kernels (this proves the float and
# double launchers are instantiated) and run when a GPU is visible: it compares the kernels with a
# plain CPU reference.
#
#   bash scripts/check-cuda.sh            NVCC=/path/to/nvcc, CUDA_ARCHS="80 90" to override
#
# Exits 0 with a "skipped" line when nvcc is absent, non-zero when anything fails to compile.
set -euo pipefail
cd "$(dirname "$0")/.."

nvcc="${NVCC:-$(command -v nvcc || true)}"
if [ -z "$nvcc" ]; then
  for candidate in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda; do
    if [ -n "$candidate" ] && [ -x "$candidate/bin/nvcc" ]; then nvcc="$candidate/bin/nvcc"; break; fi
  done
fi
if [ -z "$nvcc" ]; then
  echo "check-cuda: skipped: nvcc not found (put it on PATH or set NVCC / CUDA_HOME)"
  exit 0
fi
echo "check-cuda: $("$nvcc" --version | tail -n 1) ($nvcc)"

# Real code for each architecture this nvcc knows out of Turing .. Blackwell, and PTX of the newest
# for the GPUs after it.
wanted="${CUDA_ARCHS:-75 80 86 89 90 100 120}"
known="$("$nvcc" --list-gpu-arch 2>/dev/null | sed -n 's/^compute_\([0-9]*\)$/\1/p' | tr '\n' ' ' || true)"
archs=()
for arch in $wanted; do
  if [ -z "$known" ] || [[ " $known " == *" $arch "* ]]; then
    archs+=("$arch")
  else
    echo "check-cuda: sm_$arch left out: this nvcc does not know it"
  fi
done
if [ ${#archs[@]} -eq 0 ]; then
  echo "check-cuda: none of the architectures '$wanted' is supported by this nvcc (it knows: $known)" >&2
  exit 1
fi
gencode=()
for arch in "${archs[@]}"; do gencode+=("-gencode=arch=compute_$arch,code=sm_$arch"); done
last="${archs[${#archs[@]}-1]}"
gencode+=("-gencode=arch=compute_$last,code=compute_$last")
echo "check-cuda: architectures: ${archs[*]} (+ PTX $last)"

out="$(mktemp -d "${TMPDIR:-/tmp}/vlalign-check-cuda.XXXXXX")"
trap 'rm -rf "$out"' EXIT
flags=(-std=c++17 -O3 -Xcompiler=-fPIC,-Wall,-Wextra,-Wno-unused-parameter -Wno-deprecated-gpu-targets --Werror all-warnings)

shopt -s nullglob
sources=(cpp/kernels/cuda/*.cu)
headers=(cpp/kernels/cuda/*.h)
if [ ${#sources[@]} -eq 0 ]; then
  echo "check-cuda: no .cu files under cpp/kernels/cuda" >&2
  exit 1
fi

failed=0
objects=()
for src in "${sources[@]}"; do
  obj="$out/$(basename "${src%.cu}").o"
  if "$nvcc" "${flags[@]}" "${gencode[@]}" -c "$src" -o "$obj"; then
    echo "check-cuda: ok $src"
    objects+=("$obj")
  else
    echo "check-cuda: FAILED $src" >&2
    failed=1
  fi
done

# The headers are included by g++ in the CUDA build of the addon: they must not need nvcc.
include="$("$nvcc" --dryrun -c -x cu /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ INCLUDES="\(.*\)".*/\1/p' | head -n 1)"
cxx="${CXX:-c++}"
for header in "${headers[@]}"; do
  # shellcheck disable=SC2086  # $include is nvcc's own list of -I flags
  if printf '#include "%s"\n' "$PWD/$header" | "$cxx" -std=c++17 -Wall -Wextra -Werror $include -fsyntax-only -x c++ -; then
    echo "check-cuda: ok $header (host C++)"
  else
    echo "check-cuda: FAILED $header does not compile as host C++ ($cxx)" >&2
    failed=1
  fi
done
if [ "$failed" -ne 0 ]; then exit 1; fi

check="$out/linear_logprob_rows_check"
if "$nvcc" "${flags[@]}" "${gencode[@]}" scripts/cuda/linear_logprob_rows_check.cu "${objects[@]}" -o "$check"; then
  echo "check-cuda: ok scripts/cuda/linear_logprob_rows_check.cu (linked against the kernels)"
else
  echo "check-cuda: FAILED to build scripts/cuda/linear_logprob_rows_check.cu" >&2
  exit 1
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "$check"
else
  echo "check-cuda: no GPU visible: kernels compiled, not run"
fi
echo "check-cuda: done"
