import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { isVoiceBlend } from './voice-blend.ts';
import { SeedField, SpeedField, TemperatureField } from './schemas/synthesis.ts';

/** OpenAI's voice names; every one resolves, to its mapped speaker or else to the default speaker. */
export const OPENAI_VOICES = [
  'alloy', 'ash', 'ballad', 'coral', 'echo', 'fable', 'onyx',
  'nova', 'sage', 'shimmer', 'verse', 'marin', 'cedar',
] as const;

export const DEFAULT_VOICES_FILE = fileURLToPath(new URL('../data/voices.json', import.meta.url));

const SpeakerId = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - only');

/**
 * Engine-native voice name: espeak `en-us+f3`, Piper `<voice>` or `<voice>/<speaker>`, a Kokoro voice or blend
 * (`af_bella(2)+af_sky(1)`, voice-blend.ts). Only the espeak engine puts it in argv, and it checks its own stricter shape.
 */
const EngineVoice = z
  .string()
  .max(200)
  .refine(
    (v) => /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(\/[A-Za-z0-9][A-Za-z0-9_.-]{0,63})?$/.test(v) || isVoiceBlend(v),
    'invalid engine voice name',
  );

export const Preset = z
  .object({
    temperature: TemperatureField.optional(),
    speed: SpeedField.optional(),
    /** 0..99, espeak-ng's -p scale (50 = normal). */
    pitch: z.number().int().min(0).max(99).optional(),
    /** espeak-ng variant name (e.g. `f3`, `whisper`). */
    variant: z.string().regex(/^[A-Za-z0-9_-]{1,40}$/).optional(),
    // The same range as a request's seed: preset values go into the job payload, which checks them.
    seed: SeedField.optional(),
  })
  .strict();
export type Preset = z.infer<typeof Preset>;

const SpeakerEntry = z
  .object({
    name: z.string().min(1),
    engine: z.string().regex(/^[a-z0-9-]+$/),
    voice: EngineVoice.optional(),
    language: z.string().min(2).default('en-US'),
    gender: z.enum(['female', 'male', 'neutral']).optional(),
    /** Reference audio for cloning engines; a path inside VOICES_DIR. */
    reference_audio: z.string().min(1).optional(),
    pitch: z.number().int().min(0).max(99).optional(),
  })
  .strict();

const EngineId = z.string().regex(/^[a-z0-9-]+$/);

/**
 * `openai_voices` accepts `{ "speaker": "id", "engines": { "kokoro": "af_alloy", ... } }` and the seed's bare form
 * `"id"` or `"id.wav"`. `speaker` is the configured speaker (its own engine); `engines` names the voice each other
 * engine uses for this name.
 */
const VoiceMapping = z.union([
  SpeakerId,
  z.object({ speaker: SpeakerId.optional(), engines: z.record(EngineId, EngineVoice).default({}) }).strict(),
]);

export const VoicesFile = z
  .object({
    default_speaker: SpeakerId,
    speakers: z.record(SpeakerId, SpeakerEntry),
    openai_voices: z.record(z.string(), VoiceMapping).default({}),
    /** Each engine's voice for OpenAI names it has no mapping for (else the first voice its workers loaded). */
    engine_defaults: z.record(EngineId, EngineVoice).default({}),
    presets: z.record(z.string().regex(/^[A-Za-z0-9_-]{1,64}$/), Preset).default({}),
  })
  .superRefine((file, ctx) => {
    const ids = new Set(Object.keys(file.speakers));
    if (!ids.has(stripFileSuffix(file.default_speaker))) {
      ctx.addIssue({ code: 'custom', path: ['default_speaker'], message: `no speaker "${file.default_speaker}"` });
    }
    for (const [name, mapping] of Object.entries(file.openai_voices)) {
      const speaker = typeof mapping === 'string' ? mapping : mapping.speaker;
      if (speaker === undefined) continue;
      const id = stripFileSuffix(speaker);
      if (!ids.has(id)) ctx.addIssue({ code: 'custom', path: ['openai_voices', name], message: `no speaker "${id}"` });
    }
  });
export type VoicesFile = z.infer<typeof VoicesFile>;

/** A speaker as jobs carry it: everything a worker needs, no lookups. */
export const Speaker = z.object({
  /** A configured speaker id, or `<engine>:<voice>` for an engine-native voice. */
  id: z.string().min(1).max(300),
  name: z.string(),
  engine: z.string(),
  voice: EngineVoice.optional(),
  language: z.string(),
  gender: z.enum(['female', 'male', 'neutral']).optional(),
  referenceAudio: z.string().optional(),
  pitch: z.number().int().min(0).max(99).optional(),
});
export type Speaker = z.infer<typeof Speaker>;

function stripFileSuffix(id: string): string {
  return id.replace(/\.(wav|mp3|flac|ogg)$/i, '');
}

export class VoiceCatalog {
  readonly defaultSpeaker: string;
  readonly #speakers: Map<string, Speaker>;
  /** OpenAI name → its configured speaker id (names without one use the default speaker). */
  readonly #openai: Map<string, string>;
  /** OpenAI name → engine → that engine's voice. */
  readonly #openaiEngines: Map<string, Map<string, string>>;
  readonly #engineDefaults: Map<string, string>;
  /** No prototype: a client's `preset` is looked up here, and `constructor` or `__proto__` must not resolve. */
  readonly presets: Readonly<Record<string, Preset>>;

  constructor(file: VoicesFile, voicesDir?: string) {
    this.defaultSpeaker = stripFileSuffix(file.default_speaker);
    this.#speakers = new Map();
    for (const [id, s] of Object.entries(file.speakers)) {
      let referenceAudio: string | undefined;
      if (s.reference_audio) {
        if (!voicesDir) throw new Error(`voices: speakers.${id}.reference_audio needs VOICES_DIR`);
        const root = path.resolve(voicesDir);
        referenceAudio = path.resolve(root, s.reference_audio);
        if (!referenceAudio.startsWith(root + path.sep)) {
          throw new Error(`voices: speakers.${id}.reference_audio must stay inside VOICES_DIR`);
        }
      }
      this.#speakers.set(id, {
        id, name: s.name, engine: s.engine, voice: s.voice, language: s.language, gender: s.gender,
        referenceAudio, pitch: s.pitch,
      });
    }
    this.#openai = new Map();
    this.#openaiEngines = new Map();
    for (const [name, m] of Object.entries(file.openai_voices)) {
      const speaker = typeof m === 'string' ? m : m.speaker;
      this.#openai.set(name, stripFileSuffix(speaker ?? file.default_speaker));
      if (typeof m !== 'string') this.#openaiEngines.set(name, new Map(Object.entries(m.engines)));
    }
    this.#engineDefaults = new Map(Object.entries(file.engine_defaults));
    const presets: Record<string, Preset> = Object.create(null);
    for (const [name, values] of Object.entries(file.presets)) presets[name] = values;
    this.presets = presets;
  }

  static load(file?: string, voicesDir?: string): VoiceCatalog {
    const source = file ?? DEFAULT_VOICES_FILE;
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(source, 'utf8'));
    } catch (err) {
      throw new Error(`voices file ${source}: ${(err as Error).message}`);
    }
    const parsed = VoicesFile.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new Error(`voices file ${source}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
    }
    return new VoiceCatalog(parsed.data, voicesDir);
  }

  /** An OpenAI voice name, a speaker id or a file-style speaker name; undefined when none of these. */
  resolve(voice: string): Speaker | undefined {
    if (this.isOpenAiName(voice)) return this.#speakers.get(this.#openai.get(voice) ?? this.defaultSpeaker);
    return this.speaker(voice);
  }

  /** One of OpenAI's 13 names, or another name the file maps like one. */
  isOpenAiName(voice: string): boolean {
    return (OPENAI_VOICES as readonly string[]).includes(voice) || this.#openai.has(voice);
  }

  /** A configured speaker by id or file-style name. */
  speaker(id: string): Speaker | undefined {
    return this.#speakers.get(stripFileSuffix(id));
  }

  /** The voice `engine` uses for an OpenAI name when the file maps one. */
  engineVoiceFor(openaiName: string, engine: string): string | undefined {
    return this.#openaiEngines.get(openaiName)?.get(engine);
  }

  /** `engine_defaults[engine]`. */
  engineDefault(engine: string): string | undefined {
    return this.#engineDefaults.get(engine);
  }

  speakers(): Speaker[] {
    return [...this.#speakers.values()];
  }

  /** OpenAI names that resolve to this speaker (explicitly mapped, or unmapped ones for the default). */
  openaiVoicesFor(speakerId: string): string[] {
    const names = new Set<string>([...OPENAI_VOICES, ...this.#openai.keys()]);
    return [...names].filter((n) => (this.#openai.get(n) ?? this.defaultSpeaker) === speakerId);
  }

  /** Names accepted as `voice`, for error messages. */
  validVoiceNames(): string[] {
    return [...new Set([...OPENAI_VOICES, ...this.#openai.keys(), ...this.#speakers.keys()])];
  }
}
