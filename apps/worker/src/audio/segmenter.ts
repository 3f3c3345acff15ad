/**
 * Splits input text into synthesis segments. The first segment is kept short so first audio is early; later
 * ones are merged up to a larger size, since each engine call has a fixed cost (espeak-ng: ~13 ms per spawn).
 */

const FIRST_SEGMENT_MAX = 160;
const SEGMENT_MAX = 600;
const SOFT_BREAK = /[,;:\u2013\u2014]\s+/g;

/** Sentences: split after . ! ? … (and CJK stops) followed by space, and at blank lines/newlines. */
function sentences(text: string): string[] {
  return text
    .split(/(?<=[.!?\u2026\u3002\uff01\uff1f])\s+|\n+/u)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** Cuts an over-long piece at a clause break, else at a space, else hard. */
function cut(piece: string, max: number): string[] {
  const out: string[] = [];
  let rest = piece;
  while (rest.length > max) {
    let at = -1;
    for (const m of rest.slice(0, max).matchAll(SOFT_BREAK)) at = m.index + m[0].length;
    if (at < max / 3) at = rest.lastIndexOf(' ', max);
    if (at <= 0) at = max;
    out.push(rest.slice(0, at).trim());
    rest = rest.slice(at).trim();
  }
  if (rest) out.push(rest);
  return out;
}

export function segmentText(text: string): string[] {
  const pieces = sentences(text).flatMap((s) => cut(s, SEGMENT_MAX));
  if (pieces.length === 0) return [];
  const [first, ...rest] = pieces;
  const head = cut(first!, FIRST_SEGMENT_MAX);
  const segments = [head[0]!];
  let current = head.slice(1).join(' ');
  for (const piece of rest) {
    if (current && current.length + 1 + piece.length > SEGMENT_MAX) {
      segments.push(current);
      current = piece;
    } else {
      current = current ? `${current} ${piece}` : piece;
    }
  }
  if (current) segments.push(current);
  return segments;
}
