#!/usr/bin/env node
// Runs the TypeScript source in a checkout (Node >= 24 strips types), the compiled CLI in an installed
// package (Node does not strip types below node_modules). Never a stale dist/ beside newer sources.
import { existsSync } from 'node:fs';
const source = new URL('../src/cli/main.ts', import.meta.url);
const installed = import.meta.url.includes('/node_modules/');
await import(!installed && existsSync(source) ? source.href : new URL('../dist/cli/main.js', import.meta.url).href);
