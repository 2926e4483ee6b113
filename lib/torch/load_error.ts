// Why no native binary loaded, and what to run about it (sharp's "Possible solutions"). The loader
// (native.ts) hands over what it tried and what was thrown; this file names the cause from the
// dynamic loader's own words and the state of the package, and lists the commands for that cause.
// Only the failure path runs it, so it may take a second (it asks python3 where torch is).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);

/** Written by scripts/install.mjs when npm runs it: its absence means the install script never ran. */
export const INSTALL_MARKER = '.vlalign-install.json';

export type LoadFailureCause =
  | 'override-missing' // VLALIGN_NATIVE names no file
  | 'no-binary' // no build/Release, no prebuild for this platform
  | 'stale-binary' // built from other sources than this cpp/
  | 'library-missing' // dlopen: a libtorch (or other) .so is not found
  | 'symbol-mismatch' // dlopen: undefined symbol, i.e. another libtorch version answered
  | 'not-loadable'; // any other dlopen refusal (wrong ELF, GLIBCXX too old, ...)

export interface LoadAttempt {
  packageRoot: string;
  /** The binary the loader tried; null when none was found. */
  binary: string | null;
  /** What locating, verifying or loading it threw. */
  error: unknown;
  env?: NodeJS.ProcessEnv;
}

interface TorchFacts {
  torchLayout(env: NodeJS.ProcessEnv): { version: string; cuda: boolean; libDir: string; via: string };
  torchEnvProblems(env: NodeJS.ProcessEnv): string[];
}

/** The error `import 'vlalign'` throws when no binary loads: the cause and the fix, no raw stack. */
export class NativeLoadError extends Error {
  override name = 'NativeLoadError';
  declare readonly reason: LoadFailureCause;
  /** The first line of what the loader threw (dlopen's message, the hash check's, ...). */
  declare readonly loaderMessage: string;

  constructor(message: string, reason: LoadFailureCause, loaderMessage: string) {
    super(message);
    // Not enumerable, so that Node's report of an uncaught error stays the message alone.
    Object.defineProperty(this, 'reason', { value: reason });
    Object.defineProperty(this, 'loaderMessage', { value: loaderMessage });
  }
}

const DEBIAN_PACKAGES = 'libtorch-dev libgloo-dev libopenblas0-openmp';
const PYTHON_CMAKE_PATH = `python3 -c "import torch;print(torch.utils.cmake_prefix_path)"`;

const FIX = {
  build:
    '`npx vlalign build` compiles the addon now against the libtorch found here (LIBTORCH, Torch_DIR, ' +
    "CMAKE_PREFIX_PATH, python3's torch, Debian's libtorch-dev, in that order; CPU or CUDA)",
  python: `\`LIBTORCH="$(${PYTHON_CMAKE_PATH})" npx vlalign build\` builds against the torch of your python3 (pip, CPU or CUDA)`,
  debian: `\`sudo apt-get install ${DEBIAN_PACKAGES}\` (Debian/Ubuntu) installs the libtorch 1.13 (CPU) the prebuilt binary links`,
  approve:
    "`npm install-scripts approve vlalign && npm rebuild vlalign` lets npm run vlalign's install script, " +
    'which builds from source when no binary fits',
} as const;

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.trim().split('\n')[0] ?? '';
}

/** The cause, from the loader's message (dlopen's wording is stable across glibc versions). */
export function classifyLoadFailure(binary: string | null, message: string, env: NodeJS.ProcessEnv): LoadFailureCause {
  if (binary === null) return env.VLALIGN_NATIVE ? 'override-missing' : 'no-binary';
  if (/built from other sources/.test(message)) return 'stale-binary';
  if (/cannot open shared object file/.test(message)) return 'library-missing';
  if (/undefined symbol/.test(message)) return 'symbol-mismatch';
  return 'not-loadable';
}

function demangle(symbol: string): string {
  try {
    const plain = execFileSync('c++filt', [symbol], { encoding: 'utf8', timeout: 2000 }).trim();
    return plain && plain !== symbol ? `${symbol} (${plain})` : symbol;
  } catch {
    return symbol;
  }
}

function describeTorch(facts: TorchFacts, env: NodeJS.ProcessEnv, envProblems: string[]): string {
  if (envProblems.length > 0) return 'not searched while LIBTORCH / Torch_DIR point nowhere';
  try {
    const t = facts.torchLayout(env);
    return `${t.version} (${t.cuda ? 'CUDA' : 'CPU'}) at ${t.libDir}, found via ${t.via}`;
  } catch (error) {
    return `none usable (${firstLine(error).replace(/^vlalign: /, '')})`;
  }
}

interface Context {
  attempt: LoadAttempt;
  env: NodeJS.ProcessEnv;
  platform: string;
  prebuild: string;
  isPrebuild: boolean;
  installRan: boolean;
}

// One cause: its explanation lines and its fixes, most likely first.
function explain(cause: LoadFailureCause, c: Context, loaderMessage: string): { why: string[]; fixes: string[] } {
  const { attempt, env } = c;
  const binary = attempt.binary ?? '';
  const skippedInstall = c.installRan
    ? []
    : [
        "vlalign's install script never ran here (npm skipped it: not approved in package.json allowScripts, " +
          'denied, or --ignore-scripts), so no source build was tried.',
      ];
  switch (cause) {
    case 'override-missing':
      return {
        why: [`VLALIGN_NATIVE=${env.VLALIGN_NATIVE} names no file.`],
        fixes: [
          '`unset VLALIGN_NATIVE` (the loader then takes build/Release, else the prebuilt binary)',
          'or point VLALIGN_NATIVE at a built vlalign.node',
        ],
      };
    case 'no-binary':
      return {
        why: [
          `No vlalign binary for ${c.platform}: no source build in ${path.join(attempt.packageRoot, 'build/Release')} ` +
            `and no ${path.relative(attempt.packageRoot, c.prebuild)} (vlalign ships a prebuilt binary only for ` +
            "linux-x64 with Debian's libtorch 1.13, CPU).",
          ...skippedInstall,
        ],
        fixes: [FIX.build, FIX.python, ...(c.installRan ? [] : [FIX.approve])],
      };
    case 'stale-binary':
      return {
        why: [`${binary} was built from other sources than this package's cpp/ (an older build or a copied binary).`],
        fixes: [
          FIX.build,
          ...(binary.startsWith(path.join(attempt.packageRoot, 'build'))
            ? [`or remove ${path.join(attempt.packageRoot, 'build')} to fall back to the prebuilt binary`]
            : []),
        ],
      };
    case 'library-missing': {
      const library = /([^\s:]+): cannot open shared object file/.exec(loaderMessage)?.[1] ?? 'a shared library';
      return {
        why: [
          `${binary} links ${library}, which the dynamic loader cannot find.`,
          !c.isPrebuild
            ? 'The libtorch it was built against has moved or been removed since the build.'
            : /^lib(torch|c10)/.test(library)
              ? "The prebuilt binary links Debian's libtorch 1.13 (CPU) from /usr/lib/x86_64-linux-gnu, which is not installed here."
              : `${library} is a dependency of Debian's libtorch 1.13 (CPU), which the prebuilt binary links.`,
          ...skippedInstall,
        ],
        fixes: c.isPrebuild ? [FIX.debian, FIX.build, FIX.python] : [FIX.build, FIX.python],
      };
    }
    case 'symbol-mismatch': {
      const symbol = /undefined symbol: (\S+)/.exec(loaderMessage)?.[1] ?? '?';
      return {
        why: [
          `${binary} was built against another libtorch than the one the dynamic loader found: undefined symbol ${demangle(symbol)}.`,
          ...(c.isPrebuild ? ["The prebuilt binary is for Debian's libtorch 1.13 (CPU)."] : []),
          ...(env.LD_LIBRARY_PATH ? [`LD_LIBRARY_PATH=${env.LD_LIBRARY_PATH} may put another libtorch first.`] : []),
          ...skippedInstall,
        ],
        fixes: [FIX.build, FIX.python, ...(c.isPrebuild ? [FIX.debian] : [])],
      };
    }
    case 'not-loadable':
      return {
        why: [`The dynamic loader refused ${binary}.`, ...skippedInstall],
        fixes: [FIX.build, FIX.python],
      };
  }
}

/** The whole error for a failed load: cause, the loader's own line, this machine's libtorch, fixes. */
export function nativeLoadError(attempt: LoadAttempt): NativeLoadError {
  const env = attempt.env ?? process.env;
  const facts = require(path.join(attempt.packageRoot, 'scripts/native-build.cjs')) as TorchFacts;
  const platform = `${process.platform}-${process.arch}`;
  const prebuild = path.join(attempt.packageRoot, 'prebuilds', platform, 'vlalign.napi.node');
  const loaderMessage = firstLine(attempt.error);
  const cause = classifyLoadFailure(attempt.binary, loaderMessage, env);
  const context: Context = {
    attempt,
    env,
    platform,
    prebuild,
    isPrebuild: attempt.binary?.startsWith(path.join(attempt.packageRoot, 'prebuilds')) ?? false,
    installRan: fs.existsSync(path.join(attempt.packageRoot, INSTALL_MARKER)),
  };
  const { why, fixes } = explain(cause, context, loaderMessage);
  const envProblems = facts.torchEnvProblems(env);
  const lines = [
    `vlalign: the native addon did not load (${platform}, Node ${process.version}, N-API ${process.versions.napi}).`,
    ...why.map((l) => `Cause: ${l}`),
    ...envProblems.map((p) => `Cause: ${p}.`),
    ...(attempt.binary && cause !== 'stale-binary' ? [`The loader said: ${loaderMessage}`] : []),
    `libtorch on this machine: ${describeTorch(facts, env, envProblems)}`,
    'Possible solutions:',
    ...envProblems.map((p) => `- fix or unset ${p.split('=')[0]} (see above), then \`npx vlalign build\``),
    ...fixes.map((f) => `- ${f}`),
    `See "Installing in your project" in vlalign's README (${path.join(attempt.packageRoot, 'README.md')}).`,
  ];
  const error = new NativeLoadError(lines.join('\n'), cause, loaderMessage);
  // The module loader's frames say nothing to a user: keep the loader's own line only.
  Error.captureStackTrace(error, nativeLoadError);
  error.stack = error.stack?.split('\n    at ').slice(0, 2).join('\n    at ');
  return error;
}
