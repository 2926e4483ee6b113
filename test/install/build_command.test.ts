// `vlalign build` is one of the command line's commands (its help names the libtorch search), and
// its options are checked before anything is compiled.
import { describe, expect, it } from 'vitest';
import { buildAddon } from '../../lib/cli/build_addon.js';
import { program } from '../../lib/cli/main.js';

describe('vlalign build', () => {
  it('is listed by `vlalign --help`, with the search order in its own help', () => {
    const cli = program();
    expect(cli.helpInformation()).toMatch(/\n {2}build \[options\] +Compile the native addon in place/);
    const build = cli.commands.find((c) => c.name() === 'build');
    const help = (build?.helpInformation() ?? '').replace(/\s+/g, ' '); // unwrapped
    expect(help).toContain("LIBTORCH, Torch_DIR, CMAKE_PREFIX_PATH, python3's torch, Debian's libtorch-dev");
    expect(help).toContain('--cmake');
    expect(help).toContain('-j, --jobs <n>');
  });

  it.each(['0', '-2', 'four', '1.5'])('refuses --jobs %s before compiling', (jobs) => {
    expect(() => buildAddon({ jobs })).toThrow(`--jobs must be a positive integer, got '${jobs}'`);
  });
});
