import { availableParallelism } from 'node:os';
import { access } from 'node:fs/promises';
import ort from 'onnxruntime-node';
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

export interface LoadedSession {
  session: ort.InferenceSession;
  /** Where it actually runs. */
  device: Device;
}

/** One warning per process, however many models fall back. */
let cudaFallbackWarned = false;
export function resetCudaWarningForTests() {
  cudaFallbackWarned = false;
}

/**
 * Creates an inference session on the first provider in `providers` that works. onnxruntime throws when the CUDA
 * provider is missing (no CUDA build or no GPU libraries) rather than falling back itself, so CUDA is tried alone
 * and, on failure, the session is created on the CPU with one warning. A file that is missing or not a loadable
 * model throws an EngineError naming the file.
 */
export async function createSession(file: string, opts: OnnxOptions): Promise<LoadedSession> {
  try {
    await access(file);
  } catch {
    throw new EngineError(`${file}: model file missing`);
  }
  const base: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: opts.intraOpThreads > 0 ? opts.intraOpThreads : availableParallelism(),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  };
  let cudaError: string | undefined;
  for (const device of opts.providers) {
    if (device === 'cuda') {
      try {
        // Severity 4: the CUDA probe's own library-not-found error would otherwise print a second message.
        const session = await ort.InferenceSession.create(file, { ...base, executionProviders: ['cuda'], logSeverityLevel: 4 });
        return { session, device };
      } catch (err) {
        cudaError = firstLine(err);
        continue;
      }
    }
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(file, { ...base, executionProviders: ['cpu'] });
    } catch (err) {
      throw new EngineError(`${file}: not a loadable ONNX model (${firstLine(err)})`);
    }
    if (cudaError !== undefined && !cudaFallbackWarned) {
      cudaFallbackWarned = true;
      opts.warn(`EXECUTION_PROVIDERS asks for cuda but the CUDA provider is not usable (${cudaError}); running models on the CPU`);
    }
    return { session, device };
  }
  throw new EngineError(`${file}: no usable execution provider among ${opts.providers.join(', ')} (${cudaError ?? 'none tried'})`);
}

function firstLine(err: unknown): string {
  // eslint-disable-next-line no-control-regex
  return String((err as Error)?.message ?? err).replace(/\u001b\[[0-9;]*m/g, '').split('\n')[0]!.slice(0, 300);
}

/** Names and shapes of a session's inputs/outputs, for signature checks at load. */
export function signature(session: ort.InferenceSession) {
  const shapes = (list: readonly ort.InferenceSession.ValueMetadata[]) =>
    new Map(list.map((m) => [m.name, m.isTensor ? m.shape : []] as const));
  return { inputs: shapes(session.inputMetadata), outputs: shapes(session.outputMetadata) };
}

/** Fails with a message naming the file when a model lacks the inputs/outputs an engine feeds and reads. */
export function requireSignature(file: string, session: ort.InferenceSession, kind: string, inputs: string[], outputs: string[]) {
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

export { ort };
