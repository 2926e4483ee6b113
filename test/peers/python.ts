// The Python peers (Debian's python3-torch, python3-pil, python3-numpy) are test dependencies that
// scripts/setup.sh installs. A cross-check never skips when one is missing: it fails and says
// what to install.
import { spawnSync } from 'node:child_process';

export const PYTHON = process.env.PYTHON || '/usr/bin/python3';

const INSTALL_HINT =
  'the Python peers are test dependencies: run `bash scripts/setup.sh` ' +
  '(or `apt-get install python3-torch python3-pil python3-numpy`)';

export interface PythonOptions {
  /** Bytes or text for the script's stdin. */
  input?: string | Uint8Array;
  /** Values for sys.argv[1:]. */
  args?: string[];
  timeoutMs?: number;
}

/** Runs a Python script and returns its stdout as bytes; a missing interpreter or module fails with the fix. */
export function runPython(script: string, options: PythonOptions = {}): Buffer {
  const child = spawnSync(PYTHON, ['-c', script, ...(options.args ?? [])], {
    input: options.input ?? '',
    maxBuffer: 1 << 30,
    timeout: options.timeoutMs ?? 120_000,
  });
  if (child.error) throw new Error(`could not run ${PYTHON} (${child.error.message}); ${INSTALL_HINT}`);
  const stderr = child.stderr.toString();
  const missing = /ModuleNotFoundError: No module named '([^']+)'/.exec(stderr);
  if (missing) throw new Error(`${PYTHON} has no module '${missing[1]}'; ${INSTALL_HINT}`);
  if (child.status !== 0) throw new Error(`${PYTHON} exited with ${child.status}:\n${stderr}`);
  return child.stdout;
}

/** runPython's stdout as UTF-8 text. */
export const runPythonText = (script: string, options: PythonOptions = {}): string =>
  runPython(script, options).toString('utf8');
