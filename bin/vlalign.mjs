#!/usr/bin/env node
// The vlalign command line; the program lives in dist/cli/main.js (npm run build:ts). `vlalign build`
// is dispatched before main.js is imported, because main.js loads the native addon and `build` is
// the command for when it does not load; any other command then prints the load error's message
// (its cause and fixes) once, without a stack.
if (process.argv[2] === 'build') {
  const { buildMain } = await import('../dist/cli/build_addon.js');
  await buildMain();
} else {
  let cli;
  try {
    cli = await import('../dist/cli/main.js');
  } catch (error) {
    if (error?.name !== 'NativeLoadError') throw error;
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  }
  await cli.main();
}
