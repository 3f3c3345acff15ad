/**
 * User text as plain text for espeak-ng (the espeak engine, and any engine that phonemises through espeak-ng).
 * Without `-m` (SSML off), espeak-ng still honours two kinds of in-band markup in text input:
 * - `[[…]]`: phoneme mnemonics. It is entered on two ASCII brackets in a row, with characters it ignores
 *   (U+00AD soft hyphen, U+200C, U+200D) allowed in between; a few hundred characters of phoneme input can
 *   crash it (SIGSEGV) or make it exit 0 with no audio. Only ASCII `[`/`]` count (fullwidth ones are letters).
 * - Ctrl-A (U+0001) embedded commands (`\x01` + `V` voice change, `B` punctuation mode, `<n>S` rate, …).
 *
 * So: control characters become spaces; invisible format characters (`\p{Cf}`: soft hyphen, bidi marks, word
 * joiners, BOM, …) are dropped, except ZWNJ/ZWJ, which are spelling in Persian and Indic scripts (espeak-ng reads
 * Malayalam virama + ZWJ as a chillu) and cannot open markup once no bracket is left; then EVERY `[` and `]`
 * becomes `(` / `)`. espeak-ng reads a single bracket exactly as a parenthesis (identical audio), so text that
 * uses brackets as brackets sounds the same, and `[[` can no longer occur.
 */
export function plainText(text: string): string {
  return (
    text
      // eslint-disable-next-line no-control-regex
      .replace(/[\p{Cc}]/gu, (c) => (c === '\n' ? c : ' '))
      .replace(/(?![\u200c\u200d])\p{Cf}/gu, '')
      .replace(/\[/g, '(')
      .replace(/\]/g, ')')
  );
}
