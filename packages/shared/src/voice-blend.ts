/**
 * Kokoro voice blends as Kokoro-FastAPI users write them: `af_bella+af_sky` (equal parts) or weighted
 * `af_bella(2)+af_sky(1)`. Weights are normalised to sum to 1. The API validates requests with this parser (400
 * naming the bad part); the Kokoro engine mixes the named voices' style vectors with the weights.
 */

export interface VoiceBlendPart {
  voice: string;
  /** Normalised: the parts' weights sum to 1. */
  weight: number;
}

export class VoiceBlendError extends Error {
  override readonly name = 'VoiceBlendError';
  /** The part of the blend that is wrong (a voice name where it is an unknown voice). */
  readonly part: string;
  constructor(message: string, part: string) {
    super(message);
    this.part = part;
  }
}

const PART = /^([A-Za-z0-9_-]{1,40})(?:\((\d{1,4}(?:\.\d{1,4})?)\))?$/;
const MAX_PARTS = 8;

/**
 * Parses `a`, `a+b`, `a(2)+b(1)`; `known`, when given, is the set of voice names that exist (an unknown one is an
 * error naming it). A voice named twice has its weights added.
 */
export function parseVoiceBlend(spec: string, known?: ReadonlySet<string> | ((voice: string) => boolean)): VoiceBlendPart[] {
  const parts = spec.split('+');
  if (parts.length > MAX_PARTS) throw new VoiceBlendError(`a voice blend has at most ${MAX_PARTS} voices`, spec);
  const weights = new Map<string, number>();
  for (const raw of parts) {
    const part = raw.trim();
    const m = PART.exec(part);
    if (!m) throw new VoiceBlendError(`invalid voice "${part}" in blend "${spec}": expected name or name(weight)`, part);
    const voice = m[1]!;
    const weight = m[2] === undefined ? 1 : Number(m[2]);
    if (!(weight > 0)) throw new VoiceBlendError(`voice "${voice}" in blend "${spec}" needs a weight above 0`, voice);
    const exists = known === undefined ? true : typeof known === 'function' ? known(voice) : known.has(voice);
    if (!exists) throw new VoiceBlendError(`unknown voice "${voice}"`, voice);
    weights.set(voice, (weights.get(voice) ?? 0) + weight);
  }
  const total = [...weights.values()].reduce((a, b) => a + b, 0);
  return [...weights].map(([voice, w]) => ({ voice, weight: w / total }));
}

/** True when `spec` is syntactically a blend or a single voice name (no lookup). */
export function isVoiceBlend(spec: string): boolean {
  try {
    parseVoiceBlend(spec);
    return true;
  } catch {
    return false;
  }
}
