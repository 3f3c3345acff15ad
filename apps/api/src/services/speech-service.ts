import type { RedisClient } from '@chorus/shared';
import type { Queue } from 'bullmq';
import {
  ChorusError, JOB_CATALOG, JOB_NAMES, newJobId, PRIORITY, speechQueueName, type Lane, type ModelTable, type RedisKeys,
  type Speaker, type StreamJob, type SynthesisOptions, type TtsJob, type TtsJobInput, type VoiceCatalog,
} from '@chorus/shared';
import type { StreamHub } from '../relay/stream-hub.ts';
import type { JobStream } from '../relay/job-stream.ts';
import { watchJob } from '../relay/job-watchdog.ts';
import type { WorkerDirectory } from './worker-directory.ts';
import { routeRequest, type Route } from './voice-router.ts';
import { QueueAdmission, type AdmissionOutcome } from './queue-admission.ts';
import { ProducerQueues } from './producer-queues.ts';
import type { ReplicaAck } from './replica-ack.ts';

/** What every route hands over after validating its own body shape. */
export interface SynthesisParams {
  model: string;
  text: string;
  voice: string;
  format: TtsJob['format'];
  /** Under internal names; each dialect maps its wire names once (speechSynthesisOptions, legacySynthesisOptions). */
  options: SynthesisOptions;
  /** Preset name; its values fill in options the request left at their defaults. */
  preset?: string;
  route: string;
  requestId: string;
  priority?: 'realtime' | 'batch';
  /** ClientIdentity.owner of the request (undefined while keys are off). */
  owner?: string;
}

export interface StartedJob {
  jobId: string;
  job: StreamJob;
  stream: JobStream;
  speaker: Speaker;
}

/**
 * The one path from a validated request to a running job: resolve model and voice, refuse what cannot run,
 * subscribe to the job's stream, enqueue. Every route (OpenAI raw/SSE, legacy, batch) goes through here.
 */
export class SpeechService {
  readonly #redis: RedisClient;
  readonly #keys: RedisKeys;
  readonly #relayId: string;
  readonly #hub: StreamHub;
  readonly #directory: WorkerDirectory;
  readonly #models: ModelTable;
  readonly #voices: VoiceCatalog;
  readonly #queues: ProducerQueues;
  readonly #admission: QueueAdmission;
  readonly #replicaAck: ReplicaAck | undefined;
  readonly #maxAudioS: number;

  constructor(opts: {
    redis: RedisClient; keys: RedisKeys; relayId: string; hub: StreamHub; directory: WorkerDirectory;
    models: ModelTable; voices: VoiceCatalog;
    /** MAX_QUEUE_DEPTH: realtime jobs waiting per queue above which requests get 429 `queue_full`. */
    maxQueueDepth: number;
    /** MAX_QUEUE_WAIT_MS: predicted waits above it get 429 `queue_full` (queue-admission.ts)... */
    maxQueueWaitMs: number;
    /** ...as do waits above 80% of QUEUE_TIMEOUT_S. */
    queueTimeoutS: number;
    /** Under Sentinel: wait for a replica to have each job before going on (no job lost in a failover). */
    replicaAck?: ReplicaAck;
    /** MAX_AUDIO_SECONDS: passed in each job; the worker enforces it on the audio it produces. */
    maxAudioSeconds: number;
    /** How each realtime request's admission ended (a metric). */
    onAdmission?: (outcome: AdmissionOutcome) => void;
  }) {
    this.#redis = opts.redis;
    this.#keys = opts.keys;
    this.#queues = new ProducerQueues(opts.redis, opts.keys);
    this.#relayId = opts.relayId;
    this.#hub = opts.hub;
    this.#directory = opts.directory;
    this.#models = opts.models;
    this.#voices = opts.voices;
    this.#admission = new QueueAdmission({
      redis: opts.redis, keys: opts.keys, maxDepth: opts.maxQueueDepth, maxWaitMs: opts.maxQueueWaitMs, queueTimeoutS: opts.queueTimeoutS,
      slots: (engine) => this.#directory.realtimeSlots(engine), onOutcome: opts.onAdmission,
    });
    this.#replicaAck = opts.replicaAck;
    this.#maxAudioS = opts.maxAudioSeconds;
  }

  queue(engine: string, lane: Lane = 'realtime'): Queue {
    return this.#queues.get(speechQueueName(engine, lane));
  }

  /**
   * The engine and speaker for a request (voice-router.ts), or the 404 / 400 / 503 a client should get. An unknown
   * model is a 404 even while Redis is down; everything else needs the live workers' view.
   */
  async route(model: string, voice: string, param = 'voice', lane: Lane = 'realtime'): Promise<Route> {
    if (!this.#models.enginesFor(model)) {
      throw new ChorusError('TTS_ERR_MODEL_NOT_FOUND', `The model '${model}' does not exist.`, { param: 'model' });
    }
    this.assertBackendUp();
    const live = await this.#directory.liveEngines(lane);
    return routeRequest(model, voice, { models: this.#models, voices: this.#voices, live, param });
  }

  resolveVoice(voice: string, param = 'voice'): Speaker {
    const speaker = this.#voices.resolve(voice);
    if (!speaker) {
      throw new ChorusError(
        'TTS_ERR_VOICE_UNKNOWN',
        `Invalid voice '${voice}'. Valid voices: ${this.#voices.validVoiceNames().join(', ')}.`,
        { param },
      );
    }
    return speaker;
  }

  resolvePreset(name: string | undefined, param = 'preset') {
    if (name === undefined) return undefined;
    // Own keys only: the name comes from the client (`constructor`, `__proto__` are properties of every object).
    const values = Object.hasOwn(this.#voices.presets, name) ? this.#voices.presets[name] : undefined;
    if (!values) {
      throw new ChorusError(
        'TTS_ERR_VALIDATION',
        `Unknown preset '${name}'. Valid presets: ${Object.keys(this.#voices.presets).join(', ')}.`,
        { param },
      );
    }
    return { name, values };
  }

  /**
   * The job payload for a request, with model, voice and preset resolved (404/400/503 as ChorusError). No stream
   * yet: `start` adds one, a batch item a storage sink instead.
   */
  async buildJob(p: SynthesisParams): Promise<{ job: TtsJob; speaker: Speaker }> {
    const preset = this.resolvePreset(p.preset);
    const { engine, speaker } = await this.route(p.model, p.voice, 'voice', p.priority ?? 'realtime');
    const o = p.options;
    const job: TtsJob = {
      v: 1, requestId: p.requestId, engine, model: p.model, text: p.text, speaker, format: p.format,
      ...o,
      speed: preset?.values.speed !== undefined && o.speed === 1 ? preset.values.speed : o.speed,
      seed: o.seed ?? preset?.values.seed,
      temperature: o.temperature ?? preset?.values.temperature, preset, route: p.route,
      priority: p.priority ?? 'realtime', enqueuedAt: Date.now(), owner: p.owner, maxAudioS: this.#maxAudioS,
    } satisfies TtsJobInput;
    return { job, speaker };
  }

  /**
   * Validates what needs the catalogue, admits, subscribes, then enqueues (subscribe first: no chunk can be
   * missed). A refused request never touches the relay: under overload most are refused.
   */
  async start(p: SynthesisParams): Promise<StartedJob> {
    const built = await this.buildJob(p);
    const { engine } = built.job;
    const speaker = built.speaker;
    const jobId = newJobId();
    const streamKey = this.#keys.audioStream(this.#relayId, jobId);
    const job: StreamJob = { ...built.job, streamKey };
    const queue = this.queue(engine, job.priority);
    let subscribed: JobStream | undefined;
    const enqueue = () => {
      subscribed = this.#hub.subscribe(streamKey);
      return queue.add(JOB_NAMES.synthesize, job, {
        ...JOB_CATALOG[JOB_NAMES.synthesize].options,
        jobId,
        priority: PRIORITY[job.priority],
      });
    };
    try {
      if (job.priority === 'realtime') await this.#admission.admit(queue, engine, p.model, enqueue);
      else await enqueue();
      await this.#replicaAck?.confirm();
    } catch (err) {
      subscribed?.close();
      throw err;
    }
    const stream = subscribed!;
    // Its terminal record frees its slot: admission hands that slot to a request waiting for one.
    if (job.priority === 'realtime') stream.onEnded(() => this.#admission.noteFreed(queue.name, jobId));
    watchJob(stream, queue, jobId);
    return { jobId, job, stream, speaker };
  }

  /** A realtime job's first record arrived: one start for admission's rate (see QueueAdmission). */
  noteStarted(job: StreamJob): void {
    if (job.priority === 'realtime') this.#admission.noteStarted(speechQueueName(job.engine, 'realtime'));
  }

  /**
   * Refuses at once while the producer connection is down. Without this a BullMQ Queue created during an
   * outage would wait for Redis in its own init (no timeout), and the request would hang instead of a 503.
   */
  assertBackendUp(): void {
    if (this.#redis.status !== 'ready') {
      throw new ChorusError('TTS_ERR_BACKEND_UNAVAILABLE', 'The service backend is unavailable; retry shortly.', {
        retryAfterS: 1,
      });
    }
  }

  /**
   * The client went away: remove the job if it is still waiting, otherwise flag it and tell the worker holding
   * it to abort (engine and encoder processes are killed).
   */
  async cancel(engine: string, jobId: string, lane: Lane = 'realtime'): Promise<void> {
    await this.#redis
      .multi()
      .set(this.#keys.cancelFlag(jobId), '1', 'EX', 3600)
      .publish(this.#keys.cancelChannel(), jobId)
      .exec();
    try {
      await this.queue(engine, lane).remove(jobId);
    } catch {
      // active jobs cannot be removed; the worker aborts them on the cancel message
    }
  }

  async close(): Promise<void> {
    await this.#queues.close();
  }
}
