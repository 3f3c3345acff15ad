import { z } from 'zod';

/*
 * Records of a job's audio stream (one Redis Stream per job, key from RedisKeys.audioStream):
 *
 *   audio  t=a seq=<n> off=<byte offset> d=<bytes> [rs=<sample> rb=<byte offset>]
 *                                                      bytes of the requested container, in order
 *   end    t=e seq=<n> bytes=<total> dur=<seconds> chars=<n>
 *   error  t=x seq=<n> code=<OpenAI code> msg=<message> [param=<request field>]
 *
 * `seq` starts at 0 and grows by one per record. `off` is where `d` starts in the whole file: a worker that
 * takes over a crashed job's stream regenerates the (deterministic) audio and skips what was already published,
 * so readers never see duplicated or missing bytes. Exactly one terminal record (end or error) ends a stream.
 * `rs`/`rb` (mp3): the latest restart point before the record's end: where the worker's encoder started a new
 * piece (input sample `rs` of the encoder's PCM, byte `rb` of the file), so a takeover re-encodes from there
 * rather than from the start (apps/worker/src/encoders/piecewise-encoder.ts). Readers other than the worker ignore it.
 */

/** Where an encoder piece began: its first input sample (the encoder's PCM) and its first byte in the file. */
export const RestartPoint = z.object({
  sample: z.number().int().min(0),
  bytes: z.number().int().min(0),
});
export type RestartPoint = z.infer<typeof RestartPoint>;

export const AudioRecord = z.object({
  type: z.literal('audio'),
  seq: z.number().int().min(0),
  offset: z.number().int().min(0),
  data: z.instanceof(Buffer),
  restart: RestartPoint.optional(),
});
export const EndRecord = z.object({
  type: z.literal('end'),
  seq: z.number().int().min(0),
  bytes: z.number().int().min(0),
  durationS: z.number().min(0),
  chars: z.number().int().min(0),
});
export const ErrorRecord = z.object({
  type: z.literal('error'),
  seq: z.number().int().min(0),
  code: z.string(),
  message: z.string(),
  /** The request field the error is about (`voice`, `input`), when there is one. */
  param: z.string().optional(),
});
export const StreamRecord = z.discriminatedUnion('type', [AudioRecord, EndRecord, ErrorRecord]);
export type AudioRecord = z.infer<typeof AudioRecord>;
export type EndRecord = z.infer<typeof EndRecord>;
export type ErrorRecord = z.infer<typeof ErrorRecord>;
export type StreamRecord = z.infer<typeof StreamRecord>;

/** Flat field/value list for XADD. */
export function encodeRecord(record: StreamRecord): (string | Buffer)[] {
  switch (record.type) {
    case 'audio':
      return [
        't', 'a', 'seq', String(record.seq), 'off', String(record.offset), 'd', record.data,
        ...(record.restart ? ['rs', String(record.restart.sample), 'rb', String(record.restart.bytes)] : []),
      ];
    case 'end':
      return [
        't', 'e', 'seq', String(record.seq), 'bytes', String(record.bytes),
        'dur', record.durationS.toFixed(3), 'chars', String(record.chars),
      ];
    case 'error':
      return [
        't', 'x', 'seq', String(record.seq), 'code', record.code, 'msg', record.message,
        ...(record.param ? ['param', record.param] : []),
      ];
  }
}

/** Parses the field list of one entry as returned by xreadBuffer / xrangeBuffer. */
export function decodeRecord(fields: Buffer[]): StreamRecord {
  const map = new Map<string, Buffer>();
  for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i]!.toString('latin1'), fields[i + 1]!);
  const str = (k: string) => map.get(k)?.toString('utf8') ?? '';
  const num = (k: string) => Number(str(k));
  const t = str('t');
  const raw =
    t === 'a'
      ? {
          type: 'audio', seq: num('seq'), offset: num('off'), data: map.get('d') ?? Buffer.alloc(0),
          restart: map.has('rs') ? { sample: num('rs'), bytes: num('rb') } : undefined,
        }
      : t === 'e'
        ? { type: 'end', seq: num('seq'), bytes: num('bytes'), durationS: num('dur'), chars: num('chars') }
        : { type: 'error', seq: num('seq'), code: str('code') || 'internal_error', message: str('msg'), param: str('param') || undefined };
  return StreamRecord.parse(raw);
}

export function isTerminal(record: StreamRecord): record is EndRecord | ErrorRecord {
  return record.type !== 'audio';
}
