import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';

/*
 * The checksum the Hugging Face hub publishes for a file is its ETag (huggingface_hub's file_download: "An object's
 * ETag is: its git-sha1 if stored in git, or its sha256 if stored in git-lfs"). For LFS files the resolve URL
 * redirects to a CDN and the hub puts the sha256 in `X-Linked-Etag` (the redirect's own ETag describes the pointer),
 * so X-Linked-Etag wins over ETag. Values are quoted, possibly weak (`W/"…"`).
 */

export interface Checksum {
  kind: 'sha256' | 'git-sha1';
  hex: string;
}

/** The checksum an ETag header value stands for, or undefined when it is no hash we can recompute. */
export function checksumFromEtag(value: string | null | undefined): Checksum | undefined {
  if (!value) return undefined;
  const v = value.trim().replace(/^W\//i, '').replace(/^"(.*)"$/, '$1').toLowerCase();
  if (/^[0-9a-f]{64}$/.test(v)) return { kind: 'sha256', hex: v };
  if (/^[0-9a-f]{40}$/.test(v)) return { kind: 'git-sha1', hex: v };
  return undefined;
}

export interface FileDigest {
  size: number;
  sha256: string;
  /** git's blob id: sha1 over `blob <size>\0` + content. */
  gitSha1: string;
}

/** One pass over the file for both digests. */
export async function digestFile(path: string): Promise<FileDigest> {
  const { size } = await stat(path);
  const sha256 = createHash('sha256');
  const sha1 = createHash('sha1').update(`blob ${size}\0`);
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    sha256.update(chunk as Buffer);
    sha1.update(chunk as Buffer);
  }
  return { size, sha256: sha256.digest('hex'), gitSha1: sha1.digest('hex') };
}

export function matches(d: FileDigest, c: Checksum): boolean {
  return (c.kind === 'sha256' ? d.sha256 : d.gitSha1) === c.hex;
}

export function digestOf(d: FileDigest, c: Checksum): string {
  return c.kind === 'sha256' ? d.sha256 : d.gitSha1;
}
