import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { RedisClient } from '@chorus/shared';
import { UnrecoverableError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import {
  ChorusError, DEFAULT_MAX_AUDIO_SECONDS, enqueueFinalize, ERRORS, OUTPUT_BYTES_PER_SAMPLE, OUTPUT_SAMPLE_RATE,
  pickSynthesisOptions, remainingOutcomes, TtsJob, type RestartPoint, type TtsJobResult,
} from '@chorus/shared';
import { EngineError, type TtsEngine } from '../engines/engine.ts';
import { isProcessFormat, type EncoderPool } from '../encoders/encoder-pool.ts';
import { isPiecewiseFormat, PiecewiseEncoder } from '../encoders/piecewise-encoder.ts';
import { JobPriority, NICENESS } from './job-priority.ts';
import { FIRST_RECORD_GRACE_MS, type FirstAudioGate } from './first-audio-gate.ts';
import { TempoStage } from '../encoders/tempo-stage.ts';
import { Resampler } from '../audio/resampler.ts';
import { segmentText } from '../audio/segmenter.ts';
import { readStreamPosition, StreamWriter } from '../stream/stream-writer.ts';
import type { AudioSink } from '../stream/audio-sink.ts';
import { StorageSink, type BatchDeps } from '../batch/storage-sink.ts';
import type { WorkerMetrics } from '../metrics.ts';

export interface SynthesizeDeps {
  redis: RedisClient;
  engines: ReadonlyMap<string, TtsEngine>;
  encoders: EncoderPool;
  streamTtlS: number;
  logger: Logger;
  metrics: WorkerMetrics;
  /** The worker's maxStartedAttempts (MAX_STARTED_ATTEMPTS): BullMQ retries no job started this often. */
  maxStartedAttempts?: number;
  /** Storage and the control queue, for batch items (jobs with a storage `sink`). */
  batch?: BatchDeps;
  /** True when the job's cancel flag is set (client went away before we started). */
  isCancelled(jobId: string): Promise<boolean>;
  /** The worker's one gate: jobs waiting for first audio get the CPU of streams that are well ahead. */
  gate?: FirstAudioGate;
}

/** Client-facing messages for failures whose detail is internal (it is logged with the request id instead). */
export const ENGINE_FAILED_MESSAGE = 'Speech synthesis failed.';
const CANCELLED_MESSAGE = 'The request was cancelled.';

const resamplers = new Map<number, Resampler>();
function resamplerFor(rate: number): Resampler {
  let r = resamplers.get(rate);
  if (!r) resamplers.set(rate, (r = new Resampler(rate, OUTPUT_SAMPLE_RATE)));
  return r;
}

/**
 * A failure that another run may not repeat: an engine process killed by a signal, an inference call that threw
 * (EngineError with `transient`), and whatever is not an engine's verdict on its input — a dead ffmpeg, a Redis
 * error. Bad input (ChorusError, a plain EngineError) fails the same way every time.
 */
export function isTransient(err: unknown): boolean {
  if (err instanceof ChorusError) return false;
  if (err instanceof EngineError) return err.transient;
  return true;
}

/** Whether BullMQ would retry this attempt's failure (its own rule: attempts, and maxStartedAttempts). */
function hasAttemptsLeft(job: Job, maxStartedAttempts: number | undefined): boolean {
  if (maxStartedAttempts && job.attemptsStarted >= maxStartedAttempts) return false;
  return job.attemptsMade + 1 < (job.opts.attempts ?? 1);
}

/**
 * The `synthesize` processor: text → segments → engine PCM → 24 kHz → (tempo) → encoder → sink: stream records for
 * a realtime request, a file in storage for a batch item (its `sink`; see batch/storage-sink.ts).
 * A permanent failure is published on the stream as an `error` record (the client is already listening) and
 * ends the job without retry. A transient one (see isTransient) is thrown for BullMQ to retry, with nothing
 * published: the next attempt regenerates the deterministic audio and resumes at the stream's byte offset, and
 * only the last attempt publishes the error. A crashed worker's job is picked up by stall recovery likewise.
 */
export function createSynthesizeProcessor(deps: SynthesizeDeps) {
  return async function synthesize(job: Job, _token?: string, signal?: AbortSignal): Promise<TtsJobResult> {
    const parsed = TtsJob.safeParse(job.data);
    if (!parsed.success) throw new UnrecoverableError(`invalid job payload: ${parsed.error.issues[0]?.message}`);
    const data = parsed.data;
    const log = deps.logger.child({ jobId: job.id, reqId: data.requestId, engine: data.engine });
    log.debug({ queuedMs: (job.processedOn ?? 0) - job.timestamp, sinceStartMs: Date.now() - (job.processedOn ?? 0) }, 'job started');
    const abort = signal ?? new AbortController().signal;
    const options = pickSynthesisOptions(data);
    const background = data.priority === 'batch';
    // Full CPU priority until the listener has new audio, then behind jobs that have none yet (job-priority.ts).
    const priority = new JobPriority(background ? NICENESS.batch : NICENESS.firstAudio);
    // Until its first audio a realtime job has the CPU of streams that are well ahead (first-audio-gate.ts), from
    // its first step: the stream-position read below is a Redis round trip whose every hop waits for a CPU (under
    // 5× overload the worker's p95 from job start to first record went 21–22 → 15–17 ms; bench/admission.ts).
    // Then it is one of them, ahead by the audio it made since its first bytes minus the time since. Batch items
    // always are.
    const gate = deps.gate;
    let leaveGate: (afterMs?: number) => void = () => {};
    if (gate) leaveGate = background ? gate.streaming(priority, () => Infinity) : gate.waitForFirstAudio(priority);
    try {
      return await run();
    } finally {
      leaveGate();
    }

    async function run(): Promise<TtsJobResult> {
      // Asked now, answered with the stream position below: one round trip before the first audio, not two.
      const cancelledBeforeStart = deps.isCancelled(job.id!);
      cancelledBeforeStart.catch(() => {}); // awaited below, or not needed (a duplicate delivery returns first)
      let writer: AudioSink;
      let resuming = false;
      let resumeFrom: RestartPoint | undefined;
      if (data.sink) {
        // A batch item: audio to storage, outcome to the batch. One that has its outcome already (a worker died
        // after recording it) is not run again; it only makes sure the finalizer was enqueued.
        if (!deps.batch) throw new UnrecoverableError('batch item on a worker without storage');
        const { batchId, customId } = data.sink;
        if ((await deps.redis.hexists(deps.batch.keys.batchOutcomes(batchId), customId)) === 1) {
          log.info('batch item has its outcome already; duplicate delivery ignored');
          if ((await remainingOutcomes(deps.redis, deps.batch.keys, batchId)) === 0) await enqueueFinalize(deps.batch.control, batchId);
          return { bytes: 0, durationS: 0, chars: data.text.length, chunks: 0 };
        }
        writer = new StorageSink(deps.batch, data.sink, data);
      } else if (data.streamKey) {
        const position = await readStreamPosition(deps.redis, data.streamKey);
        if (position.finished) {
          log.info('stream already finished; duplicate delivery ignored');
          return { bytes: position.bytes, durationS: 0, chars: data.text.length, chunks: 0 };
        }
        // Re-encoded from the earlier attempt's last restart point, not from the start (piecewise-encoder.ts).
        if (isPiecewiseFormat(data.format)) resumeFrom = position.restart;
        writer = new StreamWriter(deps.redis, data.streamKey, deps.streamTtlS, position, resumeFrom?.bytes);
        if (position.seq > 0) {
          resuming = true;
          log.warn(
            { seq: position.seq, bytes: position.bytes, restartBytes: resumeFrom?.bytes ?? 0 },
            'resuming a stream left by an earlier attempt',
          );
        }
      } else {
        throw new UnrecoverableError('invalid job payload: neither streamKey nor sink');
      }

      if (await cancelledBeforeStart) {
        await writer.fail(ERRORS.TTS_ERR_CANCELLED.code, CANCELLED_MESSAGE);
        deps.metrics.jobs.inc({ status: 'cancelled', engine: data.engine });
        throw new UnrecoverableError('cancelled before start');
      }

      const engine = deps.engines.get(data.engine);
      if (!engine) {
        await writer.fail(ERRORS.TTS_ERR_MODEL_UNAVAILABLE.code, `No worker is serving model '${data.model}' right now.`);
        throw new UnrecoverableError(`engine ${data.engine} not served here`);
      }

      const started = Date.now();
      // attemptsStarted > 1: a restart after a crashed worker (counted as `retried`, whether or not bytes were out).
      deps.metrics.observeStart(data, job.attemptsStarted, started);
      deps.metrics.busy.inc();
      const [minSpeed, maxSpeed] = engine.speedRange;
      const engineSpeed = Math.min(maxSpeed, Math.max(minSpeed, data.speed));
      const residualTempo = data.speed / engineSpeed;
      const needsTempo = Math.abs(residualTempo - 1) > 1e-3;
      // Piper voices differ in rate (16 kHz, 22,050 Hz): the speaker's own. (Throws for a voice this worker lacks:
      // published below like any failure of the run.)
      let engineRate = engine.sampleRate;
      let rateError: unknown;
      try {
        engineRate = engine.sampleRateFor?.(data.speaker) ?? engine.sampleRate;
      } catch (err) {
        rateError = err;
      }
      // An encoder process (LAME, ffmpeg) or a tempo stage takes the engine's PCM as it is and resamples it to 24 kHz
      // in C: the JS resampler was most of the worker's own CPU per request (bench/profile.ts). It stays for wav/pcm
      // without a tempo stage (no child process at all).
      const pcmRate = isProcessFormat(data.format) ? engineRate : OUTPUT_SAMPLE_RATE;
      const resampleHere = !isProcessFormat(data.format) && !needsTempo;
      const encoder = isPiecewiseFormat(data.format)
        ? new PiecewiseEncoder(data.format, () => deps.encoders.acquire(data.format, background, pcmRate), {
            inputRate: pcmRate,
            resumeFrom,
            onRestartPoint: (point) => writer.restartPoint?.(point),
          })
        : deps.encoders.acquire(data.format, background, pcmRate);
      encoder.attach((chunk) => writer.push(chunk));
      encoder.adopt?.(priority);

      // The audio limit, on the PCM the client gets (after tempo): the job fails as soon as its audio passes it,
      // whatever the text (4,095 ideographs at speed 0.25 would be hours). Counted before the encoder sees the
      // piece, so a limit passed before any encoded byte is out is a plain 400 to the client.
      const maxAudioS = data.maxAudioS ?? DEFAULT_MAX_AUDIO_SECONDS;
      const maxAudioBytes = Math.floor(maxAudioS * pcmRate) * OUTPUT_BYTES_PER_SAMPLE;
      let audioBytes = 0;
      let tooLong: ChorusError | undefined;
      let onFirstRecord = () => {};
      const firstRecordOut = background || resuming ? undefined : new Promise<void>((resolve) => (onFirstRecord = resolve));
      if (!background) {
        writer.onFirstChunk?.(() => {
          onFirstRecord();
          priority.raise(NICENESS.streaming);
          if (!gate) return;
          // Still first in line while the record crosses the API to its client; stoppable like any stream after.
          leaveGate(FIRST_RECORD_GRACE_MS);
          const audioS = () => audioBytes / OUTPUT_BYTES_PER_SAMPLE / pcmRate;
          const atFirst = { s: audioS(), ms: performance.now() };
          leaveGate = gate.streaming(priority, () => audioS() - atFirst.s - (performance.now() - atFirst.ms) / 1000);
        });
      }
      // Stops the engine (its child process) on a client cancel and on the limit alike.
      const stop = new AbortController();
      const toEncoder = async (pcm: Buffer) => {
        audioBytes += pcm.length;
        if (audioBytes > maxAudioBytes) {
          tooLong ??= new ChorusError(
            'TTS_ERR_AUDIO_TOO_LONG',
            `The audio for this input would be longer than the limit of ${maxAudioS} seconds; ` +
              'shorten the input or raise the speed.',
          );
          halt();
          throw tooLong;
        }
        await encoder.write(pcm);
      };
      const tempo = needsTempo ? new TempoStage(residualTempo, toEncoder, { inRate: engineRate, outRate: pcmRate }) : undefined;
      tempo?.adopt(priority);
      const halt = () => {
        stop.abort();
        tempo?.destroy();
        encoder.destroy();
      };
      abort.addEventListener('abort', halt, { once: true });

      try {
        if (rateError) throw rateError;
        const resampler = resampleHere ? resamplerFor(engineRate) : undefined;
        const write = async (pcm: Buffer) => {
          if (pcm.length === 0) return;
          if (tempo) await tempo.write(pcm);
          else await toEncoder(pcm);
          // The engine's output is usually buffered already, so its iterator resolves on microtasks alone and
          // nothing else runs until the segment ends: one event-loop turn per piece lets the encoder's first bytes
          // (and Redis replies) through while the rest is resampled.
          await yieldToEventLoop();
        };
        // One engine call per job for engines that stream a whole text (espeak-ng): one process start, not one per
        // segment; its first audio comes as early as a short first segment's would (bench/input-length.ts).
        const segments = engine.wholeText ? (data.text.trim() ? [data.text] : []) : segmentText(data.text);
        for (const segment of segments) {
          stop.signal.throwIfAborted();
          // Resampled and encoded as the engine produces it: first audio does not wait for the whole first
          // segment (bench/input-length.ts). Same bytes as resampling the segment in one piece.
          const resampling = resampler?.stream();
          for await (const pcm of engine.synthesize(
            {
              ...options, speed: engineSpeed, text: segment, speaker: data.speaker,
              preset: data.preset?.values, priority, firstRecordOut,
            },
            stop.signal,
          )) {
            await write(resampling ? resampling.push(pcm) : pcm);
          }
          if (resampling) await write(resampling.flush());
        }
        if (tempo) {
          await tempo.finish();
        }
        await encoder.finish();
        await writer.drain();
        abort.throwIfAborted();
        if (tooLong) throw tooLong;
        const durationS = audioBytes / OUTPUT_BYTES_PER_SAMPLE / pcmRate;
        await writer.end({ durationS, chars: data.text.length });

        const elapsedS = (Date.now() - started) / 1000;
        deps.metrics.observeSynthesis(data, elapsedS, durationS, writer.firstChunkAt ? (writer.firstChunkAt - started) / 1000 : undefined);
        log.info({ bytes: writer.bytes, durationS, chunks: writer.chunks, elapsedS }, 'job completed');
        return { bytes: writer.bytes, durationS, chars: data.text.length, chunks: writer.chunks };
      } catch (err) {
        halt();
        const cancelled = abort.aborted;
        // What the client sees: a catalogue code and a message written for clients. Engine and ffmpeg messages
        // (exit codes, stderr) go to the log only.
        const failure = tooLong ?? err;
        if (!cancelled && isTransient(failure) && hasAttemptsLeft(job, deps.maxStartedAttempts)) {
          // Counted as `retried` when the next attempt starts; no error record, so the client keeps waiting.
          await writer.abandon();
          log.warn({ err: (failure as Error).message, attempt: job.attemptsMade + 1 }, 'transient failure; job will be retried');
          throw new Error(`transient: ${(failure as Error).message}`, { cause: failure });
        }
        const known = failure instanceof ChorusError ? failure : undefined;
        const code = cancelled ? ERRORS.TTS_ERR_CANCELLED.code : (known?.code ?? ERRORS.TTS_ERR_ENGINE_FAILED.code);
        const message = cancelled ? CANCELLED_MESSAGE : (known?.message ?? ENGINE_FAILED_MESSAGE);
        await writer.fail(code, message, cancelled ? undefined : (known?.param ?? undefined)).catch((failErr: unknown) => log.error({ err: failErr }, 'could not publish error record'));
        deps.metrics.jobs.inc({ status: cancelled ? 'cancelled' : 'failed', engine: data.engine });
        if (cancelled) log.info('job cancelled');
        else {
          const audioS = audioBytes / OUTPUT_BYTES_PER_SAMPLE / pcmRate;
          log.warn({ code, err: (failure as Error).message, audioS }, 'job failed');
        }
        throw new UnrecoverableError(message);
      } finally {
        abort.removeEventListener('abort', halt);
        deps.metrics.busy.dec();
      }
    }
  };
}
