import { spawn } from 'node:child_process';
import { EngineError } from '../engine.ts';

const PUNCTUATION = /([.,;:!?]+)/;

/**
 * Text → espeak-ng IPA, as Piper and Kokoro expect it. `espeak-ng --ipa` drops punctuation, which these models use
 * for pauses and intonation, so the text is split at `.,;:!?`, each piece phonemised, and the marks put back after
 * their piece. Text goes to espeak-ng on stdin, never argv; argv holds only the voice's espeak language, held to a
 * strict shape.
 */
export async function phonemize(text: string, language: string, signal: AbortSignal, binary = 'espeak-ng'): Promise<string> {
  if (!/^[A-Za-z0-9_-]{1,40}$/.test(language)) throw new EngineError(`invalid espeak language ${language}`);
  const parts = text.split(PUNCTUATION);
  // [text, marks, text, marks, ..., text]
  const pieces: { text: string; marks: string }[] = [];
  for (let i = 0; i < parts.length; i += 2) pieces.push({ text: parts[i]!, marks: parts[i + 1] ?? '' });
  const ipa = await piecesToIpa(pieces.map((p) => p.text.replace(/\s+/g, ' ').trim()), language, signal, binary);
  let out = '';
  pieces.forEach((p, i) => {
    const words = ipa[i]!;
    if (words) out += (out && !out.endsWith(' ') ? ' ' : '') + words;
    if (p.marks) out += p.marks + ' ';
  });
  return out.trim();
}

/** Pieces phonemised at once per espeak-ng run, at most, when one run for all of them cannot be matched up. */
const PARALLEL_RUNS = 4;

/**
 * One espeak-ng run for all pieces, one per input line: it answers one line per clause, so when every non-empty
 * piece came back as exactly one line the lines map to the pieces. A piece long enough for espeak-ng to split into
 * several clauses breaks that count; then each piece gets its own run, a few at a time (a 1,000-character text has
 * ~30 pieces: 30 processes at once cost more CPU before first audio than they save).
 */
async function piecesToIpa(pieces: string[], language: string, signal: AbortSignal, binary: string): Promise<string[]> {
  const spoken = pieces.filter(Boolean);
  if (spoken.length === 0) return pieces.map(() => '');
  const lines = (await espeakIpa(spoken.join('\n'), language, signal, binary, true)).split('\n').map((l) => l.trim()).filter(Boolean);
  if (lines.length === spoken.length) {
    let next = 0;
    return pieces.map((p) => (p ? lines[next++]! : ''));
  }
  const out: string[] = new Array(pieces.length).fill('');
  for (let at = 0; at < pieces.length; at += PARALLEL_RUNS) {
    const batch = pieces.slice(at, at + PARALLEL_RUNS);
    const ipa = await Promise.all(batch.map((p) => (p ? espeakIpa(p, language, signal, binary) : '')));
    ipa.forEach((v, i) => (out[at + i] = v));
  }
  return out;
}

function espeakIpa(text: string, language: string, signal: AbortSignal, binary: string, keepLines = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, ['-q', '--ipa', '-v', language], { stdio: ['pipe', 'pipe', 'pipe'], signal });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-1000)));
    child.once('error', (e) => reject(signal.aborted ? e : new EngineError(`espeak-ng not usable: ${e.message}`)));
    child.once('close', (code) => {
      if (code === 0) resolve(keepLines ? out : out.replace(/\s+/g, ' ').trim());
      else reject(new EngineError(`espeak-ng --ipa exited with ${code}: ${err.trim()}`));
    });
    child.stdin.on('error', () => {});
    child.stdin.end(text + '\n', 'utf8');
  });
}
