import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CliError } from '../errors.ts';
import { formatBytes, formatDuration } from '../format.ts';
import type { Progress } from '../progress.ts';
import { checksumFromEtag, digestFile, digestOf, matches, type Checksum } from './checksum.ts';

/*
 * Downloads from a Hugging Face hub the way its own client does: `<endpoint>/<repo>/resolve/<revision>/<path>`,
 * a HEAD first (redirects not followed across hosts) for the published checksum, size and CDN location, then a GET
 * of the bytes into `<dest>.part`, resumed with `Range` after a drop, checked, and renamed into place. The Bearer
 * token goes to the endpoint's origin only, never to the CDN a file redirects to.
 */

export interface HubFileRef {
  repo: string;
  revision: string;
  path: string;
}

export interface HubOptions {
  endpoint: string;
  token: string | undefined;
  /** Further tries per file after a connection drop, a stall or a 5xx. */
  retries: number;
  progress: Progress;
  /** First wait between tries; doubles each time. */
  backoffMs?: number;
}

export interface PulledFile {
  size: number;
  sha256: string;
  /** The commit the revision resolved to (`X-Repo-Commit`), when the hub says. */
  commit: string | undefined;
  /** Already on disk with the published checksum: nothing was downloaded. */
  unchanged: boolean;
}

interface RemoteFile {
  checksum: Checksum;
  size: number | undefined;
  /** Where the bytes are: the resolve URL, or the CDN it redirects to. */
  location: string;
  commit: string | undefined;
}

/** A failure worth another try (connection dropped or refused, stall, 5xx, 429). */
class RetryableError extends Error {}

const MAX_REDIRECTS = 10;
/** No byte for this long: the connection is treated as dropped. */
const STALL_MS = 60_000;
const MAX_BACKOFF_MS = 8000;
const WRITE_BATCH = 1 << 20;
const USER_AGENT = 'chorus-cli/0.1.0';

export class HubClient {
  private readonly endpointOrigin: string;

  constructor(private readonly opts: HubOptions) {
    this.endpointOrigin = new URL(opts.endpoint).origin;
  }

  resolveUrl(ref: HubFileRef): string {
    const path = ref.path.split('/').map(encodeURIComponent).join('/');
    return `${this.opts.endpoint}/${ref.repo}/resolve/${encodeURIComponent(ref.revision)}/${path}`;
  }

  /** Downloads `ref` to `dest` (atomically) unless `dest` already has the published checksum. */
  async pull(ref: HubFileRef, dest: string, label: string): Promise<PulledFile> {
    const { progress } = this.opts;
    let remote = await this.withRetries(label, () => this.metadata(ref));

    const existing = await digestFile(dest).catch(() => undefined);
    if (existing && matches(existing, remote.checksum)) {
      progress.note(`${label}: up to date (${formatBytes(existing.size)})`);
      return { size: existing.size, sha256: existing.sha256, commit: remote.commit, unchanged: true };
    }

    await mkdir(dirname(dest), { recursive: true });
    const part = `${dest}.part`;
    const started = performance.now();
    let first = true;
    await this.withRetries(label, async () => {
      // A retry asks again: CDN links can expire, and the file may have changed on the branch meanwhile.
      if (!first) remote = await this.metadata(ref);
      first = false;
      await this.discardStalePart(part, remote.checksum);
      await this.fetchInto(remote, ref, part, label);
    });

    const digest = await digestFile(part);
    if (!matches(digest, remote.checksum)) {
      await removePart(part);
      throw new CliError(
        `${label}: checksum mismatch: the hub publishes ${remote.checksum.kind} ${remote.checksum.hex}, the download has ` +
          `${digestOf(digest, remote.checksum)}; refused, partial file removed`,
      );
    }
    await rename(part, dest);
    await rm(`${part}.json`, { force: true });
    const secs = (performance.now() - started) / 1000;
    progress.note(`${label}: done, ${formatBytes(digest.size)} in ${formatDuration(secs)}, ${remote.checksum.kind} verified`);
    return { size: digest.size, sha256: digest.sha256, commit: remote.commit, unchanged: false };
  }

  /** HEAD the resolve URL: published checksum, size, download location. */
  private async metadata(ref: HubFileRef): Promise<RemoteFile> {
    const { res, url, redirect } = await this.request('HEAD', this.resolveUrl(ref), {}, false);
    if (!redirect && !res.ok) throw hubError(res, ref, this.opts.token !== undefined);
    const h = res.headers;
    const etag = h.get('x-linked-etag') ?? h.get('etag');
    const checksum = checksumFromEtag(etag);
    if (!checksum) {
      throw new CliError(
        `${ref.repo}/${ref.path}: the server publishes no checksum (ETag ${JSON.stringify(etag)}); refusing an unverifiable download`,
      );
    }
    const sizeHeader = h.get('x-linked-size') ?? (redirect ? null : h.get('content-length'));
    const size = sizeHeader !== null && /^\d+$/.test(sizeHeader) ? Number(sizeHeader) : undefined;
    return { checksum, size, location: redirect ?? url, commit: h.get('x-repo-commit') ?? undefined };
  }

  /** A `.part` left by an earlier run is resumed only if it belongs to the same published file. */
  private async discardStalePart(part: string, checksum: Checksum): Promise<void> {
    const sidecar = `${part}.json`;
    const saved = await readFile(sidecar, 'utf8').then((s) => JSON.parse(s) as Checksum, () => undefined);
    if (saved?.kind !== checksum.kind || saved.hex !== checksum.hex) {
      await rm(part, { force: true });
      await writeFile(sidecar, JSON.stringify(checksum));
    }
  }

  private async fetchInto(remote: RemoteFile, ref: HubFileRef, part: string, label: string): Promise<void> {
    const { progress } = this.opts;
    let offset = (await stat(part).catch(() => undefined))?.size ?? 0;
    if (remote.size !== undefined && offset > remote.size) {
      await rm(part, { force: true });
      offset = 0;
    }
    if (remote.size !== undefined && offset === remote.size && offset > 0) return; // complete; the checksum decides

    const stall = new AbortController();
    let timer = setTimeout(() => stall.abort(new Error(`no data for ${STALL_MS / 1000} s`)), STALL_MS);
    const headers: Record<string, string> = offset > 0 ? { range: `bytes=${offset}-` } : {};
    const { res } = await this.request('GET', remote.location, headers, true, stall.signal).catch((err: unknown) => {
      clearTimeout(timer);
      throw err;
    });

    let append = false;
    if (res.status === 206) {
      const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
      if (!m || Number(m[1]) !== offset) {
        clearTimeout(timer);
        await res.body?.cancel();
        await rm(part, { force: true });
        throw new RetryableError(`unexpected Content-Range ${JSON.stringify(res.headers.get('content-range'))}; starting over`);
      }
      append = true;
    } else if (res.status === 416) {
      clearTimeout(timer);
      await res.body?.cancel();
      await rm(part, { force: true });
      throw new RetryableError('the server refused to resume (416); starting over');
    } else if (!res.ok) {
      clearTimeout(timer);
      await res.body?.cancel();
      throw hubError(res, ref, this.opts.token !== undefined);
    } else if (offset > 0) {
      progress.note(`${label}: the server ignored the Range request; downloading from the start`);
      offset = 0;
    }
    if (offset > 0) progress.note(`${label}: resuming at ${formatBytes(offset)}`);

    const total = remote.size;
    const transfer = progress.begin(label, total, offset);
    const fh = await open(part, append ? 'a' : 'w');
    let done = offset;
    try {
      // Fetch yields ~16-64 KB chunks; one write per WRITE_BATCH keeps syscalls (and thread-pool hops) down.
      let pending: Uint8Array[] = [];
      let pendingBytes = 0;
      const flush = async () => {
        if (pendingBytes === 0) return;
        const buf = Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
        await fh.write(buf);
        done += buf.length;
        transfer.update(done);
      };
      try {
        for await (const chunk of res.body ?? []) {
          pending.push(chunk);
          pendingBytes += chunk.length;
          if (pendingBytes >= WRITE_BATCH) await flush();
          clearTimeout(timer);
          timer = setTimeout(() => stall.abort(new Error(`no data for ${STALL_MS / 1000} s`)), STALL_MS);
        }
      } finally {
        await flush(); // what arrived before a drop is kept for the resume
      }
      await fh.sync(); // the bytes are on disk before the file can take its final name
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.syscall === 'write' || e.syscall === 'fsync') throw new CliError(`${label}: cannot write ${part}: ${e.message}`);
      throw new RetryableError(`connection lost at ${formatBytes(done)}: ${reason(err)}`);
    } finally {
      clearTimeout(timer);
      transfer.stop();
      await fh.close();
    }
    if (total !== undefined && done < total) {
      throw new RetryableError(`connection closed at ${formatBytes(done)} of ${formatBytes(total)}`);
    }
  }

  /**
   * fetch with redirects followed by hand, so the token is sent to the endpoint's origin only. With
   * `followCrossOrigin` false, a redirect to another origin (the hub's CDN) is returned instead of followed.
   */
  private async request(
    method: 'HEAD' | 'GET',
    url: string,
    extra: Record<string, string>,
    followCrossOrigin: boolean,
    signal?: AbortSignal,
  ): Promise<{ res: Response; url: string; redirect?: string }> {
    let current = url;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      // identity: a compressed body would make byte offsets (Range) and Content-Length meaningless.
      const headers: Record<string, string> = { 'accept-encoding': 'identity', 'user-agent': USER_AGENT, ...extra };
      if (this.opts.token && new URL(current).origin === this.endpointOrigin) {
        headers.authorization = `Bearer ${this.opts.token}`;
      }
      let res: Response;
      try {
        res = await fetch(current, { method, headers, redirect: 'manual', signal });
      } catch (err) {
        throw new RetryableError(`cannot reach ${new URL(current).origin}: ${reason(err)}`);
      }
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location) {
        const next = new URL(location, current).toString();
        if (!followCrossOrigin && new URL(next).origin !== new URL(current).origin) {
          return { res, url: current, redirect: next };
        }
        await res.body?.cancel();
        current = next;
        continue;
      }
      return { res, url: current };
    }
    throw new CliError(`too many redirects from ${url}`);
  }

  private async withRetries<T>(label: string, fn: () => Promise<T>): Promise<T> {
    const base = this.opts.backoffMs ?? 500;
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!(err instanceof RetryableError)) throw err;
        if (attempt >= this.opts.retries) {
          throw new CliError(`${label}: ${err.message} (gave up after ${attempt + 1} attempts; run pull again to resume)`);
        }
        const wait = Math.min(base * 2 ** attempt, MAX_BACKOFF_MS);
        this.opts.progress.note(`${label}: ${err.message}; retrying in ${formatDuration(wait / 1000)} (${attempt + 1}/${this.opts.retries})`);
        await sleep(wait);
      }
    }
  }
}

async function removePart(part: string): Promise<void> {
  await rm(part, { force: true });
  await rm(`${part}.json`, { force: true });
}

function reason(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? (err.cause as NodeJS.ErrnoException) : undefined;
    return cause ? `${err.message} (${cause.code ?? cause.message})` : err.message;
  }
  return String(err);
}

/** One readable line for a hub error status (the hub names the cause in X-Error-Code). */
function hubError(res: Response, ref: HubFileRef, haveToken: boolean): Error {
  const code = res.headers.get('x-error-code');
  const where = `${ref.repo}@${ref.revision}`;
  if (res.status === 401) {
    return new CliError(
      haveToken
        ? `${where}: HF_TOKEN was not accepted (401); check the token`
        : `${where}: authentication required (401); set HF_TOKEN to a Hugging Face access token`,
    );
  }
  if (res.status === 403) {
    return new CliError(`${where}: access denied (403${code ? ` ${code}` : ''}); accept the repo's terms on the hub and set HF_TOKEN`);
  }
  if (res.status === 404) {
    if (code === 'RevisionNotFound') return new CliError(`no revision "${ref.revision}" in repo ${ref.repo}`);
    if (code === 'RepoNotFound') return new CliError(`no such repo ${ref.repo} (a private repo needs HF_TOKEN)`);
    return new CliError(`no such file in repo ${where}: ${ref.path}`);
  }
  if (res.status === 429 || res.status >= 500) return new RetryableError(`HTTP ${res.status} for ${ref.path}`);
  return new CliError(`${where}: HTTP ${res.status} ${res.statusText}`);
}
