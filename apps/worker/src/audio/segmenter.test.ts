import { describe, expect, it } from 'vitest';
import { segmentText } from './segmenter.ts';

describe('segmentText', () => {
  it('keeps all the words, in order', () => {
    const text = 'One two. Three four! Five six? Seven\n\nEight, nine; ten.';
    expect(segmentText(text).join(' ').split(/\s+/)).toEqual(text.split(/\s+/));
  });

  it('starts with a short first segment, then merges sentences into larger ones', () => {
    const sentence = 'This is a sentence of moderate length for the test. ';
    const segs = segmentText(sentence.repeat(40));
    expect(segs[0]!.length).toBeLessThanOrEqual(160);
    expect(segs.length).toBeLessThan(10);
    for (const s of segs) expect(s.length).toBeLessThanOrEqual(600);
  });

  it('cuts a very long sentence without punctuation', () => {
    const segs = segmentText('word '.repeat(1000));
    for (const s of segs) expect(s.length).toBeLessThanOrEqual(600);
    expect(segs.join(' ').split(' ').length).toBe(1000);
  });

  it('returns nothing for whitespace', () => {
    expect(segmentText('  \n ')).toEqual([]);
  });
});
