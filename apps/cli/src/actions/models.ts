import { mkdir, rm, rmdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { loadCliConfig } from '@chorus/shared/config';
import { CliError } from '../errors.ts';
import { formatBytes } from '../format.ts';
import { digestFile } from '../hub/checksum.ts';
import { HubClient } from '../hub/download.ts';
import { belongsTo, filesToPull, parseModelName } from '../models/catalog.ts';
import { readManifest, writeManifest } from '../models/manifest.ts';
import { inventory, scanDir, type InstalledFile } from '../models/store.ts';
import { createProgress, type ProgressMode } from '../progress.ts';

/*
 * `chorus models list|pull|verify|rm` (their flags: commands/models.ts): the local model store (MODELS_DIR) that
 * neural workers load from.
 */

export async function pull(dir: string, nameArg: string, opts: { revision: string; retries: number; progress: ProgressMode }) {
  const name = parseModelName(nameArg);
  const cfg = loadCliConfig();
  const files = filesToPull(name);
  const progress = createProgress(process.stderr, opts.progress);
  const hub = new HubClient({ endpoint: cfg.hfEndpoint, token: cfg.hfToken, retries: opts.retries, progress });
  await mkdir(dir, { recursive: true });
  progress.note(`pulling ${nameArg} (${files.length} files) from ${cfg.hfEndpoint} into ${dir}`);
  let bytes = 0;
  let fetched = 0;
  for (const f of files) {
    const ref = { repo: f.repo, revision: opts.revision, path: f.path };
    const got = await hub.pull(ref, join(dir, f.dest), f.dest);
    bytes += got.size;
    if (!got.unchanged) fetched++;
    // Recorded file by file: an interrupted pull keeps what it finished.
    const manifest = await readManifest(dir);
    manifest.files[f.dest] = {
      size: got.size,
      sha256: got.sha256,
      repo: f.repo,
      revision: opts.revision,
      path: f.path,
      ...(got.commit ? { commit: got.commit } : {}),
      pulledAt: new Date().toISOString(),
    };
    await writeManifest(dir, manifest);
  }
  process.stdout.write(`pulled ${nameArg}: ${files.length} files, ${formatBytes(bytes)} (${fetched} downloaded) in ${dir}\n`);
}

export async function list(dir: string, json: boolean) {
  const inv = await inventory(dir, await readManifest(dir));
  if (json) {
    process.stdout.write(`${JSON.stringify(inv, null, 2)}\n`);
    return;
  }
  const out: string[] = [`models in ${dir}`];
  const total = (fs: { size: number }[]) => formatBytes(fs.reduce((s, f) => s + f.size, 0));
  const line = (f: InstalledFile) =>
    `    ${f.path.padEnd(44)} ${formatBytes(f.size).padStart(8)}  sha256 ${f.sha256}${f.note ? `  (${f.note})` : ''}`;
  for (const v of inv.piper) {
    out.push(`  piper:${v.voice}  ${total(v.files)}${v.note ? `  (${v.note})` : ''}`);
    out.push(...v.files.map(line));
  }
  const { model, voices } = inv.kokoro;
  if (model.length > 0 || voices.length > 0) {
    const names = voices.map((v) => v.voice).join(', ');
    out.push(`  kokoro  model ${total(model)}${model.length === 0 ? ' (no model files)' : ''}, ${voices.length} voices${names ? `: ${names}` : ''}`);
    out.push(...model.map(line), ...voices.map(line));
  }
  if (inv.other.length > 0) out.push('  other files', ...inv.other.map(line));
  for (const p of inv.partial) out.push(`  partial download: ${p.path} (${formatBytes(p.size)}; pull again to resume)`);
  for (const p of inv.missing) out.push(`  missing: ${p} is in the manifest but not on disk`);
  if (inv.piper.length + model.length + voices.length + inv.other.length === 0) out.push('  (nothing installed)');
  process.stdout.write(`${out.join('\n')}\n`);
}

type VerifyStatus = 'ok' | 'mismatch' | 'missing' | 'untracked';

export async function verify(dir: string, json: boolean) {
  const manifest = await readManifest(dir);
  const { files } = await scanDir(dir);
  const onDisk = new Map(files.map((f) => [f.path, f]));
  const results: { path: string; status: VerifyStatus; detail?: string }[] = [];
  for (const [path, entry] of Object.entries(manifest.files).sort(([a], [b]) => a.localeCompare(b))) {
    if (!onDisk.has(path)) {
      results.push({ path, status: 'missing' });
      continue;
    }
    const d = await digestFile(join(dir, path));
    if (d.size !== entry.size) results.push({ path, status: 'mismatch', detail: `size ${d.size}, manifest ${entry.size}` });
    else if (d.sha256 !== entry.sha256) results.push({ path, status: 'mismatch', detail: `sha256 ${d.sha256}, manifest ${entry.sha256}` });
    else results.push({ path, status: 'ok' });
  }
  for (const f of files) if (!manifest.files[f.path]) results.push({ path: f.path, status: 'untracked', detail: 'not in manifest' });

  const count = (s: VerifyStatus) => results.filter((r) => r.status === s).length;
  const bad = count('mismatch') + count('missing');
  if (json) process.stdout.write(`${JSON.stringify({ modelsDir: dir, ok: bad === 0, files: results }, null, 2)}\n`);
  else {
    const label: Record<VerifyStatus, string> = { ok: 'ok', mismatch: 'MISMATCH', missing: 'MISSING', untracked: 'untracked' };
    for (const r of results) process.stdout.write(`${label[r.status].padEnd(9)} ${r.path}${r.detail ? `: ${r.detail}` : ''}\n`);
    process.stdout.write(
      `${count('ok')} ok, ${count('mismatch')} mismatched, ${count('missing')} missing, ${count('untracked')} not in manifest\n`,
    );
  }
  if (bad > 0) throw new CliError(`verify failed in ${dir}: ${count('mismatch')} mismatched, ${count('missing')} missing`);
}

export async function remove(dir: string, nameArg: string) {
  const name = parseModelName(nameArg);
  const manifest = await readManifest(dir);
  const { files, partial } = await scanDir(dir);
  const base = (p: string) => p.replace(/\.part(\.json)?$/, '');
  const doomed = [...files, ...partial].filter((f) => belongsTo(name, base(f.path)));
  const entries = Object.keys(manifest.files).filter((p) => belongsTo(name, p));
  if (doomed.length === 0 && entries.length === 0) throw new CliError(`${nameArg} is not installed in ${dir}`);
  for (const f of doomed) await rm(join(dir, f.path), { force: true });
  for (const p of entries) delete manifest.files[p];
  await writeManifest(dir, manifest);
  // Leave no empty folders behind (kokoro/voices, kokoro/onnx, kokoro, piper); rmdir refuses non-empty ones.
  const dirs = new Set(doomed.flatMap((f) => ancestors(f.path)));
  for (const d of [...dirs].sort((a, b) => b.length - a.length)) await rmdir(join(dir, d)).catch(() => {});
  const size = doomed.filter((f) => !f.path.endsWith('.part.json')).reduce((s, f) => s + f.size, 0);
  process.stdout.write(`removed ${nameArg}: ${doomed.length} files, ${formatBytes(size)}\n`);
}

function ancestors(rel: string): string[] {
  const out: string[] = [];
  for (let d = dirname(rel); d !== '.' && d !== '/'; d = dirname(d)) out.push(d);
  return out;
}
