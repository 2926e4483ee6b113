// A copy of vlalign laid out as npm installs it (dist/, scripts/, cpp/, prebuilds/, node_modules),
// holding only the loader (lib/torch/native.ts and load_error.ts compiled to dist/torch/) and the
// CLI's entry points, so that each test can take away or damage one piece (the prebuild, a libtorch
// dependency of the binary, the install marker) and import it in a fresh Node process, as a user does.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ts from 'typescript';

export const repoRoot = path.resolve(import.meta.dirname, '../..');
export const shippedPrebuild = path.join(repoRoot, `prebuilds/${process.platform}-${process.arch}/vlalign.napi.node`);

function compile(from: string, to: string): void {
  const source = fs.readFileSync(path.join(repoRoot, from), 'utf8');
  const out = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 },
    fileName: from,
  });
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.writeFileSync(to, out.outputText);
}

export interface FakePackage {
  root: string;
  prebuild: string;
  /** Imports the loader in a fresh process; stdout is the loaded binary's path on success. */
  importLoader(env?: NodeJS.ProcessEnv): { status: number | null; stdout: string; stderr: string };
  /** Runs bin/vlalign.mjs with these arguments in a fresh process. */
  cli(args: string[], env?: NodeJS.ProcessEnv): { status: number | null; stdout: string; stderr: string };
  /** Runs one of the package's scripts (relative to its root) in a fresh process. */
  script(file: string, env?: NodeJS.ProcessEnv): { status: number | null; stdout: string; stderr: string };
  remove(): void;
}

// The user's environment without whatever this machine sets to choose a libtorch or a binary.
function cleanEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of ['VLALIGN_NATIVE', 'LIBTORCH', 'Torch_DIR', 'CMAKE_PREFIX_PATH', 'VLALIGN_PREBUILD'])
    delete env[name];
  return { ...env, ...extra };
}

export function makeFakePackage(options: { prebuild?: boolean } = {}): FakePackage {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vlalign-pkg-'));
  fs.writeFileSync(path.join(root, 'package.json'), JSON.stringify({ name: 'vlalign', type: 'module' }));
  compile('lib/torch/native.ts', path.join(root, 'dist/torch/native.js'));
  compile('lib/torch/load_error.ts', path.join(root, 'dist/torch/load_error.js'));
  compile('lib/cli/build_addon.ts', path.join(root, 'dist/cli/build_addon.js'));
  // Stands in for dist/cli/main.js, which loads the addon through the same import at its top.
  fs.writeFileSync(
    path.join(root, 'dist/cli/main.js'),
    "import '../torch/native.js';\nexport async function main() { console.log('main ran'); }\n",
  );
  fs.mkdirSync(path.join(root, 'scripts'));
  fs.mkdirSync(path.join(root, 'bin'));
  for (const file of ['scripts/native-build.cjs', 'scripts/build-native.mjs', 'scripts/install.mjs', 'bin/vlalign.mjs'])
    fs.copyFileSync(path.join(repoRoot, file), path.join(root, file));
  fs.symlinkSync(path.join(repoRoot, 'cpp'), path.join(root, 'cpp'));
  fs.symlinkSync(path.join(repoRoot, 'node_modules'), path.join(root, 'node_modules'));
  const prebuild = path.join(root, path.relative(repoRoot, shippedPrebuild));
  if (options.prebuild !== false) {
    fs.mkdirSync(path.dirname(prebuild), { recursive: true });
    fs.copyFileSync(shippedPrebuild, prebuild);
  }
  const run = (args: string[], env: NodeJS.ProcessEnv) =>
    spawnSync(process.execPath, args, { cwd: os.tmpdir(), env: cleanEnv(env), encoding: 'utf8', timeout: 60_000 });
  return {
    root,
    prebuild,
    importLoader: (env = {}) =>
      run(
        [
          '--input-type=module',
          '-e',
          `const m = await import(${JSON.stringify(path.join(root, 'dist/torch/native.js'))}); console.log(m.nativeBinaryPath);`,
        ],
        env,
      ),
    cli: (args, env = {}) => run([path.join(root, 'bin/vlalign.mjs'), ...args], env),
    script: (file, env = {}) => run([path.join(root, file)], env),
    remove: () => fs.rmSync(root, { recursive: true, force: true }),
  };
}

/** A copy of `file` with one byte string replaced by another of the same length (it must occur once). */
export function patchBytes(file: string, to: string, from: string, replacement: string): void {
  if (from.length !== replacement.length) throw new Error(`'${from}' and '${replacement}' differ in length`);
  const bytes = fs.readFileSync(file);
  const at = bytes.indexOf(from, 0, 'latin1');
  if (at < 0 || bytes.indexOf(from, at + 1, 'latin1') >= 0) throw new Error(`'${from}' does not occur once in ${file}`);
  bytes.write(replacement, at, 'latin1');
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.writeFileSync(to, bytes);
}

/** The dynamic section's NEEDED entries of an ELF file, read by binutils' readelf. */
export function neededLibraries(file: string): string[] {
  const out = spawnSync('readelf', ['-d', file], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`readelf -d ${file}: ${out.stderr}`);
  return [...out.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1] as string);
}
