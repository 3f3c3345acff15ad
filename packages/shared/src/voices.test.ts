import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { OPENAI_VOICES, VoiceCatalog } from './voices.ts';
import { defaultWorkerConcurrency, loadApiConfig, loadWorkerConfig } from './config.ts';

function writeVoices(content: unknown): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'voices-')), 'voices.json');
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

describe('VoiceCatalog', () => {
  it('the shipped defaults map all 13 OpenAI voices to distinct espeak speakers', () => {
    const c = VoiceCatalog.load();
    const voices = OPENAI_VOICES.map((v) => c.resolve(v)!.voice);
    expect(new Set(voices).size).toBe(13);
  });

  it("accepts the seed's mapping form: bare speaker names and file-style names", () => {
    const c = VoiceCatalog.load(writeVoices({
      default_speaker: 'speaker1.wav',
      speakers: { speaker1: { name: 'S1', engine: 'espeak', voice: 'en-us+f3' }, speaker2: { name: 'S2', engine: 'espeak' } },
      openai_voices: { alloy: 'speaker2.wav', echo: { speaker: 'speaker2' } },
    }));
    expect(c.resolve('alloy')!.id).toBe('speaker2');
    expect(c.resolve('echo')!.id).toBe('speaker2');
    expect(c.resolve('nova')!.id).toBe('speaker1'); // unmapped OpenAI name → default
    expect(c.resolve('speaker2.wav')!.id).toBe('speaker2');
    expect(c.resolve('nobody')).toBeUndefined();
  });

  it('a bad file fails with a message naming the key', () => {
    expect(() => VoiceCatalog.load(writeVoices({ default_speaker: 'x', speakers: {} }))).toThrow(/default_speaker/);
    expect(() =>
      VoiceCatalog.load(writeVoices({
        default_speaker: 's', speakers: { s: { name: 'S', engine: 'espeak', voice: 'en; rm -rf /' } },
      })),
    ).toThrow(/speakers\.s\.voice/);
    expect(() => VoiceCatalog.load(writeVoices('{not json'))).toThrow(/voices file/);
  });

  it('keeps reference audio inside VOICES_DIR', () => {
    const file = writeVoices({
      default_speaker: 's', speakers: { s: { name: 'S', engine: 'espeak', reference_audio: '../../etc/passwd' } },
    });
    expect(() => VoiceCatalog.load(file, path.dirname(file))).toThrow(/inside VOICES_DIR/);
  });
});

describe('config', () => {
  it('applies defaults and names bad variables', () => {
    expect(loadApiConfig({}).port).toBe(8000);
    expect(loadWorkerConfig({}).engines).toEqual(['espeak']);
    expect(() => loadApiConfig({ PORT: 'eighty' })).toThrow(/PORT/);
    expect(() => loadWorkerConfig({ WORKER_CONCURRENCY: '257' })).toThrow(/WORKER_CONCURRENCY/);
    // 0 is a batch-only worker; with no batch lane either it would serve nothing.
    expect(loadWorkerConfig({ WORKER_CONCURRENCY: '0' }).concurrency).toBe(0);
    expect(() => loadWorkerConfig({ WORKER_CONCURRENCY: '0', WORKER_BATCH_CONCURRENCY: '0' })).toThrow(/WORKER_CONCURRENCY/);
    // Unset: from the machine's cores; set: as given.
    expect(loadWorkerConfig({}).concurrency).toBe(defaultWorkerConcurrency());
    expect(loadWorkerConfig({ WORKER_CONCURRENCY: '' }).concurrency).toBe(defaultWorkerConcurrency());
    expect(loadWorkerConfig({ WORKER_CONCURRENCY: '3' }).concurrency).toBe(3);
    expect([1, 2, 4, 16, 64].map((cores) => defaultWorkerConcurrency(cores))).toEqual([4, 8, 16, 64, 64]);
    // Warm pools: half the realtime slots unless set (none for a batch-only worker, whose items start their own).
    expect(loadWorkerConfig({ WORKER_CONCURRENCY: '8' })).toMatchObject({ encoderPoolSize: 4, espeakPoolSize: 4 });
    expect(loadWorkerConfig({ WORKER_CONCURRENCY: '5' })).toMatchObject({ encoderPoolSize: 3, espeakPoolSize: 3 });
    expect(loadWorkerConfig({ WORKER_CONCURRENCY: '0' })).toMatchObject({ encoderPoolSize: 0, espeakPoolSize: 0 });
    expect(loadWorkerConfig({ WORKER_CONCURRENCY: '64' })).toMatchObject({ encoderPoolSize: 32, espeakPoolSize: 16 });
    expect(loadWorkerConfig({ WORKER_CONCURRENCY: '8', ENCODER_POOL_SIZE: '1', ESPEAK_POOL_SIZE: '0' }))
      .toMatchObject({ encoderPoolSize: 1, espeakPoolSize: 0 });
    expect(() => loadApiConfig({ REDIS_SENTINELS: 'nohostport' })).toThrow(/REDIS_SENTINELS/);
  });
});
