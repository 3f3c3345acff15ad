import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/*
 * A local stand-in for the Hugging Face hub, for `chorus models pull` tests: files served at
 * `/<owner>/<repo>/resolve/<revision>/<path>` with the hub's headers (LFS files: X-Linked-Etag = sha256,
 * X-Linked-Size, and a 302 to a second server standing for the CDN; git files: ETag = git blob sha1), Range support,
 * and switches for the failures a download must survive or refuse.
 */

export interface RecordedRequest {
  server: 'hub' | 'cdn';
  method: string;
  url: string;
  range: string | undefined;
  authorization: string | undefined;
}

interface HubFile {
  repo: string;
  path: string;
  data: Buffer;
  lfs: boolean;
  sha256: string;
  gitSha1: string;
}

export interface FakeHub {
  /** HF_ENDPOINT */
  endpoint: string;
  cdnOrigin: string;
  requests: RecordedRequest[];
  add(repo: string, path: string, data: Buffer, opts: { lfs: boolean }): void;
  /** LFS files redirect to the CDN server (default true), as on the hub. */
  redirectLfs: boolean;
  /** When set, the hub answers 401 without `Authorization: Bearer <token>` (the CDN never checks). */
  requireToken: string | undefined;
  /** `<repo>/<path>` → bytes after which the next GET of it drops the connection (once). */
  dropAfter: Map<string, number>;
  /** `<repo>/<path>`s served with one byte changed (same size, same published checksum). */
  corrupt: Set<string>;
  /** Answer 200 with the whole file to every Range request. */
  ignoreRange: boolean;
  close(): Promise<void>;
}

const COMMIT = 'c0ffee0000000000000000000000000000000001';

export async function startFakeHub(): Promise<FakeHub> {
  const files = new Map<string, HubFile>();
  const bySha = new Map<string, HubFile>();
  const hub: FakeHub = {
    endpoint: '',
    cdnOrigin: '',
    requests: [],
    redirectLfs: true,
    requireToken: undefined,
    dropAfter: new Map(),
    corrupt: new Set(),
    ignoreRange: false,
    add(repo, path, data, { lfs }) {
      const f: HubFile = {
        repo,
        path,
        data,
        lfs,
        sha256: createHash('sha256').update(data).digest('hex'),
        gitSha1: createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex'),
      };
      files.set(`${repo}/${path}`, f);
      bySha.set(f.sha256, f);
    },
    close: async () => {
      await Promise.all([hubServer, cdnServer].map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };

  const record = (server: 'hub' | 'cdn', req: IncomingMessage) =>
    hub.requests.push({
      server,
      method: req.method ?? '',
      url: req.url ?? '',
      range: req.headers.range,
      authorization: req.headers.authorization,
    });

  /** The bytes of `f`, honouring Range and the failure switches. */
  function sendFile(req: IncomingMessage, res: ServerResponse, f: HubFile, headers: Record<string, string>): void {
    const key = `${f.repo}/${f.path}`;
    let data = f.data;
    if (hub.corrupt.has(key)) {
      data = Buffer.from(data);
      data[0] = data[0]! ^ 0xff;
    }
    let start = 0;
    let status = 200;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (m && !hub.ignoreRange) {
      start = Number(m[1]);
      if (start >= data.length) {
        res.writeHead(416, { 'content-range': `bytes */${data.length}` }).end();
        return;
      }
      status = 206;
      headers['content-range'] = `bytes ${start}-${data.length - 1}/${data.length}`;
    }
    const body = data.subarray(start);
    res.writeHead(status, { ...headers, 'accept-ranges': 'bytes', 'content-length': String(body.length) });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const drop = hub.dropAfter.get(key);
    if (drop !== undefined && drop < body.length) {
      hub.dropAfter.delete(key);
      res.write(body.subarray(0, drop), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    res.end(body);
  }

  const hubServer: Server = createServer((req, res) => {
    record('hub', req);
    const url = new URL(req.url ?? '/', 'http://x');
    const parts = url.pathname.split('/').slice(1).map(decodeURIComponent);
    const [owner, name, resolve, revision, ...rest] = parts;
    if (resolve !== 'resolve' || !owner || !name || !revision || rest.length === 0) {
      res.writeHead(404, { 'x-error-code': 'RepoNotFound' }).end('not found');
      return;
    }
    if (hub.requireToken && req.headers.authorization !== `Bearer ${hub.requireToken}`) {
      res.writeHead(401, { 'x-error-message': 'Invalid credentials in Authorization header' }).end('unauthorized');
      return;
    }
    const repo = `${owner}/${name}`;
    if (revision !== 'main') {
      res.writeHead(404, { 'x-error-code': 'RevisionNotFound' }).end('no revision');
      return;
    }
    const f = files.get(`${repo}/${rest.join('/')}`);
    if (!f) {
      res.writeHead(404, { 'x-error-code': 'EntryNotFound', 'x-repo-commit': COMMIT }).end('no entry');
      return;
    }
    if (f.lfs) {
      // The hub's ETag on an LFS file describes the pointer, not the content: a client must prefer X-Linked-Etag.
      const headers = {
        'x-repo-commit': COMMIT,
        'x-linked-etag': `"${f.sha256}"`,
        'x-linked-size': String(f.data.length),
        etag: `"${createHash('sha1').update(f.sha256).digest('hex')}"`,
      };
      if (hub.redirectLfs) {
        res.writeHead(302, { ...headers, location: `${hub.cdnOrigin}/cdn/${f.sha256}?name=${encodeURIComponent(f.path)}` }).end();
        return;
      }
      sendFile(req, res, f, headers);
      return;
    }
    sendFile(req, res, f, { 'x-repo-commit': COMMIT, etag: `"${f.gitSha1}"` });
  });

  const cdnServer: Server = createServer((req, res) => {
    record('cdn', req);
    const sha = /^\/cdn\/([0-9a-f]{64})/.exec(req.url ?? '')?.[1];
    const f = sha ? bySha.get(sha) : undefined;
    if (!f) {
      res.writeHead(404).end();
      return;
    }
    sendFile(req, res, f, { etag: `"${f.sha256}"` });
  });

  const listen = (s: Server) =>
    new Promise<string>((resolve) => s.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(s.address() as AddressInfo).port}`)));
  hub.endpoint = await listen(hubServer);
  hub.cdnOrigin = await listen(cdnServer);
  return hub;
}
