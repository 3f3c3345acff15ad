import { describe, expect, it } from 'vitest';
import { filesToPull, parseModelName } from './catalog.ts';

describe('model names', () => {
  it('maps a Piper voice to its piper-voices path and the MODELS_DIR layout', () => {
    expect(filesToPull(parseModelName('piper:en_GB-southern_english_female-low'))).toEqual([
      {
        repo: 'rhasspy/piper-voices',
        path: 'en/en_GB/southern_english_female/low/en_GB-southern_english_female-low.onnx',
        dest: 'piper/en_GB-southern_english_female-low.onnx',
      },
      {
        repo: 'rhasspy/piper-voices',
        path: 'en/en_GB/southern_english_female/low/en_GB-southern_english_female-low.onnx.json',
        dest: 'piper/en_GB-southern_english_female-low.onnx.json',
      },
    ]);
    expect(filesToPull(parseModelName('piper:zh_CN-huayan-x_low'))[0]!.path).toBe('zh/zh_CN/huayan/x_low/zh_CN-huayan-x_low.onnx');
  });

  it('pulls the Kokoro model, both vocab files and the default voices', () => {
    const dests = filesToPull(parseModelName('kokoro')).map((f) => f.dest);
    expect(dests.slice(0, 3)).toEqual(['kokoro/onnx/model.onnx', 'kokoro/config.json', 'kokoro/tokenizer.json']);
    for (const v of ['af_alloy', 'af_nova', 'am_echo', 'am_onyx', 'af_bella', 'af_sky', 'bf_emma', 'bm_george']) {
      expect(dests).toContain(`kokoro/voices/${v}.bin`);
    }
  });

  it('refuses names that are no file name (path traversal) or not a known model', () => {
    for (const bad of ['kokoro:../../etc/passwd', 'kokoro:a/b', 'kokoro:.hidden', 'kokoro:', 'piper:../x-y-low', 'piper:en_US-lessac', 'piper:', 'whisper']) {
      expect(() => parseModelName(bad), bad).toThrow(/invalid|unknown/);
    }
  });
});
