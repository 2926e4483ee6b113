// `vlalign build`: compiles the native addon in place (build/Release of this installed package)
// against the libtorch found on this machine, through scripts/build-native.mjs, which says which
// libtorch it used and loads the result. Nothing here imports the addon: this command has to run
// exactly when the addon does not load, so bin/vlalign.mjs dispatches it before loading main.js.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';

// dist/cli/build_addon.js sits two levels below the package root, as lib/cli/build_addon.ts does.
const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface BuildAddonOptions {
  /** cmake-js even for a CPU libtorch (a CUDA libtorch always takes it). */
  cmake?: boolean;
  /** Parallel compile jobs (default: every core). */
  jobs?: string;
}

/** Runs the source build; returns its exit status. */
export function buildAddon(options: BuildAddonOptions = {}): number {
  if (options.jobs !== undefined && !/^[1-9]\d*$/.test(options.jobs)) {
    throw new Error(`--jobs must be a positive integer, got '${options.jobs}'`);
  }
  const script = path.join(packageRoot, 'scripts/build-native.mjs');
  const env = options.jobs ? { ...process.env, VLALIGN_BUILD_JOBS: options.jobs } : process.env;
  const run = spawnSync(process.execPath, [script, ...(options.cmake ? ['--cmake'] : [])], {
    cwd: packageRoot,
    stdio: 'inherit',
    env,
  });
  return run.status ?? 1;
}

export function registerBuildCommand(cli: Command): Command {
  cli
    .command('build')
    .description(
      "Compile the native addon in place against this machine's libtorch (LIBTORCH, Torch_DIR, " +
        "CMAKE_PREFIX_PATH, python3's torch, Debian's libtorch-dev; CPU or CUDA)",
    )
    .option('--cmake', 'build with cmake-js even for a CPU libtorch (CUDA libtorch always uses it)')
    .option('-j, --jobs <n>', 'parallel compile jobs (default: every core)')
    .action((options: BuildAddonOptions) => {
      const status = buildAddon(options);
      if (status !== 0) throw new Error(`native build failed (exit ${status})`);
    });
  return cli;
}

/** `vlalign build` alone, for bin/vlalign.mjs: errors end as one line on stderr and exit code 1. */
export async function buildMain(argv: readonly string[] = process.argv): Promise<void> {
  try {
    await registerBuildCommand(new Command('vlalign')).parseAsync([...argv]);
  } catch (error) {
    process.stderr.write(`vlalign: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  }
}
