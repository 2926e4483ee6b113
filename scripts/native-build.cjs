// Facts the native builds share (binding.gyp, CMakeLists.txt, the install script and the runtime
// loader): the list of C++ sources, their hash, and where libtorch is. CommonJS so that gyp, CMake
// and plain `node` can call it before anything is compiled.
//
//   node scripts/native-build.cjs sources|sources-<isa>|isa-flags <isa>|source-hash|hash-header
// [dir]|include-dirs|cxx-flags|cxx-standard|libs|torch-cmake-dir|cuda
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

// Where TorchConfig.cmake sits below a prefix: a libtorch zip, a Debian prefix, Python's
// torch.utils.cmake_prefix_path (…/share/cmake), or the config dir itself (Torch_DIR).
const CMAKE_SUBDIRS = ['share/cmake/Torch', 'lib/cmake/Torch', 'lib/x86_64-linux-gnu/cmake/Torch', 'Torch', ''];

function cmakeDirUnder(prefix) {
  for (const rel of CMAKE_SUBDIRS) {
    const dir = path.join(prefix, rel);
    if (fs.existsSync(path.join(dir, 'TorchConfig.cmake'))) return dir;
  }
  return null;
}

const DEBIAN_CMAKE_DIR = '/usr/lib/x86_64-linux-gnu/cmake/Torch';

// The environment variables a user sets to choose a libtorch, in search order.
const TORCH_ENV = ['LIBTORCH', 'Torch_DIR'];

/** The variables among LIBTORCH / Torch_DIR that are set but hold no TorchConfig.cmake. */
function torchEnvProblems(env = process.env) {
  return TORCH_ENV.filter((name) => env[name] && !cmakeDirUnder(env[name])).map(
    (name) =>
      `${name}=${env[name]} holds no TorchConfig.cmake (looked in ${CMAKE_SUBDIRS.map((d) => d || '.').join(', ')}); ` +
      `point it at a libtorch directory (the unzipped libtorch/, or python3 -c "import torch;print(torch.utils.cmake_prefix_path)") or unset it`,
  );
}

// libtorch's CMake config dir and how it was found, as docs/ARCHITECTURE.md describes: LIBTORCH,
// Torch_DIR, CMAKE_PREFIX_PATH, then python3's torch, then Debian's libtorch-dev. A LIBTORCH or
// Torch_DIR that points nowhere is an error, never silently skipped for the next candidate.
function torchSearch(env = process.env) {
  const problems = torchEnvProblems(env);
  if (problems.length > 0) throw new Error(`vlalign: ${problems.join('; ')}`);
  const candidates = [
    ...TORCH_ENV.map((name) => () => env[name] && { cmakeDir: cmakeDirUnder(env[name]), via: name }),
    () => {
      const prefixes = (env.CMAKE_PREFIX_PATH || '').split(':').filter(Boolean);
      const cmakeDir = prefixes.map(cmakeDirUnder).find(Boolean);
      return cmakeDir && { cmakeDir, via: 'CMAKE_PREFIX_PATH' };
    },
    () => {
      const cmakeDir = pythonTorchCmakeDir();
      return cmakeDir && { cmakeDir, via: "python3's torch" };
    },
    () => cmakeDirUnder(DEBIAN_CMAKE_DIR) && { cmakeDir: DEBIAN_CMAKE_DIR, via: "Debian's libtorch-dev" },
  ];
  for (const candidate of candidates) {
    const found = candidate();
    if (found) return found;
  }
  throw new Error(
    "vlalign: libtorch not found (searched LIBTORCH, Torch_DIR, CMAKE_PREFIX_PATH, python3's torch, " +
      `${DEBIAN_CMAKE_DIR}). Set LIBTORCH to a libtorch directory, install torch for python3, or on Debian/Ubuntu ` +
      'run `sudo apt-get install libtorch-dev libgloo-dev libopenblas0-openmp`.',
  );
}

function torchCmakeDir() {
  return torchSearch().cmakeDir;
}

// "major.minor.patch" from the headers the build compiles against (Debian's TorchConfigVersion.cmake
// says 1.13.0 for its 1.13.1 package, as do its headers: the headers are what the binary reports).
function torchVersion(includeDirs, cmakeDir) {
  const header = includeDirs.map((d) => path.join(d, 'torch/version.h')).find((f) => fs.existsSync(f));
  if (header) {
    const text = fs.readFileSync(header, 'utf8');
    const part = (name) => new RegExp(`#define TORCH_VERSION_${name} (\\d+)`).exec(text)?.[1];
    if (part('MAJOR')) return `${part('MAJOR')}.${part('MINOR')}.${part('PATCH')}`;
  }
  const config = path.join(cmakeDir, 'TorchConfigVersion.cmake');
  if (!fs.existsSync(config)) return 'unknown';
  return /PACKAGE_VERSION "([^"]+)"/.exec(fs.readFileSync(config, 'utf8'))?.[1] ?? 'unknown';
}

function torchLayout(env = process.env) {
  const { cmakeDir, via } = torchSearch(env);
  // The install prefix sits three levels up (<prefix>/share/cmake/Torch: the libtorch zip, pip's
  // torch) or four (<prefix>/lib/x86_64-linux-gnu/cmake/Torch: Debian).
  const prefix = ['../../..', '../../../..']
    .map((up) => path.resolve(cmakeDir, up))
    .find((p) => fs.existsSync(path.join(p, 'include/torch/csrc/api/include/torch/torch.h')));
  if (!prefix) throw new Error(`vlalign: no libtorch headers (include/torch/csrc/api/include) above ${cmakeDir}`);
  const libDir = [path.join(prefix, 'lib'), path.resolve(cmakeDir, '../..')].find((d) =>
    fs.existsSync(path.join(d, 'libtorch.so')),
  );
  if (!libDir) throw new Error(`vlalign: no libtorch.so next to ${cmakeDir}`);
  const config = fs.readFileSync(path.join(cmakeDir, 'TorchConfig.cmake'), 'utf8');
  const abi = /_GLIBCXX_USE_CXX11_ABI=(\d)/.exec(config);
  // libtorch 2.x releases that need a newer C++ than our 17 say so on their imported target.
  const standard = Number(/CXX_STANDARD (\d+)/.exec(config)?.[1] ?? 17);
  const includeDirs = [path.join(prefix, 'include'), path.join(prefix, 'include/torch/csrc/api/include')];
  return {
    cmakeDir,
    via,
    version: torchVersion(includeDirs, cmakeDir),
    includeDirs,
    libDir,
    cxxStandard: Math.max(17, standard),
    cxxFlags: [
      ...(abi ? [`-D_GLIBCXX_USE_CXX11_ABI=${abi[1]}`] : []),
      ...(standard > 17 ? [`-std=c++${standard}`] : []),
    ],
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
  torchSearch,
  torchEnvProblems,
  torchLayout,
  linkFlags,
};

if (require.main === module) {
  const what = process.argv[2];
  const print = (lines) => process.stdout.write(`${[].concat(lines).join('\n')}\n`);
  // Called by gyp and CMake: a libtorch that cannot be found is one line, not a stack.
  try {
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
      case 'cxx-standard':
        print(String(torchLayout().cxxStandard));
        break;
      default:
        process.stderr.write(
          `usage: node scripts/native-build.cjs sources|sources-avx2|sources-avx512|isa-flags <isa>|source-hash|hash-header [dir]|include-dirs|cxx-flags|cxx-standard|libs|torch-cmake-dir|cuda\n`,
        );
        process.exit(2);
    }
  } catch (error) {
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  }
}
