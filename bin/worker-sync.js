#!/usr/bin/env node
// Entry point: runs the TypeScript sources through tsx's loader, so `npm start`,
// `npx worker-sync` and the tests all run exactly the code in src/.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
