/**
 * Micro-batching: batched vs unbatched inference throughput at concurrency 1/4/16 on this CPU, and the batcher's
 * added latency at c=1. A generated Piper-signature model with realistic compute (dense layers over the token
 * embeddings, sized so one 100-token segment takes tens of ms) runs through the worker's own InferenceBatcher;
 * every item has 100 tokens (the batcher only stacks equal-length items, so this is its best case) and different
 * ids and speakers. Each client runs its items back to back (closed loop).
 *
 *   node --import tsx bench/inference-batching.ts [--quick]     (ORT_INTRA_OP_THREADS, default 1)
 */
import { rmSync } from 'node:fs';
import path from 'node:path';
import { createSession } from '../apps/worker/src/engines/onnx/session.ts';
import { InferenceBatcher, type BatchItem } from '../apps/worker/src/engines/onnx/batcher.ts';
import { generateModelsDir } from '../test/helpers/onnx-models.ts';

const QUICK = process.argv.includes('--quick');
const TOKENS = 100;
const LEVELS = [1, 4, 16];
const THREADS = Number(process.env.ORT_INTRA_OP_THREADS ?? 1);
const ITEMS_PER_LEVEL = QUICK ? 16 : 48;
const BATCH_MAX = 16;
const BATCH_WAIT_MS = Number(process.env.INFERENCE_BATCH_WAIT_MS ?? 0);

function item(seed: number): BatchItem {
  const ids = Array.from({ length: TOKENS }, (_, i) => BigInt(3 + ((seed * 7 + i * 13) % 120)));
  return {
    key: `${TOKENS}|0.667,1,0.8`,
    perItem: {
      input: { type: 'int64', data: BigInt64Array.from(ids), dims: [TOKENS] },
      input_lengths: { type: 'int64', data: BigInt64Array.of(BigInt(TOKENS)), dims: [] },
      sid: { type: 'int64', data: BigInt64Array.of(BigInt(seed % 2)), dims: [] },
    },
    shared: { scales: { type: 'float32', data: Float32Array.of(0.667, 1, 0.8), dims: [3] } },
  };
}

async function level(batcher: InferenceBatcher, concurrency: number) {
  let next = 0;
  const latencies: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < ITEMS_PER_LEVEL) {
        const it = item(next++);
        const s = performance.now();
        await batcher.run(it);
        latencies.push(performance.now() - s);
      }
    }),
  );
  const s = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  return { perS: ITEMS_PER_LEVEL / s, p50: latencies[Math.floor(latencies.length / 2)]! };
}

const models = generateModelsDir({ layers: 12, hidden: 768 });
try {
  const file = path.join(models.dir, 'piper', 'en_US-multi-medium.onnx');
  const opts = { providers: ['cpu'] as const, intraOpThreads: THREADS, warn: console.warn };
  const { session } = await createSession(file, { ...opts, batchMax: 1, batchWaitMs: 0 });
  const unbatched = new InferenceBatcher(session, 'output', { max: 1, waitMs: 0 });
  const batched = new InferenceBatcher(session, 'output', { max: BATCH_MAX, waitMs: BATCH_WAIT_MS });
  if (!(await batched.probe(item(1), item(2)))) throw new Error('the bench model did not pass the exactness probe');
  for (let i = 0; i < 4; i++) await unbatched.run(item(i)); // warm up
  console.log(`model: ${TOKENS} tokens per segment, ${THREADS} intra-op thread(s), batch max ${BATCH_MAX}, wait ${BATCH_WAIT_MS} ms, ${ITEMS_PER_LEVEL} segments × 2 per level and mode (unbatched, batched, batched, unbatched)`);
  console.log('concurrency | unbatched seg/s | batched seg/s | ratio | unbatched p50 ms | batched p50 ms | mean batch');
  for (const c of LEVELS) {
    // Alternating halves, so drift in a shared machine's load falls on both alike.
    const before = { ...batched.stats };
    const [u1, b1, b2, u2] = [await level(unbatched, c), await level(batched, c), await level(batched, c), await level(unbatched, c)];
    const u = { perS: (u1.perS + u2.perS) / 2, p50: (u1.p50 + u2.p50) / 2 };
    const b = { perS: (b1.perS + b2.perS) / 2, p50: (b1.p50 + b2.p50) / 2 };
    const meanBatch = (batched.stats.items - before.items) / (batched.stats.calls - before.calls);
    console.log(
      `${String(c).padStart(11)} | ${u.perS.toFixed(1).padStart(15)} | ${b.perS.toFixed(1).padStart(13)} | ${(b.perS / u.perS).toFixed(2).padStart(5)} | ${u.p50.toFixed(1).padStart(16)} | ${b.p50.toFixed(1).padStart(14)} | ${meanBatch.toFixed(1)}`,
    );
  }
  await session.release();
} finally {
  rmSync(models.dir, { recursive: true, force: true });
}
