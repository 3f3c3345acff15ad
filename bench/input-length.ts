/**
 * Input length: time to first byte for 40, 400 and 4,000 characters through the full service. The worker
 * synthesizes a short first segment before the rest and streams it as it is made, so first audio should not
 * grow with the input. Lengths are interleaved request by request, so machine drift hits all of them alike.
 *
 *   node --import tsx bench/input-length.ts [--quick]
 */
import type { AudioFormat } from '@chorus/shared';
import { segmentText } from '../apps/worker/src/audio/segmenter.ts';
import { DirectPipeline } from './lib/direct.ts';
import { AGENT, speech, speechBody } from './lib/http-client.ts';
import { closedLoop, sleep } from './lib/load.ts';
import { isMain } from './lib/main.ts';
import { QUICK, markStart, printTable, verdicts, writeResults } from './lib/report.ts';
import { BenchStack } from './lib/stack.ts';
import { round, summarize } from './lib/stats.ts';
import { textOfLength } from './lib/texts.ts';

const LENGTHS = [40, 400, 4000];
const FORMATS: AudioFormat[] = ['mp3', 'pcm'];
const REPEATS = QUICK ? 4 : 25;
/**
 * Pause between requests: long enough for the worker to refill its warm encoder (one per format by default),
 * so every request measures input length, not whether the previous request's encoder replacement had finished
 * starting (bench/overhead.ts covers back-to-back load).
 */
const GAP_MS = 250;
const DIRECT_REPEATS = 10;

/**
 * The worker pipeline in this process, as it is and as it was before it streamed segments (whole first segment
 * resampled and encoded at once): the same comparison on the same machine in the same run, without the service
 * around it.
 */
async function directBeforeAfter(texts: Map<number, string>) {
  const direct = new DirectPipeline(1);
  await direct.init();
  const ttfb = new Map<string, number[]>();
  try {
    await sleep(300);
    for (let i = 0; i < (QUICK ? 2 : DIRECT_REPEATS); i++) {
      for (const n of LENGTHS) {
        for (const f of FORMATS) {
          for (const whole of [false, true]) {
            direct.wholeSegments = whole;
            await sleep(GAP_MS);
            const r = await direct.run(texts.get(n)!, f, { untilFirstByte: true });
            const k = `${f}/${n}/${whole ? 'before' : 'after'}`;
            (ttfb.get(k) ?? (ttfb.set(k, []), ttfb.get(k)!)).push(r.ttfbMs);
          }
        }
      }
    }
  } finally {
    direct.close();
  }
  const rows = FORMATS.flatMap((f) => LENGTHS.map((n) => {
    const p50 = (when: string) => round(summarize(ttfb.get(`${f}/${n}/${when}`)!).p50);
    return { format: f, chars: n, beforeP50: p50('before'), afterP50: p50('after') };
  }));
  const base = (f: string, when: 'beforeP50' | 'afterP50') => rows.find((r) => r.format === f && r.chars === 40)![when];
  printTable('Direct pipeline first byte (ms p50): before / after streaming the first segment',
    ['format', 'chars', 'before', 'before / 40 chars', 'after', 'after / 40 chars'],
    rows.map((r) => [r.format, r.chars, r.beforeP50, round(r.beforeP50 / base(r.format, 'beforeP50'), 2), r.afterP50, round(r.afterP50 / base(r.format, 'afterP50'), 2)]));
  return rows;
}

export async function runInputLength() {
  markStart();
  const stack = await BenchStack.start({ workers: 1, workerEnv: { ENGINES: 'espeak' } });
  try {
    const texts = new Map(LENGTHS.map((n) => [n, textOfLength(n)]));
    await closedLoop(1, 6, (i) => speech(stack.baseUrl, speechBody(texts.get(LENGTHS[i % 3]!)!, FORMATS[i % 2]!), { keepChunks: false }));
    const ttfb = new Map<string, number[]>();
    const totals = new Map<string, number[]>();
    let errors = 0;
    for (let i = 0; i < REPEATS; i++) {
      for (const n of LENGTHS) {
        for (const f of FORMATS) {
          await sleep(GAP_MS);
          const r = await speech(stack.baseUrl, speechBody(texts.get(n)!, f), { keepChunks: false });
          if (r.error) {
            errors++;
            continue;
          }
          const k = `${f}/${n}`;
          (ttfb.get(k) ?? (ttfb.set(k, []), ttfb.get(k)!)).push(r.ttfbMs);
          (totals.get(k) ?? (totals.set(k, []), totals.get(k)!)).push(r.totalMs);
        }
      }
    }
    const rows = FORMATS.flatMap((f) => {
      const base = summarize(ttfb.get(`${f}/40`)!).p50;
      return LENGTHS.map((n) => {
        const s = summarize(ttfb.get(`${f}/${n}`)!);
        return {
          format: f, chars: n, firstSegmentChars: segmentText(texts.get(n)!)[0]!.length, n: s.n,
          ttfbP50: round(s.p50), ttfbP95: round(s.p95), ratioVs40: round(s.p50 / base, 3),
          totalP50: round(summarize(totals.get(`${f}/${n}`)!).p50),
        };
      });
    });
    printTable(`Input length: time to first byte (ms, one request at a time, ${GAP_MS} ms apart, ${REPEATS} each)`,
      ['format', 'chars', 'first segment', 'TTFB p50', 'TTFB p95', 'p50 / 40 chars', 'total p50'],
      rows.map((r) => [r.format, r.chars, r.firstSegmentChars, r.ttfbP50, r.ttfbP95, r.ratioVs40, r.totalP50]));
    const targets = verdicts(FORMATS.map((f) => ({
      name: `TTFB p50 4,000 chars / 40 chars (${f})`,
      measured: rows.find((r) => r.format === f && r.chars === 4000)!.ratioVs40, limit: 1.2, op: 'le' as const,
    })));
    const beforeAfter = await directBeforeAfter(texts);
    writeResults('input-length', { params: { lengths: LENGTHS, formats: FORMATS, repeats: REPEATS, gapMs: GAP_MS, quick: QUICK }, errors, rows, targets, beforeAfter });
  } finally {
    AGENT.destroy();
    await stack.stop();
  }
}

if (isMain(import.meta.url)) await runInputLength();
