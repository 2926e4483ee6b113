// Facts the native builds share (binding.gyp, CMakeLists.txt, the install script and the runtime
// loader): the list of C++ sources, their hash, and where libtorch is. CommonJS so that gyp, CMake
// and plain `node` can call it before anything is compiled.
//
//   node scripts/native-build.cjs sources|sources-<isa>|isa-flags <isa>|source-hash|hash-header
// [dir]|include-dirs|cxx-flags|libs|torch-cmake-dir|cuda
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { execFileSync } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const cppDir = path.join(root, 'cpp');

function listFiles(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? listFiles(full) : [full];
  });
}

// Kernel files compiled with extra instruction sets, by file-name suffix (ATen's DispatchStub
// idea): only these files get the flags, and dispatch.cc picks one at run time.
const ISA_FLAGS = {
  avx2: ['-mavx2', '-mfma'],
  avx512: ['-mavx512f', '-mavx512dq', '-mavx512bw', '-mavx512vl', '-mfma'],
};

function cppSources() {
  return listFiles(cppDir)
    .filter((f) => f.endsWith('.cc') && !f.includes(`${path.sep}cuda${path.sep}`))
    .map((f) => path.relative(root, f))
    .sort();
}

const isaOf = (file) => Object.keys(ISA_FLAGS).find((isa) => file.endsWith(`_${isa}.cc`));

// C++ translation units, relative to the package root (gyp wants relative paths): the baseline
// ones, or those of one instruction set.
function sources(isa = null) {
  return cppSources().filter((f) => (isaOf(f) ?? null) === isa);
}

// Hash of everything under cpp/: a binary records it, the loader compares it with the package's.
function sourceHash() {
  if (!fs.existsSync(cppDir)) return null;
  const hash = crypto.createHash('sha256');
  for (const file of listFiles(cppDir).sort()) {
    hash.update(path.relative(cppDir, file).split(path.sep).join('/'));
    hash.update('\0');
    hash.update(fs.readFileSync(file));
    hash.update('\0');
  }
  return hash.digest('hex').slice(0, 24);
}

const MARKER = 'VLALIGN_SOURCE_HASH=';

// The hash a built binary carries, read from its bytes without loading it.
function binarySourceHash(file) {
  const bytes = fs.readFileSync(file);
  const at = bytes.indexOf(MARKER);
  if (at < 0) return null;
  const end = bytes.indexOf(';', at);
  return bytes.subarray(at + MARKER.length, end).toString('latin1');
}

function pythonTorchCmakeDir() {
  try {
    const out = execFileSync('python3', ['-c', 'import torch.utils; print(torch.utils.cmake_prefix_path)'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const dir = path.join(out.toString().trim(), 'Torch');
    return fs.existsSync(path.join(dir, 'TorchConfig.cmake')) ? dir : null;
  } catch {
    return null;
  }
}

function cmakeDirUnder(prefix) {
  for (const rel of ['share/cmake/Torch', 'lib/cmake/Torch', 'lib/x86_64-linux-gnu/cmake/Torch', '']) {
    const dir = path.join(prefix, rel);
    if (fs.existsSync(path.join(dir, 'TorchConfig.cmake'))) return dir;
  }
  return null;
}

// libtorch's CMake config dir, found as docs/ARCHITECTURE.md describes: LIBTORCH, Torch_DIR,
// CMAKE_PREFIX_PATH, then python3's torch, then Debian's libtorch-dev.
function torchCmakeDir() {
  const env = process.env;
  const candidates = [
    env.LIBTORCH && cmakeDirUnder(env.LIBTORCH),
    env.Torch_DIR && cmakeDirUnder(env.Torch_DIR),
    ...(env.CMAKE_PREFIX_PATH || '').split(':').filter(Boolean).map(cmakeDirUnder),
    pythonTorchCmakeDir(),
    cmakeDirUnder('/usr/lib/x86_64-linux-gnu/cmake/Torch'),
  ];
  const found = candidates.find(Boolean);
  if (!found) {
    throw new Error(
      'vlalign: libtorch not found. Set LIBTORCH to a libtorch directory, install torch for python3, ' +
        'or run `bash scripts/setup.sh` (Debian: libtorch-dev libgloo-dev libopenblas0-openmp).',
    );
  }
  return found;
}

function torchLayout() {
  const cmakeDir = torchCmakeDir();
  const prefix = path.resolve(cmakeDir, '../../../..');
  const libDir = [path.join(prefix, 'lib'), path.resolve(cmakeDir, '../..')].find((d) =>
    fs.existsSync(path.join(d, 'libtorch.so')),
  );
  if (!libDir) throw new Error(`vlalign: no libtorch.so next to ${cmakeDir}`);
  const config = fs.readFileSync(path.join(cmakeDir, 'TorchConfig.cmake'), 'utf8');
  const abi = /_GLIBCXX_USE_CXX11_ABI=(\d)/.exec(config);
  return {
    cmakeDir,
    includeDirs: [path.join(prefix, 'include'), path.join(prefix, 'include/torch/csrc/api/include')],
    libDir,
    cxxFlags: abi ? [`-D_GLIBCXX_USE_CXX11_ABI=${abi[1]}`] : [],
    cuda: fs.existsSync(path.join(libDir, 'libtorch_cuda.so')),
  };
}

function linkFlags(layout) {
  const libs = ['-ltorch', '-ltorch_cpu', '-lc10'];
  if (layout.cuda) libs.push('-ltorch_cuda', '-lc10_cuda');
  return [`-L${layout.libDir}`, `-Wl,-rpath,${layout.libDir}`, '-Wl,--no-as-needed', ...libs, '-Wl,--as-needed'];
}

// Writes <dir>/vlalign_source_hash.h (only when its content changes, so make rebuilds just the one
// file that includes it) and returns dir for the include path.
function writeHashHeader(dir) {
  const file = path.join(dir, 'vlalign_source_hash.h');
  const text = `// Generated by scripts/native-build.cjs: the hash of cpp/ this binary is built from.\n#define VLALIGN_SOURCE_HASH "${sourceHash()}"\n`;
  fs.mkdirSync(dir, { recursive: true });
  if (!fs.existsSync(file) || fs.readFileSync(file, 'utf8') !== text) fs.writeFileSync(file, text);
  return dir;
}

module.exports = {
  root,
  writeHashHeader,
  sources,
  cppSources,
  ISA_FLAGS,
  sourceHash,
  binarySourceHash,
  torchCmakeDir,
  torchLayout,
  linkFlags,
};

if (require.main === module) {
  const what = process.argv[2];
  const print = (lines) => process.stdout.write(`${[].concat(lines).join('\n')}\n`);
  switch (what) {
    case 'sources':
      print(sources());
      break;
    case 'sources-avx2':
      print(sources('avx2'));
      break;
    case 'sources-avx512':
      print(sources('avx512'));
      break;
    case 'isa-flags':
      print(ISA_FLAGS[process.argv[3]]);
      break;
    case 'source-hash':
      print(sourceHash());
      break;
    case 'hash-header':
      print(writeHashHeader(path.resolve(process.argv[3] || 'build/generated')));
      break;
    case 'include-dirs':
      print(torchLayout().includeDirs);
      break;
    case 'cxx-flags':
      print(torchLayout().cxxFlags);
      break;
    case 'libs':
      print(linkFlags(torchLayout()));
      break;
    case 'torch-cmake-dir':
      print(torchCmakeDir());
      break;
    case 'cuda':
      print(String(torchLayout().cuda));
      break;
    default:
      process.stderr.write(
        `usage: node scripts/native-build.cjs sources|sources-avx2|sources-avx512|isa-flags <isa>|source-hash|hash-header [dir]|include-dirs|cxx-flags|libs|torch-cmake-dir|cuda\n`,
      );
      process.exit(2);
  }
}
