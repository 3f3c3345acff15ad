/*
 * Input texts. Plain English prose with ordinary sentence punctuation, so the segmenter and espeak-ng see what
 * a real request would send.
 */

const SOURCE = [
  'The old lighthouse stood at the edge of the cliff, watching over the harbour as it had for a hundred years.',
  'Every evening the keeper climbed the spiral stairs, lit the great lamp, and wrote the weather in his log.',
  'Ships came and went with the tides, carrying timber, wool and letters from cities he would never see.',
  'In winter the storms rolled in from the west, and the whole tower hummed like a struck bell.',
  'He did not mind the noise; it meant the light was needed, and that someone out there was looking for it.',
  'When the first automatic lamp arrived, he polished its lens for a week before he let it take his place.',
  'Then he moved to the village below, where he still walks to the harbour wall each night to watch it turn.',
].join(' ');

/** Exactly `length` characters of prose (length ≥ 2); the last word may be clipped before the final stop. */
export function textOfLength(length: number): string {
  let text = SOURCE;
  while (text.length < length) text = `${text} ${SOURCE}`;
  return `${text.slice(0, length - 1).replace(/[\s,;.]$/, 'a')}.`;
}

/** The 300-character paragraph the overhead and concurrency benchmarks send. */
export const PARAGRAPH_300 = textOfLength(300);
