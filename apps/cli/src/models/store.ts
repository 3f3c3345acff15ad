import { readdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { digestFile } from '../hub/checksum.ts';
import { MANIFEST_NAME, type Manifest } from './manifest.ts';

/* What is on disk in MODELS_DIR, grouped the way the worker loads it. */

export interface DiskFile {
  /** MODELS_DIR-relative, forward slashes. */
  path: string;
  size: number;
}

export interface InstalledFile extends DiskFile {
  sha256: string;
  inManifest: boolean;
  source?: { repo: string; revision: string; path: string; commit?: string };
  note?: string;
}

export interface Inventory {
  modelsDir: string;
  piper: { voice: string; files: InstalledFile[]; note?: string }[];
  kokoro: { model: InstalledFile[]; voices: (InstalledFile & { voice: string })[] };
  other: InstalledFile[];
  /** Downloads in progress or interrupted (`pull` resumes them). */
  partial: DiskFile[];
  /** In the manifest, not on disk. */
  missing: string[];
}

const isPartial = (p: string) => p.endsWith('.part') || p.endsWith('.part.json');

/** Every file under `dir` (the manifest and its temporaries aside), sorted. */
export async function scanDir(dir: string): Promise<{ files: DiskFile[]; partial: DiskFile[] }> {
  const files: DiskFile[] = [];
  const partial: DiskFile[] = [];
  async function walk(d: string): Promise<void> {
    let entries;
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const e of entries) {
      const full = join(d, e.name);
      if (e.isDirectory()) await walk(full);
      else if (e.isFile()) {
        const path = relative(dir, full).split(sep).join('/');
        if (path === MANIFEST_NAME || path.startsWith(`${MANIFEST_NAME}.`)) continue;
        const { size } = await stat(full);
        (isPartial(path) ? partial : files).push({ path, size });
      }
    }
  }
  await walk(dir);
  const byPath = (a: DiskFile, b: DiskFile) => a.path.localeCompare(b.path);
  return { files: files.sort(byPath), partial: partial.sort(byPath) };
}

/** Sizes from disk; sha256 from the manifest when it has the file at this size, else computed now. */
export async function inventory(modelsDir: string, manifest: Manifest): Promise<Inventory> {
  const { files, partial } = await scanDir(modelsDir);
  const out: Inventory = { modelsDir, piper: [], kokoro: { model: [], voices: [] }, other: [], partial, missing: [] };
  const piper = new Map<string, InstalledFile[]>();
  for (const f of files) {
    const entry = manifest.files[f.path];
    let info: InstalledFile;
    if (entry && entry.size === f.size) {
      info = { ...f, sha256: entry.sha256, inManifest: true, source: { repo: entry.repo, revision: entry.revision, path: entry.path, commit: entry.commit } };
    } else {
      const { sha256 } = await digestFile(join(modelsDir, f.path));
      info = entry
        ? { ...f, sha256, inManifest: true, note: `size differs from the manifest (${entry.size} bytes): run chorus models verify` }
        : { ...f, sha256, inManifest: false, note: 'not in manifest' };
    }
    const pv = /^piper\/([^/]+?)\.onnx(\.json)?$/.exec(f.path);
    const kv = /^kokoro\/voices\/([^/]+)\.bin$/.exec(f.path);
    if (pv) piper.set(pv[1]!, [...(piper.get(pv[1]!) ?? []), info]);
    else if (kv) out.kokoro.voices.push({ ...info, voice: kv[1]! });
    else if (f.path.startsWith('kokoro/')) out.kokoro.model.push(info);
    else out.other.push(info);
  }
  for (const [voice, vf] of piper) {
    const has = (ext: string) => vf.some((f) => f.path === `piper/${voice}${ext}`);
    const note = !has('.onnx') ? `incomplete: no ${voice}.onnx` : !has('.onnx.json') ? `incomplete: no ${voice}.onnx.json` : undefined;
    out.piper.push(note ? { voice, files: vf, note } : { voice, files: vf });
  }
  const onDisk = new Set(files.map((f) => f.path));
  out.missing = Object.keys(manifest.files).filter((p) => !onDisk.has(p)).sort();
  return out;
}
