/**
 * Kokoro voice blends as users know them from Kokoro-FastAPI: `af_bella+af_sky` (equal parts) or weighted
 * `af_bella(2)+af_sky(1)`. Weights are normalised to sum to 1. Both the API (to answer 400 naming a bad voice)
 * and the worker (to mix style vectors) parse with this.
 */
export interface BlendPart {
  name: string;
  weight: number;
}

const PART = /^([A-Za-z0-9_.-]{1,80})(?:\((\d+(?:\.\d+)?)\))?$/;

export class VoiceBlendError extends Error {
  override readonly name = 'VoiceBlendError';
}

export function parseVoiceBlend(spec: string): BlendPart[] {
  const parts = spec.split('+').map((p) => p.trim());
  if (parts.length > 8) throw new VoiceBlendError(`at most 8 voices can be blended, got ${parts.length}`);
  const parsed = parts.map((p) => {
    const m = PART.exec(p);
    if (!m) throw new VoiceBlendError(`'${p}' is not a voice name or name(weight)`);
    const weight = m[2] === undefined ? 1 : Number(m[2]);
    if (!(weight > 0) || !Number.isFinite(weight)) throw new VoiceBlendError(`'${p}' needs a weight above 0`);
    return { name: m[1]!, weight };
  });
  const names = new Set(parsed.map((p) => p.name));
  if (names.size !== parsed.length) throw new VoiceBlendError(`'${spec}' names a voice twice`);
  const total = parsed.reduce((s, p) => s + p.weight, 0);
  return parsed.map((p) => ({ name: p.name, weight: p.weight / total }));
}
