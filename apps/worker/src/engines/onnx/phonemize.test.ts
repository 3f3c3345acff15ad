import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { phonemize } from './phonemize.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'chorus-phonemize-'));
const runs = path.join(dir, 'runs');
// Real espeak-ng behind a wrapper that counts its runs.
const counting = path.join(dir, 'espeak-ng');
writeFileSync(counting, `#!/bin/sh\necho run >> '${runs}'\nexec espeak-ng "$@"\n`);
chmodSync(counting, 0o755);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const signal = new AbortController().signal;
async function counted(text: string) {
  writeFileSync(runs, '');
  const ipa = await phonemize(text, 'en-us', signal, counting);
  return { ipa, runs: readFileSync(runs, 'utf8').split('\n').filter(Boolean).length };
}
/** What each piece reads as alone (the definition the one-run path must match). */
async function piecewise(pieces: string[]) {
  return Promise.all(pieces.map((p) => phonemize(p, 'en-us', signal)));
}

describe('phonemize (real espeak-ng)', () => {
  it('one espeak-ng run for a text of many clauses, each clause read as it reads alone, marks put back', async () => {
    const { ipa, runs: n } = await counted('Hello there. How are you, fine thanks! And you?');
    expect(n).toBe(1);
    const [a, b, c, d] = await piecewise(['Hello there', 'How are you', 'fine thanks', 'And you']);
    expect(ipa).toBe(`${a}. ${b}, ${c}! ${d}?`);
  });

  it('a clause espeak-ng splits itself falls back to a run per piece, with the same result', async () => {
    const long = Array(150).fill('word').join(' ');
    const { ipa, runs: n } = await counted(`Short one. ${long}. Done!`);
    expect(n).toBeGreaterThan(1);
    expect(n).toBeLessThanOrEqual(4); // the one attempt, then one per piece
    const [a, b, c] = await piecewise(['Short one', long, 'Done']);
    expect(ipa).toBe(`${a}. ${b}. ${c}!`);
  });
});
