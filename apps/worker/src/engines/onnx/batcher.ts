import type { OnnxSession, TensorData, ValueMetadata } from './session.ts';

/*
 * Micro-batching: segments of concurrent jobs for the same model that wait at the same time run as one inference
 * call, and each job still gets exactly the audio it would get alone.
 *
 * Padding is not exact for these models: a VITS (Piper) or StyleTTS2 (Kokoro) graph given a padded batch makes
 * different audio for the shorter items (convolutions see the padding; the decoder runs over the longest item's
 * frames) and neither published signature exposes per-item output lengths to trim by. So items batch only with
 * items of the same key — equal token length and equal shared inputs (Piper's `scales`, Kokoro's `speed`) —
 * stacked along the batch dimension without padding, and the output is split into equal parts.
 *
 * That is still only exact for a model whose output length depends on the token count and shared inputs alone and
 * whose items do not interact. The signature cannot say so, so a model batches only when (1) every per-item input
 * and the output have a symbolic batch dimension and (2) an exactness probe at load passes: two different items of
 * equal length, each run alone twice (deterministic) and then together, give byte-identical audio. Published
 * models, as far as their graphs are known: Piper voices have a symbolic batch dimension but sample noise
 * (RandomNormalLike, unseeded: not deterministic alone) and per-item predicted durations, so the probe fails and
 * they run unbatched; Kokoro's predicted durations make its output length content-dependent too (and some exports
 * fix the batch dimension at 1), so it runs unbatched. Models that pass (the generated test/bench models, and any
 * deterministic model whose output length follows its input length) batch.
 *
 * Scheduling: each model runs one call at a time in its own thread (session.ts). An item for an idle model goes at
 * once (or after INFERENCE_BATCH_WAIT_MS, if set); items arriving while the model is busy wait and leave together,
 * one call per key and at most INFERENCE_BATCH_MAX items, when it is free.
 */

type Typed = BigInt64Array | Float32Array;
export interface ItemInput {
  type: 'int64' | 'float32';
  data: Typed;
  /** This item's dims, without the batch dimension. */
  dims: number[];
}

export interface BatchItem {
  /** Items batch only with items of the same key: equal token length and equal shared inputs. */
  key: string;
  perItem: Record<string, ItemInput>;
  shared: Record<string, TensorData>;
}

export interface BatcherOptions {
  max: number;
  waitMs: number;
}

interface Waiting {
  item: BatchItem;
  resolve(out: Float32Array): void;
  reject(err: unknown): void;
}

export class InferenceBatcher {
  readonly #session: OnnxSession;
  readonly #output: string;
  readonly #opts: BatcherOptions;
  readonly #groups = new Map<string, { waiting: Waiting[]; timer: NodeJS.Timeout | NodeJS.Immediate | undefined }>();
  #inFlight = 0;
  /** Set by `probe()`: the model batches exactly. */
  batching = false;
  /** Inference calls made and items they carried (tests and the benchmark read these). */
  readonly stats = { calls: 0, items: 0, batchedCalls: 0 };

  constructor(session: OnnxSession, output: string, opts: BatcherOptions) {
    this.#session = session;
    this.#output = output;
    this.#opts = opts;
  }

  /** Turns batching on when the model has a batch dimension and batches the two probe items exactly. */
  async probe(a: BatchItem, b: BatchItem): Promise<boolean> {
    try {
      return (this.batching = await this.#exact(a, b));
    } finally {
      this.stats.calls = this.stats.items = this.stats.batchedCalls = 0; // count only real work
    }
  }

  async #exact(a: BatchItem, b: BatchItem): Promise<boolean> {
    this.batching = false;
    if (this.#opts.max < 2 || !this.#hasBatchDimension(a)) return false;
    const [a1, a2, b1, b2] = [await this.#runSolo(a), await this.#runSolo(a), await this.#runSolo(b), await this.#runSolo(b)];
    if (!same(a1, a2) || !same(b1, b2) || same(a1, b1)) return false;
    let together: Float32Array[];
    try {
      together = await this.#runBatch([a, b]);
    } catch {
      return false;
    }
    return same(together[0]!, a1) && same(together[1]!, b1);
  }

  /**
   * The item's output. While the model is busy (its thread runs one call at a time), items wait and leave together
   * when it is free, up to `max` per call; when it is idle, an item waits at most `waitMs` for companions (0: only
   * those arriving in the same event-loop turn), so a lone request pays no batching delay.
   */
  run(item: BatchItem): Promise<Float32Array> {
    if (!this.batching) return this.#runSolo(item);
    return new Promise((resolve, reject) => {
      let group = this.#groups.get(item.key);
      if (!group) {
        group = { waiting: [], timer: undefined };
        this.#groups.set(item.key, group);
      }
      group.waiting.push({ item, resolve, reject });
      if (group.waiting.length >= this.#opts.max) this.#flush(item.key);
      else if (this.#inFlight === 0 && !group.timer) {
        const flush = () => this.#flush(item.key);
        if (this.#opts.waitMs > 0) group.timer = setTimeout(flush, this.#opts.waitMs);
        else flush();
      }
    });
  }

  #flush(key: string) {
    const group = this.#groups.get(key);
    if (!group) return;
    this.#groups.delete(key);
    if (group.timer) {
      clearTimeout(group.timer as NodeJS.Timeout);
      clearImmediate(group.timer as NodeJS.Immediate);
    }
    const { waiting } = group;
    this.#inFlight++;
    const done =
      waiting.length === 1 ? this.#runSolo(waiting[0]!.item).then((o) => [o]) : this.#runBatch(waiting.map((w) => w.item));
    done
      .then(
        (outs) => waiting.forEach((w, i) => w.resolve(outs[i]!)),
        (err: unknown) => waiting.forEach((w) => w.reject(err)),
      )
      .finally(() => {
        // The model is free: whatever waited meanwhile goes now, one call per key.
        if (--this.#inFlight === 0) for (const k of [...this.#groups.keys()]) this.#flush(k);
      });
  }

  async #runSolo(item: BatchItem): Promise<Float32Array> {
    return (await this.#runBatch([item]))[0]!;
  }

  async #runBatch(items: BatchItem[]): Promise<Float32Array[]> {
    const n = items.length;
    // Fresh arrays: their buffers are transferred to the session's thread.
    const feeds: Record<string, TensorData> = {};
    for (const [name, t] of Object.entries(items[0]!.shared)) feeds[name] = { ...t, data: t.data.slice() };
    for (const [name, first] of Object.entries(items[0]!.perItem)) {
      const size = first.data.length;
      const data = first.type === 'int64' ? new BigInt64Array(size * n) : new Float32Array(size * n);
      items.forEach((it, i) => {
        const part = it.perItem[name]!;
        if (part.data.length !== size) throw new Error(`batch item ${name} size mismatch`);
        (data as Float32Array).set(part.data as Float32Array, i * size);
      });
      feeds[name] = { type: first.type, data, dims: [n, ...first.dims] };
    }
    this.stats.calls++;
    this.stats.items += n;
    if (n > 1) this.stats.batchedCalls++;
    const result = await this.#session.run(feeds);
    const out = result[this.#output]!;
    const data = out.data;
    if (out.dims[0] !== n || data.length % n !== 0) throw new Error(`model output ${this.#output} has dims [${out.dims.join(',')}] for a batch of ${n}`);
    const each = data.length / n;
    return items.map((_, i) => data.slice(i * each, (i + 1) * each));
  }

  #hasBatchDimension(item: BatchItem): boolean {
    const dim0 = (list: readonly ValueMetadata[], name: string) => {
      const m = list.find((x) => x.name === name);
      return m?.isTensor ? m.shape[0] : undefined;
    };
    const symbolic = (d: unknown) => typeof d === 'string' || d === -1;
    return (
      Object.keys(item.perItem).every((name) => symbolic(dim0(this.#session.inputMetadata, name))) &&
      symbolic(dim0(this.#session.outputMetadata, this.#output))
    );
  }
}

function same(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}
