import { availableParallelism } from 'node:os';
import { access } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { EngineError } from '../engine.ts';

export type Device = 'cpu' | 'cuda';

export interface OnnxOptions {
  /** Preference order from EXECUTION_PROVIDERS, e.g. ['cuda', 'cpu']. */
  providers: readonly Device[];
  /** Threads per session (ORT_INTRA_OP_THREADS); 0 = one per available core. */
  intraOpThreads: number;
  /** Micro-batching (INFERENCE_BATCH_MAX / INFERENCE_BATCH_WAIT_MS). */
  batchMax: number;
  batchWaitMs: number;
  warn(message: string): void;
}

/** A tensor as it crosses to the session's thread. */
export interface TensorData {
  type: 'int64' | 'float32';
  data: BigInt64Array | Float32Array;
  dims: readonly number[];
}

export interface ValueMetadata {
  name: string;
  isTensor: boolean;
  type?: string;
  /** Symbolic dimensions are names (strings). */
  shape: readonly (number | string)[];
}

export interface LoadedSession {
  session: OnnxSession;
  /** Where it actually runs. */
  device: Device;
}

const THREAD_SCRIPT = new URL('./session-thread.mjs', import.meta.url);

/** One warning per process, however many models fall back. */
let cudaFallbackWarned = false;
export function resetCudaWarningForTests() {
  cudaFallbackWarned = false;
}

/**
 * An onnxruntime session in its own thread (session-thread.mjs): onnxruntime-node runs inference synchronously on
 * the calling thread, so on the main thread it would block the event loop. Calls to one session run one at a
 * time, in order; different models run in parallel.
 */
export class OnnxSession {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve(out: Record<string, { data: Float32Array; dims: number[] }>): void; reject(err: Error): void }>();
  #next = 0;
  #failed: Error | undefined;
  inputMetadata: readonly ValueMetadata[] = [];
  outputMetadata: readonly ValueMetadata[] = [];

  constructor(worker: Worker) {
    this.#worker = worker;
    worker.unref(); // referenced only while a call is in flight
    worker.on('message', (msg: { id?: number; outputs?: Record<string, { data: Float32Array; dims: number[] }>; error?: string }) => {
      if (msg.id === undefined) return;
      const p = this.#pending.get(msg.id);
      if (!p) return;
      this.#pending.delete(msg.id);
      if (this.#pending.size === 0) this.#worker.unref();
      // A failed run is retried (the job resumes at its byte offset); a model that cannot load fails at start-up.
      if (msg.error !== undefined) p.reject(new EngineError(`inference failed: ${msg.error}`, { transient: true }));
      else p.resolve(msg.outputs!);
    });
    const failAll = (err: Error) => {
      this.#failed = err;
      for (const p of this.#pending.values()) p.reject(err);
      this.#pending.clear();
    };
    worker.on('error', (err) => failAll(new EngineError(`inference thread failed: ${err.message}`, { transient: true })));
    worker.on('exit', () => failAll(new EngineError('inference thread exited', { transient: true })));
  }

  get inputNames(): string[] {
    return this.inputMetadata.map((m) => m.name);
  }
  get outputNames(): string[] {
    return this.outputMetadata.map((m) => m.name);
  }

  /** Runs the model on `feeds`. Their buffers are transferred to the session's thread (unusable afterwards). */
  run(feeds: Record<string, TensorData>): Promise<Record<string, { data: Float32Array; dims: number[] }>> {
    if (this.#failed) return Promise.reject(this.#failed);
    return new Promise((resolve, reject) => {
      const id = this.#next++;
      this.#pending.set(id, { resolve, reject });
      if (this.#pending.size === 1) this.#worker.ref();
      const transfer = [...new Set(Object.values(feeds).map((t) => t.data.buffer as ArrayBuffer))];
      this.#worker.postMessage({ id, feeds }, transfer);
    });
  }

  async release(): Promise<void> {
    if (this.#failed) return;
    const exited = new Promise((r) => this.#worker.once('exit', r));
    this.#worker.ref(); // keep the process up until the session is released
    this.#worker.postMessage({ type: 'release' });
    await Promise.race([exited, new Promise((r) => setTimeout(r, 2000).unref())]);
    await this.#worker.terminate();
  }
}

/**
 * Creates an inference session on the first provider in `providers` that works. onnxruntime throws when the CUDA
 * provider is missing (no CUDA build or no GPU libraries) rather than falling back itself, so CUDA is tried alone
 * and, on failure, the session is created on the CPU with one warning per process. A file that is missing or not
 * a loadable model throws an EngineError naming the file.
 */
export async function createSession(file: string, opts: OnnxOptions): Promise<LoadedSession> {
  try {
    await access(file);
  } catch {
    throw new EngineError(`${file}: model file missing`);
  }
  const worker = new Worker(THREAD_SCRIPT, {
    workerData: { file, providers: [...opts.providers], intraOpThreads: opts.intraOpThreads > 0 ? opts.intraOpThreads : availableParallelism() },
  });
  const ready = await new Promise<{ type: string; device?: Device; cudaError?: string; loadError?: string; inputMetadata?: ValueMetadata[]; outputMetadata?: ValueMetadata[] }>(
    (resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', (err) => reject(new EngineError(`${file}: inference thread failed (${err.message})`)));
    },
  );
  if (ready.type !== 'ready') {
    await worker.terminate();
    if (ready.loadError !== undefined) throw new EngineError(`${file}: not a loadable ONNX model (${ready.loadError})`);
    throw new EngineError(`${file}: no usable execution provider among ${opts.providers.join(', ')} (${ready.cudaError ?? 'none tried'})`);
  }
  if (ready.cudaError !== undefined && !cudaFallbackWarned) {
    cudaFallbackWarned = true;
    opts.warn(`EXECUTION_PROVIDERS asks for cuda but the CUDA provider is not usable (${ready.cudaError}); running models on the CPU`);
  }
  const session = new OnnxSession(worker);
  session.inputMetadata = ready.inputMetadata!;
  session.outputMetadata = ready.outputMetadata!;
  return { session, device: ready.device! };
}

/** Fails with a message naming the file when a model lacks the inputs/outputs an engine feeds and reads. */
export function requireSignature(file: string, session: OnnxSession, kind: string, inputs: string[], outputs: string[]) {
  const missing = [
    ...inputs.filter((n) => !session.inputNames.includes(n)).map((n) => `input "${n}"`),
    ...outputs.filter((n) => !session.outputNames.includes(n)).map((n) => `output "${n}"`),
  ];
  if (missing.length > 0) {
    throw new EngineError(
      `${file}: not a ${kind} model (missing ${missing.join(', ')}; has inputs ${session.inputNames.join(', ')}, outputs ${session.outputNames.join(', ')})`,
    );
  }
}

/** 32-bit float audio in [-1, 1] → 16-bit little-endian PCM (clipped). */
export function floatToPcm16(samples: Float32Array): Buffer {
  const out = Buffer.allocUnsafe(samples.length * 2);
  for (let i = 0; i < samples.length; i++) {
    const v = Math.round(samples[i]! * 32767);
    out.writeInt16LE(v > 32767 ? 32767 : v < -32768 ? -32768 : v, i * 2);
  }
  return out;
}
