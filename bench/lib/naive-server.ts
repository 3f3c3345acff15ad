/**
 * The naive pipeline the issue compares Chorus with, as an HTTP server in its own process (as the Chorus API
 * is): for each POST /v1/audio/speech it spawns espeak-ng (WAV on stdout) piped into a freshly spawned ffmpeg
 * that resamples to 24 kHz and encodes, and streams ffmpeg's stdout to the client. One process pair per
 * request, no queue, no pool. Same espeak-ng voice arguments as the worker uses for the requested voice, and
 * the same ffmpeg output arguments as the worker's encoder.
 *
 *   node --import tsx bench/lib/naive-server.ts   # prints `listening <port>` on stdout
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import { VoiceCatalog, type AudioFormat } from '@chorus/shared';
import { EspeakEngine } from '../../apps/worker/src/engines/espeak-engine.ts';
import { plainText } from '../../apps/worker/src/engines/plain-text.ts';
import { encoderOutputArgs, type FfmpegFormat } from '../../apps/worker/src/encoders/ffmpeg-args.ts';

const CONTENT_TYPES: Partial<Record<AudioFormat, string>> = { mp3: 'audio/mpeg', opus: 'audio/ogg', aac: 'audio/aac', flac: 'audio/flac' };

const voices = VoiceCatalog.load();
const engine = new EspeakEngine();
await engine.init();

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/v1/audio/speech') {
    res.writeHead(404).end();
    return;
  }
  const parts: Buffer[] = [];
  req.on('data', (d: Buffer) => parts.push(d));
  req.on('end', () => {
    let body: { input?: unknown; voice?: unknown; response_format?: unknown };
    try {
      body = JSON.parse(Buffer.concat(parts).toString('utf8')) as typeof body;
    } catch {
      res.writeHead(400).end();
      return;
    }
    const format = (typeof body.response_format === 'string' ? body.response_format : 'mp3') as FfmpegFormat;
    const speaker = voices.resolve(typeof body.voice === 'string' ? body.voice : 'alloy');
    if (typeof body.input !== 'string' || !speaker || !CONTENT_TYPES[format]) {
      res.writeHead(400).end();
      return;
    }
    const espeak = spawn('espeak-ng', engine.args({ text: body.input, speaker, speed: 1 }), { stdio: ['pipe', 'pipe', 'ignore'] });
    const ffmpeg = spawn('ffmpeg', [
      '-nostdin', '-hide_banner', '-loglevel', 'error', '-probesize', '32', '-analyzeduration', '0',
      '-f', 'wav', '-i', 'pipe:0', ...encoderOutputArgs(format), 'pipe:1',
    ], { stdio: ['pipe', 'pipe', 'ignore'] });
    espeak.stdout.pipe(ffmpeg.stdin);
    ffmpeg.stdin.on('error', () => {});
    espeak.stdin.on('error', () => {});
    res.writeHead(200, { 'content-type': CONTENT_TYPES[format]! });
    ffmpeg.stdout.pipe(res);
    const kill = () => {
      espeak.kill('SIGKILL');
      ffmpeg.kill('SIGKILL');
    };
    res.on('close', () => {
      if (!res.writableFinished) kill();
    });
    espeak.once('error', kill);
    ffmpeg.once('error', () => res.destroy());
    ffmpeg.once('close', (code) => {
      if (code !== 0) res.destroy();
    });
    espeak.stdin.end(`${plainText(body.input)}\n`);
  });
});
server.keepAliveTimeout = 72_000;
server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  console.log(`listening ${typeof addr === 'object' && addr ? addr.port : 0}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
