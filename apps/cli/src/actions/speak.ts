import { createWriteStream, rmSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { extname } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { apiErrorLine, createApiClient } from '../api-client.ts';
import { FORMATS, type Format, type SpeakOpts } from '../commands/speak.ts';
import { CliError } from '../errors.ts';

/*
 * `chorus speak` (its flags: commands/speak.ts): one POST /v1/audio/speech through the OpenAI SDK, its audio streamed
 * to a file or to stdout.
 */

/** `-f` wins; else the output file's extension when it names a format; else mp3 (also for `-o -`). */
export function formatFor(output: string, flag?: Format): Format {
  if (flag) return flag;
  const ext = extname(output).slice(1).toLowerCase();
  return (FORMATS as readonly string[]).includes(ext) ? (ext as Format) : 'mp3';
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function speak(textArg: string | undefined, opts: SpeakOpts) {
  const toStdout = opts.output === '-';
  if (toStdout && process.stdout.isTTY) throw new CliError('refusing to write audio to a terminal: redirect stdout or use -o FILE');
  let input = textArg;
  if (input === undefined || input === '-') {
    if (input === undefined && process.stdin.isTTY) throw new CliError('no text: give it as an argument, or pipe it on stdin');
    // `echo hi |` ends with a newline that is not part of the text.
    input = (await readStdin()).replace(/\r?\n$/, '');
  }
  const format = formatFor(opts.output, opts.format);
  const { client, baseUrl } = createApiClient(opts);
  const t0 = performance.now();
  // The file is created only once the API has accepted the request: a refusal leaves nothing behind.
  const res = await client.audio.speech
    .create({
      input,
      voice: opts.voice,
      model: opts.model,
      response_format: format,
      ...(opts.speed !== undefined ? { speed: opts.speed } : {}),
      ...(opts.instructions !== undefined ? { instructions: opts.instructions } : {}),
    })
    .catch((err: unknown) => {
      const line = apiErrorLine(err, baseUrl);
      throw line === undefined ? err : new CliError(line);
    });
  if (opts.verbose) {
    const h = (n: string) => res.headers.get(n) ?? '-';
    process.stderr.write(`chorus: engine ${h('x-chorus-engine')}, job ${h('x-job-id')}, request ${h('x-request-id')}, ${format}\n`);
    const ignored = res.headers.get('x-chorus-ignored-params');
    if (ignored) process.stderr.write(`chorus: ignored by this engine: ${ignored}\n`);
  }
  if (!res.body) throw new CliError(`the API answered ${res.status} with no audio`);
  const body = Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
  let bytes = 0;
  body.on('data', (c: Buffer) => (bytes += c.length));

  try {
    if (toStdout) await pipeline(body, process.stdout); // pipeline() leaves stdio streams open
    else await toFile(body, opts.output);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EPIPE') return; // `| head -c …` stopped reading: not our failure
    if (e.syscall) throw new CliError(`cannot write ${toStdout ? 'stdout' : opts.output}: ${e.message}`);
    // undici reports a connection closed before the last chunk as "terminated": say what that means here.
    const why = err instanceof Error && err.message === 'terminated' ? 'the server closed the connection' : (err as Error).message;
    throw new CliError(`the audio stream broke off after ${bytes} bytes (${why})${toStdout ? '' : `; ${opts.output} not written`}`);
  }
  if (opts.verbose) {
    const where = toStdout ? 'stdout' : opts.output;
    process.stderr.write(`chorus: ${bytes} bytes to ${where} in ${((performance.now() - t0) / 1000).toFixed(2)} s\n`);
  }
}

/** Streams into `<file>.part` and renames it on success: an interrupted run never leaves a truncated `<file>`. */
export async function toFile(body: Readable, file: string) {
  const part = `${file}.part`;
  // Ctrl-C (main.ts exits 130) or a crash mid-stream: the half-written .part goes too.
  const onExit = () => rmSync(part, { force: true });
  process.once('exit', onExit);
  try {
    await pipeline(body, createWriteStream(part));
    await rename(part, file);
  } catch (err) {
    await rm(part, { force: true });
    throw err;
  } finally {
    process.removeListener('exit', onExit);
  }
}
