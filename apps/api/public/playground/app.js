// Chorus playground: one ES module, no build step, no dependencies. It calls the public API of the server that
// served it (same origin), exactly as any OpenAI-compatible client would.

const $ = (id) => document.getElementById(id);

/** `pcm` is raw 24 kHz 16-bit mono (SPEC); the page wraps it in a WAV header to play it. */
const PCM_RATE = 24_000;

/** Containers MediaSource can take while they stream (mp3 and ADTS AAC in Chromium); the rest play when done. */
const STREAMABLE = { mp3: 'audio/mpeg', aac: 'audio/aac' };

/** Types for the finished file (what the audio element plays and the download carries). */
const FILE_TYPES = {
  mp3: 'audio/mpeg', opus: 'audio/ogg; codecs=opus', aac: 'audio/aac', flac: 'audio/flac', wav: 'audio/wav',
  pcm: 'audio/wav',
};

let config = { auth_required: false, public_discovery: true, max_input_chars: 4096 };
/** The run in progress or last finished: its abort controller and the object URLs to release. */
let current = null;

/** An error in OpenAI's envelope: from a non-2xx response (`status`) or an SSE error event (`status` null). */
class ApiError extends Error {
  constructor(status, error) {
    super(typeof error?.message === 'string' ? error.message : 'The server returned an error.');
    this.status = status;
    this.type = error?.type ?? null;
    this.code = error?.code ?? null;
    this.param = error?.param ?? null;
  }
}

function setState(state, text) {
  document.body.dataset.state = state;
  if (text !== undefined) $('status').textContent = text;
}

function authHeaders() {
  const key = $('api-key').value.trim();
  return key ? { authorization: `Bearer ${key}` } : {};
}

/** Reads a failed response as the OpenAI envelope, or as text when a proxy answered with something else. */
async function responseError(res) {
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text);
    if (body && typeof body.error === 'object' && body.error) return new ApiError(res.status, body.error);
  } catch {
    // not JSON: fall through
  }
  return new ApiError(res.status, { message: `HTTP ${res.status} ${res.statusText}${text ? `: ${text.slice(0, 300)}` : ''}` });
}

async function getJson(path) {
  try {
    const res = await fetch(path, { headers: authHeaders() });
    if (!res.ok) return { error: await responseError(res) };
    return { body: await res.json() };
  } catch (err) {
    return { error: new Error(`Could not reach the server (${err.message}).`) };
  }
}

// ---------------------------------------------------------------- models and voices

async function loadLists() {
  const [models, voices] = await Promise.all([getJson('/v1/models'), getJson('/v1/audio/voices')]);
  const note = $('lists-note');
  const failed = models.error ?? voices.error;
  if (failed) {
    note.textContent = `Could not load the models and voices: ${failed.message}` +
      (failed.status === 401 ? ' Enter the API key above; the lists reload when you do.' : '');
    note.hidden = false;
  } else if (models.body.data.length === 0) {
    note.textContent = 'No live worker serves a model right now: requests will fail with model_unavailable.';
    note.hidden = false;
  } else {
    note.hidden = true;
  }

  if (models.body) {
    const select = $('model');
    const chosen = select.value;
    select.replaceChildren(...models.body.data.map((m) => new Option(`${m.id} (${m.engine})`, m.id)));
    if (models.body.data.some((m) => m.id === chosen)) select.value = chosen;
  }
  if (voices.body) {
    const seen = new Set();
    const options = [];
    for (const v of voices.body.voices) {
      if (seen.has(v.id)) continue;
      seen.add(v.id);
      const option = document.createElement('option');
      option.value = v.id;
      option.label = [v.name !== v.id ? v.name : null, v.engine, v.language].filter(Boolean).join(' · ');
      options.push(option);
    }
    $('voice-list').replaceChildren(...options);
  }
}

// ---------------------------------------------------------------- reading the response

/**
 * The chunks of a response body as they arrive, then cancels the reader. A connection closed before the end is an
 * error with `cutOff` as its message (SPEC); the user's own abort stays an AbortError.
 */
async function* bodyChunks(reader, cutOff) {
  try {
    for (;;) {
      let step;
      try {
        step = await reader.read();
      } catch (err) {
        if (err.name === 'AbortError') throw err;
        throw new Error(cutOff);
      }
      if (step.done) return;
      yield step.value;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** Raw audio: the response body as it arrives. */
function rawAudio(res) {
  return bodyChunks(res.body.getReader(), 'The audio stream was cut off: the server closed the connection before the end of the audio.');
}

/** The `data:` payloads of a text/event-stream body (the speech route sends no other fields). */
async function* sseData(res) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let data = [];
  for await (const text of bodyChunks(reader, 'The event stream was cut off: the server closed the connection before [DONE].')) {
    buffer += text;
    for (let m = /\r\n|\r|\n/.exec(buffer); m; m = /\r\n|\r|\n/.exec(buffer)) {
      const line = buffer.slice(0, m.index);
      buffer = buffer.slice(m.index + m[0].length);
      if (line === '') {
        if (data.length) yield data.join('\n');
        data = [];
      } else if (line.startsWith('data:')) {
        data.push(line.slice(5).replace(/^ /, ''));
      }
    }
  }
  if (data.length) yield data.join('\n');
}

function base64ToBytes(b64) {
  if (typeof Uint8Array.fromBase64 === 'function') return Uint8Array.fromBase64(b64);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** SSE: decoded audio deltas; `speech.audio.error` becomes an ApiError, `done` hands over the usage. */
async function* sseAudio(res, onUsage) {
  for await (const data of sseData(res)) {
    if (data === '[DONE]') return;
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      throw new Error(`The server sent an event this page cannot read: ${data.slice(0, 200)}`);
    }
    if (event.type === 'speech.audio.delta') yield base64ToBytes(event.audio);
    else if (event.type === 'speech.audio.done') onUsage(event.usage);
    else if (event.type === 'speech.audio.error') throw new ApiError(null, event.error);
  }
  throw new Error('The event stream ended without [DONE]: the server closed the connection early.');
}

// ---------------------------------------------------------------- files

function concat(chunks) {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function wavFromPcm(pcm) {
  const header = new DataView(new ArrayBuffer(44));
  const ascii = (at, s) => [...s].forEach((ch, i) => header.setUint8(at + i, ch.charCodeAt(0)));
  ascii(0, 'RIFF');
  header.setUint32(4, 36 + pcm.length, true);
  ascii(8, 'WAVE');
  ascii(12, 'fmt ');
  header.setUint32(16, 16, true);
  header.setUint16(20, 1, true); // PCM
  header.setUint16(22, 1, true); // mono
  header.setUint32(24, PCM_RATE, true);
  header.setUint32(28, PCM_RATE * 2, true);
  header.setUint16(32, 2, true);
  header.setUint16(34, 16, true);
  ascii(36, 'data');
  header.setUint32(40, pcm.length, true);
  return concat([new Uint8Array(header.buffer), pcm]);
}

/** A streamed WAV says 0xFFFFFFFF for its sizes (as OpenAI's does): write the real ones so players know the length. */
function wavWithSizes(wav) {
  const out = wav.slice();
  const view = new DataView(out.buffer);
  if (out.length < 12) return out;
  view.setUint32(4, out.length - 8, true);
  for (let at = 12; at + 8 <= out.length;) {
    const id = String.fromCharCode(...out.subarray(at, at + 4));
    if (id === 'data') {
      view.setUint32(at + 4, out.length - at - 8, true);
      break;
    }
    at += 8 + view.getUint32(at + 4, true) + (view.getUint32(at + 4, true) & 1);
  }
  return out;
}

/** The finished file as the page offers it: pcm as sent (downloads) or wrapped (plays); wav with exact sizes. */
function finishedFile(chunks, format, forPlayback) {
  const bytes = concat(chunks);
  if (format === 'pcm') {
    return forPlayback ? new Blob([wavFromPcm(bytes)], { type: 'audio/wav' }) : new Blob([bytes], { type: 'audio/pcm' });
  }
  if (format === 'wav') return new Blob([wavWithSizes(bytes)], { type: 'audio/wav' });
  return new Blob([bytes], { type: FILE_TYPES[format] });
}

// ---------------------------------------------------------------- playback

function play(audio) {
  audio.play().catch((err) => {
    // AbortError: a newer run replaced the source. NotAllowedError: autoplay refused; the controls still work.
    if (err.name === 'NotAllowedError') $('playback-mode').textContent += ' The browser blocked autoplay: press play.';
  });
}

/** Plays while the bytes arrive: MediaSource, one SourceBuffer fed in order. */
class StreamingSink {
  constructor(audio, mime, run) {
    this.audio = audio;
    this.queue = [];
    this.waiters = [];
    this.failed = null;
    this.started = false;
    this.mediaSource = new MediaSource();
    run.urls.push((audio.src = URL.createObjectURL(this.mediaSource)));
    this.opened = new Promise((resolve) => this.mediaSource.addEventListener('sourceopen', resolve, { once: true }));
    this.opened.then(() => {
      try {
        this.buffer = this.mediaSource.addSourceBuffer(mime);
      } catch (err) {
        this.failed = err;
        return this.wake();
      }
      this.buffer.addEventListener('updateend', () => {
        if (!this.started) {
          this.started = true;
          play(audio);
        }
        this.pump();
      });
      this.buffer.addEventListener('error', () => (this.failed ??= new Error('the browser could not decode the stream')));
      this.pump();
    });
  }

  append(bytes) {
    this.queue.push(bytes);
    this.pump();
  }

  pump() {
    if (!this.buffer || this.buffer.updating) return;
    if (this.queue.length && !this.failed) {
      try {
        this.buffer.appendBuffer(this.queue.shift());
        return;
      } catch (err) {
        this.failed = err; // e.g. QuotaExceededError on very long audio
      }
    }
    if (!this.queue.length || this.failed) this.wake();
  }

  wake() {
    for (const resolve of this.waiters.splice(0)) resolve();
  }

  /** Resolves when everything appended so far is in the buffer (or appending failed). */
  drained() {
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      if (this.buffer || this.failed) this.pump();
    });
  }

  async finish(chunks, format, run) {
    await this.opened;
    await this.drained();
    if (this.failed) {
      $('playback-mode').textContent = `MediaSource refused the stream (${this.failed.message}): playing the whole file.`;
      return new WholeFileSink(this.audio).finish(chunks, format, run);
    }
    if (this.mediaSource.readyState === 'open') this.mediaSource.endOfStream();
  }
}

/** Plays when the whole file is there: for containers this browser's MediaSource cannot take. */
class WholeFileSink {
  constructor(audio) {
    this.audio = audio;
  }

  append() {}

  async finish(chunks, format, run) {
    run.urls.push((this.audio.src = URL.createObjectURL(finishedFile(chunks, format, true))));
    play(this.audio);
  }
}

function canStream(format) {
  const mime = STREAMABLE[format];
  return Boolean(mime && window.MediaSource && MediaSource.isTypeSupported(mime)) ? mime : null;
}

function describePlayback() {
  const format = $('format').value;
  $('playback-mode').textContent = canStream(format)
    ? `${format}: plays while it streams (MediaSource).`
    : `${format}: plays when the whole file has arrived (this browser's MediaSource cannot take ${format} as it streams).`;
}

/** The audio's length in seconds: exact for wav/pcm, else the element's (or the SSE usage's 20 ms frames). */
async function audioSeconds(audio, chunks, format, usage) {
  const bytes = chunks.reduce((n, c) => n + c.length, 0);
  if (format === 'pcm') return bytes / (PCM_RATE * 2);
  if (format === 'wav') return Math.max(0, bytes - 44) / (PCM_RATE * 2);
  if (!(Number.isFinite(audio.duration) && audio.duration > 0)) {
    await new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        audio.removeEventListener('durationchange', check);
        resolve();
      };
      const check = () => Number.isFinite(audio.duration) && audio.duration > 0 && done();
      const timer = setTimeout(done, 15_000);
      audio.addEventListener('durationchange', check);
      check();
    });
  }
  if (Number.isFinite(audio.duration) && audio.duration > 0) return audio.duration;
  return usage?.output_tokens ? usage.output_tokens * 0.02 : null;
}

// ---------------------------------------------------------------- a run

function resetOutput() {
  for (const url of current?.urls ?? []) URL.revokeObjectURL(url);
  const audio = $('player');
  audio.pause();
  audio.removeAttribute('src');
  audio.load();
  $('error').hidden = true;
  $('error').replaceChildren();
  for (const id of ['ttfa', 'total', 'duration', 'rtf']) $(id).textContent = '–';
  const link = $('download');
  link.hidden = true;
  link.removeAttribute('href');
}

function showError(err) {
  const box = $('error');
  const message = document.createElement('div');
  message.className = 'message';
  message.textContent = err.message;
  box.replaceChildren(message);
  if (err instanceof ApiError) {
    const meta = document.createElement('div');
    meta.className = 'meta';
    meta.textContent = [
      err.status ? `HTTP ${err.status}` : 'error event during the stream',
      err.type, err.code && `code ${err.code}`, err.param && `param ${err.param}`,
    ].filter(Boolean).join(' · ');
    box.append(meta);
  }
  box.hidden = false;
  setState('error', 'Failed.');
}

const ms = (value) => `${Math.round(value)} ms`;

async function speak(event) {
  event.preventDefault();
  current?.controller.abort();
  resetOutput();
  const run = { controller: new AbortController(), urls: [] };
  current = run;
  $('speak').disabled = true;
  $('stop').disabled = false;
  setState('busy', 'Sending…');

  const format = $('format').value;
  const streamFormat = document.querySelector('input[name="stream_format"]:checked').value;
  const audio = $('player');
  const mime = canStream(format);
  describePlayback();
  const sink = mime ? new StreamingSink(audio, mime, run) : new WholeFileSink(audio);
  const chunks = [];
  let usage = null;
  const started = performance.now();
  try {
    const res = await fetch('/v1/audio/speech', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...authHeaders() },
      body: JSON.stringify({
        model: $('model').value,
        voice: $('voice').value.trim(),
        input: $('input').value,
        response_format: format,
        speed: Number($('speed').value),
        stream_format: streamFormat,
      }),
      signal: run.controller.signal,
    }).catch((err) => {
      throw err.name === 'AbortError' ? err : new Error(`Could not reach the server (${err.message}).`);
    });
    if (!res.ok) throw await responseError(res);
    let received = 0;
    const source = streamFormat === 'sse' ? sseAudio(res, (u) => (usage = u)) : rawAudio(res);
    for await (const bytes of source) {
      if (received === 0) $('ttfa').textContent = ms(performance.now() - started);
      received += bytes.length;
      chunks.push(bytes);
      sink.append(bytes);
      setState('busy', `Receiving… ${(received / 1024).toFixed(1)} KiB`);
    }
    if (received === 0) throw new Error('The server sent no audio.');
    const totalMs = performance.now() - started;
    $('total').textContent = ms(totalMs);
    await sink.finish(chunks, format, run);

    const link = $('download');
    run.urls.push((link.href = URL.createObjectURL(finishedFile(chunks, format, false))));
    link.download = `speech.${format}`;
    link.textContent = `Download speech.${format} (${(received / 1024).toFixed(1)} KiB)`;
    link.hidden = false;

    const seconds = await audioSeconds(audio, chunks, format, usage);
    if (current !== run) return;
    if (seconds) {
      $('duration').textContent = `${seconds.toFixed(2)} s`;
      const rtf = totalMs / 1000 / seconds;
      $('rtf').textContent = `${rtf.toPrecision(2)} (${(1 / rtf).toFixed(1)}× real time)`;
    }
    setState('done', 'Done.');
  } catch (err) {
    if (run.controller.signal.aborted) {
      if (current === run) setState('idle', 'Stopped.');
      return;
    }
    if (current === run) showError(err);
  } finally {
    if (current === run) {
      $('speak').disabled = false;
      $('stop').disabled = true;
    }
  }
}

function stop() {
  current?.controller.abort();
  $('player').pause();
}

function updateCount() {
  const count = [...$('input').value].length;
  const over = count > config.max_input_chars;
  const hint = $('input-count');
  hint.textContent = `${count} / ${config.max_input_chars} characters` + (over ? ' (over the server\'s limit)' : '');
  hint.classList.toggle('over', over);
}

async function init() {
  $('speak-form').addEventListener('submit', speak);
  $('stop').addEventListener('click', stop);
  $('input').addEventListener('input', updateCount);
  $('format').addEventListener('change', describePlayback);
  $('speed').addEventListener('input', () => ($('speed-value').textContent = Number($('speed').value).toFixed(2)));
  $('api-key').addEventListener('change', loadLists);
  try {
    const res = await fetch('/playground/config.json');
    if (res.ok) config = { ...config, ...(await res.json()) };
  } catch {
    // keep the defaults: the API's own answers still say what is wrong
  }
  $('key-row').hidden = !config.auth_required;
  updateCount();
  describePlayback();
  await loadLists();
  setState('idle');
}

init();
