#!/usr/bin/env node
// The project runs its TypeScript sources through tsx (no build step): register it, then start the CLI.
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
