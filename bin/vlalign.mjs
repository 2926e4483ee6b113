#!/usr/bin/env node
// The vlalign command line; the program lives in dist/cli/main.js (npm run build:ts).
import { main } from '../dist/cli/main.js';

await main();
