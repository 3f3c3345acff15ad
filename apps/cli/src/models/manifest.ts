import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CliError } from '../errors.ts';

/*
 * MODELS_DIR/.chorus-manifest.json: what `chorus models pull` put there, so list/verify can show and check it without
 * the network. The worker ignores it. Keys are MODELS_DIR-relative paths with forward slashes.
 */

export const MANIFEST_NAME = '.chorus-manifest.json';

export interface ManifestEntry {
  size: number;
  sha256: string;
  /** Source on the hub. */
  repo: string;
  revision: string;
  path: string;
  /** The commit `revision` resolved to, when the hub said. */
  commit?: string;
  pulledAt: string;
}

export interface Manifest {
  version: 1;
  files: Record<string, ManifestEntry>;
}

export async function readManifest(modelsDir: string): Promise<Manifest> {
  const file = join(modelsDir, MANIFEST_NAME);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, files: {} };
    throw err;
  }
  try {
    const m = JSON.parse(text) as Partial<Manifest>;
    if (m.version !== 1 || typeof m.files !== 'object' || m.files === null) throw new Error('unknown format');
    return { version: 1, files: m.files };
  } catch (err) {
    throw new CliError(`${file} is not a chorus manifest (${(err as Error).message}); move it away and pull again`);
  }
}

/** Written to a temporary name and renamed, so a reader never sees half a manifest. */
export async function writeManifest(modelsDir: string, manifest: Manifest): Promise<void> {
  const file = join(modelsDir, MANIFEST_NAME);
  const sorted = Object.fromEntries(Object.entries(manifest.files).sort(([a], [b]) => a.localeCompare(b)));
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify({ version: 1, files: sorted }, null, 2)}\n`);
  await rename(tmp, file);
}
