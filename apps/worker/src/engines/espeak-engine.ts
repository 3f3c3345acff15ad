import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { EngineError, type LoadedModel, type SynthesisInput, type TtsEngine } from './engine.ts';
import { parseWavHeader } from '../audio/wav.ts';
import { plainText } from './plain-text.ts';
// Aliased: `signal` is the AbortSignal parameter of the runs below.
import { signal as signalPid, type JobPriority } from '../processors/job-priority.ts';
import { EspeakPool, EspeakProcess } from './espeak-pool.ts';
import type { DeferRefill } from '../processors/first-audio-gate.ts';
import type { SpawnFn } from '../spawner/spawner.ts';

const execFileAsync = promisify(execFile);

const DEFAULT_RATE_WPM = 175;
const MIN_RATE_WPM = 80;
/** espeak-ng goes past 450 wpm with its sonic speed-up; 700 ≈ 4× the default rate. */
const MAX_RATE_WPM = 700;
const SAMPLE_RATE = 22_050;

export interface EspeakOptions {
  /** Warm processes kept per recently used argument set (ESPEAK_POOL_SIZE); 0 or absent: a fresh one per run. */
  poolSize?: number;
  /** Argument sets kept warm at most (default ESPEAK_POOL_KEYS). */
  poolKeys?: number;
  /** When to start the pool's replacements (default: the next event-loop turn). */
  deferRefill?: DeferRefill;
  /** How processes start (the worker's spawner helper; default child_process.spawn). */
  spawn?: SpawnFn;
}

/**
 * espeak-ng through its Debian CLI. User text goes to stdin, never argv; SSML (`-m`) stays off, and the text is
 * made plain text first ({@link plainText}: no phoneme input, no embedded commands). argv holds only validated
 * values: the voice name (a strict pattern from the voices file), and numbers. With a pool (`poolSize`), realtime
 * runs take a process started ahead of time for their exact argv (espeak-pool.ts).
 */
export class EspeakEngine implements TtsEngine {
  readonly id = 'espeak';
  readonly sampleRate = SAMPLE_RATE;
  readonly wholeText = true;
  readonly speedRange = [MIN_RATE_WPM / DEFAULT_RATE_WPM, MAX_RATE_WPM / DEFAULT_RATE_WPM] as const;
  readonly #binary: string;
  readonly #pool: EspeakPool;
  #languages = new Set<string>();

  constructor(binary = 'espeak-ng', opts: EspeakOptions = {}) {
    this.#binary = binary;
    // Size 0: no warm processes, every run starts its own (through `spawn` all the same).
    this.#pool = new EspeakPool(binary, opts.poolSize ?? 0, opts.poolKeys, opts.deferRefill, opts.spawn);
  }

  /** Where its processes come from (warm ones when `poolSize` > 0). */
  get pool(): EspeakPool {
    return this.#pool;
  }

  /** Kills the idle warm processes. */
  async close(): Promise<void> {
    this.#pool.close();
  }

  /** Always the CPU; its voices are the voices file's speakers, so none are listed as loaded. */
  loaded(): LoadedModel {
    return { engine: this.id, device: 'cpu', voices: [] };
  }

  async init(): Promise<void> {
    let stdout: string;
    try {
      ({ stdout } = await execFileAsync(this.#binary, ['--voices']));
    } catch (err) {
      throw new EngineError(`espeak-ng not usable (${(err as Error).message}); install the espeak-ng package`);
    }
    // Columns: Pty Language Age/Gender VoiceName File Other
    for (const line of stdout.split('\n').slice(1)) {
      const lang = line.trim().split(/\s+/)[1];
      if (lang) this.#languages.add(lang.toLowerCase());
    }
  }

  args(input: SynthesisInput): string[] {
    const base = input.speaker.voice ?? 'en-us';
    let [language, variant] = base.split('+') as [string, string | undefined];
    if (input.lang) {
      const wanted = input.lang.toLowerCase().replace('_', '-');
      if (this.#languages.has(wanted)) language = wanted;
      else if (this.#languages.has(wanted.split('-')[0]!)) language = wanted.split('-')[0]!;
    }
    if (input.preset?.variant) variant = input.preset.variant;
    const voice = variant ? `${language}+${variant}` : language;
    if (!/^[A-Za-z0-9_-]+(\+[A-Za-z0-9_-]+)?$/.test(voice)) throw new EngineError(`invalid espeak voice ${voice}`);
    const rate = Math.round(Math.min(MAX_RATE_WPM, Math.max(MIN_RATE_WPM, DEFAULT_RATE_WPM * input.speed)));
    const args = ['--stdout', '-b', '1', '-v', voice, '-s', String(rate)];
    const pitch = input.preset?.pitch ?? input.speaker.pitch;
    if (pitch !== undefined) args.push('-p', String(Math.round(pitch)));
    return args;
  }

  synthesize(input: SynthesisInput, signal: AbortSignal): AsyncIterable<Buffer> {
    return runEspeak(this.#binary, this.args(input), plainText(input.text), signal, input.priority, this.#pool, input.firstRecordOut);
  }
}

/** Text espeak-ng must make a sound for: it has a letter or a digit. */
const SPEAKABLE = /[\p{L}\p{N}]/u;

/**
 * espeak-ng is stopped once it has given `afterSamples` (0.5 s) until the job's first record is out, for at most
 * `maxMs` (an encoder that needs more before its first bytes waits no longer than that, once). Tests lengthen maxMs
 * to see the stop.
 */
export const ESPEAK_FIRST_RECORD_HOLD = { afterSamples: SAMPLE_RATE / 2, maxMs: 20 };

/**
 * Stops espeak-ng (SIGSTOP) until `firstRecordOut` settles or ESPEAK_FIRST_RECORD_HOLD.maxMs pass. It makes a long text's audio ~100×
 * faster than real time and would keep a core busy beside the encoder, the worker and Redis while they publish the
 * first record: mp3 first byte for 4,000 characters was 1.2–1.6× that for 40 when the first byte is ~10 ms
 * (bench/input-length.ts). Its pipe holds what it made; a process killed meanwhile dies stopped or not.
 */
function holdUntilFirstRecord(pid: number, firstRecordOut: Promise<unknown>): void {
  signalPid(pid, 'SIGSTOP');
  const cont = () => {
    clearTimeout(timer);
    signalPid(pid, 'SIGCONT');
  };
  const timer = setTimeout(cont, ESPEAK_FIRST_RECORD_HOLD.maxMs);
  void firstRecordOut.then(cont, cont);
}

/**
 * One espeak-ng run: `text` (already plain text) on stdin, 16-bit PCM samples out as they come. A run that
 * ends by a signal (espeak-ng segfaults on some inputs; a transient EngineError), exits non-zero, or yields no
 * samples for text with letters or digits (espeak-ng then exits 0 with a bare WAV header) throws: audio is never
 * silently lost. With `pool` (started with the same binary), the process may be a warm one (see EspeakPool.acquire);
 * either way it is killed when `signal` aborts, and the run then throws the abort reason.
 * Error messages hold espeak-ng's stderr: for logs, not for clients.
 */
export async function* runEspeak(
  binary: string,
  args: string[],
  text: string,
  signal: AbortSignal,
  priority?: JobPriority,
  pool?: EspeakPool,
  firstRecordOut?: Promise<unknown>,
): AsyncGenerator<Buffer> {
  signal.throwIfAborted();
  const proc = pool ? pool.acquire(args, priority) : new EspeakProcess(binary, args);
  const child = proc.child;
  const kill = () => proc.kill();
  signal.addEventListener('abort', kill, { once: true });
  if (priority) {
    proc.whenStarted((pid) => {
      const release = priority.adopt(pid);
      void proc.exited.then(release);
    });
  }

  try {
    child.stdin.end(`${text}\n`, 'utf8');
    let header: Buffer | undefined = Buffer.alloc(0);
    let odd: Buffer | undefined;
    let samples = 0;
    for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
      let data = chunk;
      if (header) {
        header = Buffer.concat([header, data]);
        const fmt = parseWavHeader(header);
        if (!fmt) continue;
        if (fmt.sampleRate !== SAMPLE_RATE || fmt.bitsPerSample !== 16 || fmt.channels !== 1) {
          throw new EngineError(`unexpected espeak-ng output format ${JSON.stringify(fmt)}`);
        }
        data = header.subarray(fmt.dataOffset);
        header = undefined;
      }
      if (odd) {
        data = Buffer.concat([odd, data]);
        odd = undefined;
      }
      if (data.length & 1) {
        odd = data.subarray(data.length - 1);
        data = data.subarray(0, data.length - 1);
      }
      samples += data.length / 2;
      if (data.length > 0) yield data;
      if (firstRecordOut && samples >= ESPEAK_FIRST_RECORD_HOLD.afterSamples && proc.pid !== undefined) {
        holdUntilFirstRecord(proc.pid, firstRecordOut);
        firstRecordOut = undefined;
      }
    }
    signal.throwIfAborted(); // killed by the abort listener: its output ended early
    const { code, signal: killedBy } = await proc.closed;
    const stderr = proc.stderr.trim();
    // A crash is worth a retry (the stream resumes where it stopped); a refusal (exit code) is not.
    if (killedBy) throw new EngineError(`espeak-ng killed by ${killedBy}: ${stderr}`, { transient: true });
    if (code !== 0) throw new EngineError(`espeak-ng exited with ${code}: ${stderr}`);
    if (samples === 0 && SPEAKABLE.test(text)) {
      throw new EngineError(`espeak-ng exited 0 without audio for ${text.length} characters: ${stderr}`);
    }
  } finally {
    signal.removeEventListener('abort', kill);
    proc.kill();
  }
}
