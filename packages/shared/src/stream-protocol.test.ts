import { describe, expect, it } from 'vitest';
import { decodeRecord, encodeRecord, type StreamRecord } from './stream-protocol.ts';

function roundTrip(r: StreamRecord): StreamRecord {
  const fields = encodeRecord(r).map((f) => (typeof f === 'string' ? Buffer.from(f) : f));
  return decodeRecord(fields);
}

describe('stream records', () => {
  it('round-trip audio bytes exactly, including non-UTF-8 bytes', () => {
    const data = Buffer.from([0, 255, 128, 10, 13, 0xc3, 0x28]);
    expect(roundTrip({ type: 'audio', seq: 3, offset: 100, data })).toEqual({ type: 'audio', seq: 3, offset: 100, data });
  });

  it('round-trip end and error records', () => {
    expect(roundTrip({ type: 'end', seq: 9, bytes: 1234, durationS: 1.5, chars: 42 })).toEqual({
      type: 'end', seq: 9, bytes: 1234, durationS: 1.5, chars: 42,
    });
    expect(roundTrip({ type: 'error', seq: 0, code: 'engine_error', message: 'boom: ü' })).toEqual({
      type: 'error', seq: 0, code: 'engine_error', message: 'boom: ü',
    });
    expect(roundTrip({ type: 'error', seq: 2, code: 'invalid_value', message: 'no such voice', param: 'voice' })).toEqual({
      type: 'error', seq: 2, code: 'invalid_value', message: 'no such voice', param: 'voice',
    });
  });
});
