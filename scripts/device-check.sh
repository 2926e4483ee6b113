#!/usr/bin/env bash
# The GPU check, as one script for a machine with an NVIDIA GPU, a CUDA PyTorch (with transformers,
# peft and tensorboard) and nvcc, but no Node and no network. Prepare its carry here first with
# `bash scripts/device-pack.sh` (.device/: node, the production node_modules, dist/), then on the
# GPU machine, from the repository root:
#
#   bash scripts/device-check.sh            build against python3's CUDA torch, check on the GPU
#   bash scripts/device-check.sh --cpu      the same checks on the CPU with the build already here
#                                           (VLALIGN_NATIVE or build/Release); --build builds it first
#
# Every step prints one line `CHECK <name> PASS|FAIL|SKIP <detail>`; a failure does not stop the
# next check. Exit status: the number of FAIL lines. Each check has a timeout (DEVICE_CHECK_TIMEOUT,
# default 120 s; the build 360 s) and the whole run stops starting checks after DEVICE_CHECK_BUDGET
# seconds (default 470). Logs go to the work directory (DEVICE_CHECK_WORK, default a new /tmp
# folder) and, when $OUT is set (the device runner's output folder), are copied there.
# PYTHON picks the interpreter (default: python3, in --cpu mode the first python3 with torch).
set -uo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

mode=cuda
build=auto
for arg in "$@"; do
  case "$arg" in
    --cpu) mode=cpu ;;
    --build) build=yes ;;
    -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "device-check: unknown argument '$arg' (--cpu, --build)" >&2; exit 2 ;;
  esac
done
[ "$build" = auto ] && { [ "$mode" = cuda ] && build=yes || build=no; }

timeout_s="${DEVICE_CHECK_TIMEOUT:-120}"
budget_s="${DEVICE_CHECK_BUDGET:-470}"
work="${DEVICE_CHECK_WORK:-$(mktemp -d /tmp/vlalign-device-check.XXXXXX)}"
mkdir -p "$work/logs"
failures=0
declare -a summary=()

check_line() { # name verdict detail
  local line="CHECK $1 $2 ${3:-}"
  echo "$line"
  summary+=("$line")
  [ "$2" = FAIL ] && failures=$((failures + 1))
  return 0
}

# Seconds a step may take: its own limit, cut to what is left of the whole budget.
limit_for() {
  local left=$((budget_s - SECONDS))
  [ "$left" -lt "$1" ] && echo "$left" || echo "$1"
}

# Runs one step whose output ends with `RESULT {"ok": true|false|null, "detail": "..."}`.
run_step() { # name limit command...
  local name="$1" limit
  limit="$(limit_for "$2")"
  shift 2
  if [ "$limit" -lt 10 ]; then
    check_line "$name" FAIL "not run: the ${budget_s} s budget of the whole check is spent"
    return
  fi
  local log="$work/logs/$name.log"
  timeout --kill-after=10 "$limit" "$@" > "$log" 2>&1
  local status=$?
  local result
  result="$(grep '^RESULT ' "$log" | tail -n 1 | sed 's/^RESULT //')"
  if [ -z "$result" ]; then
    local why="exit $status"
    [ "$status" -eq 124 ] || [ "$status" -eq 137 ] && why="timed out after ${limit} s"
    check_line "$name" FAIL "$why, no result: $(grep -v '^\s*$' "$log" | tail -n 2 | tr '\n' ' ' | cut -c1-300)"
    return
  fi
  local verdict detail
  verdict="$(node -e 'const r=JSON.parse(process.argv[1]);console.log(r.ok===true?"PASS":r.ok===null?"SKIP":"FAIL")' "$result")"
  detail="$(node -e 'console.log(JSON.parse(process.argv[1]).detail)' "$result")"
  check_line "$name" "$verdict" "$detail"
}

# Node: the carried binary when there is one (the GPU machine has none of its own).
if [ -f .device/node.tar.xz ]; then
  tar -C .device -xJf .device/node.tar.xz && export PATH="$root/.device/node/bin:$PATH"
fi
if ! command -v node > /dev/null; then
  check_line node FAIL "no node on PATH and no .device/node.tar.xz (run scripts/device-pack.sh where Node is)"
  exit "$failures"
fi
[ -d node_modules ] || { [ -f .device/node_modules.tar.xz ] && tar -xJf .device/node_modules.tar.xz; }
[ -f dist/index.js ] || { [ -f .device/dist.tar.xz ] && tar -xJf .device/dist.tar.xz; }
problems=""
[ -d node_modules/node-addon-api ] || problems+=" node_modules (npm ci, or .device/node_modules.tar.xz)"
[ -f dist/index.js ] || problems+=" dist/ (npm run build:ts, or .device/dist.tar.xz)"
if [ -n "$problems" ]; then
  check_line node FAIL "node $(node --version), missing:$problems"
  exit "$failures"
fi
check_line node PASS "node $(node --version) at $(command -v node), mode $mode, work dir $work"

# Python: the one whose torch is the libtorch to build against.
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  if [ "$mode" = cpu ]; then
    for candidate in python3 /usr/bin/python3; do
      if "$candidate" -c 'import torch' 2> /dev/null; then PYTHON="$candidate"; break; fi
    done
  fi
fi
if [ "$mode" = cuda ]; then
  if ! "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' > "$work/logs/python-torch.log" 2>&1; then
    check_line python-torch FAIL "$PYTHON has no CUDA torch: $(tail -n 1 "$work/logs/python-torch.log")"
  fi
fi

# The addon: built against python's torch (CUDA: cmake-js, with cpp/kernels/cuda), or the one here.
if [ "$build" = yes ]; then
  if [ -z "${LIBTORCH:-}${Torch_DIR:-}" ]; then
    LIBTORCH="$("$PYTHON" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)' 2> /dev/null)" && export LIBTORCH
  fi
  if [ "$mode" = cuda ]; then
    # Only this machine's GPU architectures: a build for all of them would take minutes more.
    if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ] && command -v nvidia-smi > /dev/null; then
      TORCH_CUDA_ARCH_LIST="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | sort -u | paste -sd ';')"
      export TORCH_CUDA_ARCH_LIST
    fi
    # pip's NCCL headers (nvidia-nccl-cu*) for the NCCL process groups.
    if [ -z "${NCCL_INCLUDE_DIR:-}" ]; then
      NCCL_INCLUDE_DIR="$("$PYTHON" -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "include"))' 2> /dev/null)" &&
        export NCCL_INCLUDE_DIR
    fi
  fi
  export VLALIGN_BUILD_JOBS="${VLALIGN_BUILD_JOBS:-$(nproc)}"
  limit="$(limit_for "${DEVICE_CHECK_BUILD_TIMEOUT:-360}")"
  begun=$SECONDS
  if timeout --kill-after=10 "$limit" node scripts/build-native.mjs > "$work/logs/build.log" 2>&1; then
    check_line build PASS "$(grep '^vlalign: built' "$work/logs/build.log" | tail -n 1) (arch ${TORCH_CUDA_ARCH_LIST:-default})"
  else
    check_line build FAIL "after $((SECONDS - begun)) s: $(grep -E 'error|Error|vlalign:' "$work/logs/build.log" | head -n 3 | tr '\n' ' ' | cut -c1-400)"
  fi
else
  check_line build SKIP "--cpu uses the binary already built here (${VLALIGN_NATIVE:-build/Release or the prebuild}); --build builds one"
fi

info="$(node -e 'import("./dist/index.js").then((m) => console.log(JSON.stringify({ ...m.torch.buildInfo(), gpus: m.torch.cuda.deviceCount() })))' 2> "$work/logs/load.log")"
if [ -z "$info" ]; then
  check_line load FAIL "$(grep -v '^\s*$' "$work/logs/load.log" | grep -m 2 -E 'Error|Cause' | tr '\n' ' ' | cut -c1-400)"
elif [ "$mode" = cuda ] && ! echo "$info" | grep -q '"cuda":true'; then
  check_line load FAIL "the addon loads but was built without CUDA: $info"
else
  check_line load PASS "$info"
fi

device=cuda
[ "$mode" = cpu ] && device=cpu
node_check() { run_step "$1" "$timeout_s" node scripts/device-checks.mjs "$2" --device "$device" --work "$work"; }
missing_ok=()
[ "$mode" = cpu ] && missing_ok=(--missing-ok)

# The tiny models every later check reads.
limit="$(limit_for 60)"
if timeout "$limit" node scripts/make-tiny-models.mjs "$work/tiny" --family qwen2_vl > "$work/logs/tiny-models.log" 2>&1; then
  check_line tiny-models PASS "$(tail -n 1 "$work/logs/tiny-models.log")"
else
  check_line tiny-models FAIL "$(tail -n 2 "$work/logs/tiny-models.log" | tr '\n' ' ' | cut -c1-300)"
fi

node_check fused-kernels fused-kernels
node_check linear4bit linear4bit
node_check adamw adamw
node_check mpo-step mpo-step
node_check allreduce allreduce

# Files we write, read by the libraries users hand them to: the Node side writes, Python reads.
peer_check() { # name node-writer python-check
  node_check "$1-write" "$2"
  if grep -q '"ok":true' <<< "$(grep '^RESULT ' "$work/logs/$1-write.log" 2> /dev/null)"; then
    run_step "$1" "$timeout_s" "$PYTHON" scripts/device-checks.py "$3" "$work" --device "$device" "${missing_ok[@]}"
  else
    check_line "$1" FAIL "not run: $1-write failed"
  fi
}
peer_check peft write-adapter peft
peer_check transformers write-checkpoint transformers
peer_check tensorboard write-events tensorboard

echo "device-check: ${#summary[@]} lines, $failures failed, $((SECONDS)) s (logs in $work/logs)"
if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
  cp -r "$work/logs" "$OUT/device-check-logs" 2> /dev/null
  printf '%s\n' "${summary[@]}" > "$OUT/device-check-summary.txt"
fi
exit $((failures > 255 ? 255 : failures))
