import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** True when the module at `url` is the script node was started with (not imported by bench/run.ts). */
export function isMain(url: string): boolean {
  return process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(url);
}
