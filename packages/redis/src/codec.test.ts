import type { StoredResponse } from '@idem/core';
import { describe, expect, it } from 'vitest';
import { decodeRecord, encodeResponse, RecordFormatError } from './codec.js';

/** The HGETALL reply a record with these fields would give. */
function reply(fields: Record<string, string | Buffer>): Buffer[] {
  return Object.entries(fields).flatMap(([name, value]) => [Buffer.from(name), Buffer.from(value)]);
}

const head = { v: '1', f: 'fp', t: 'token', l: '1700000000000', e: '1700000060000' };

/** A completed record holding `response`, encoded as `complete` sends it. */
function completed(response: StoredResponse): Buffer[] {
  const [c, h, b, o] = encodeResponse(response);
  return reply({ ...head, s: 'completed', c, h, b, ...(o ? { o } : {}) });
}

describe('record codec', () => {
  it('round-trips responses: headers in order with repeats, any string, any bytes, the omitted marker', () => {
    const responses: StoredResponse[] = [
      { status: 204, headers: [], body: new Uint8Array(0) },
      {
        status: 200,
        headers: [
          ['x-a', '1'],
          ['x-a', '2'],
          ['x-json', '["x-a","3"]'],
          ['x-odd', 'lone \ud800 surrogate, \u0000 nul, caf\u00e9'],
        ],
        body: Uint8Array.from({ length: 256 }, (_, i) => i),
      },
      {
        status: 200,
        headers: [['content-type', 'text/event-stream']],
        body: new Uint8Array(0),
        omitted: 'streaming',
      },
    ];
    for (const response of responses) {
      const record = decodeRecord(completed(response));
      expect(record).toEqual({
        state: 'completed',
        fingerprint: 'fp',
        token: 'token',
        leaseExpiresAt: 1700000000000,
        expiresAt: 1700000060000,
        response,
      });
      expect(Object.getPrototypeOf(record.response!.body)).toBe(Uint8Array.prototype);
    }
  });

  it('passes the body to Redis as the same bytes, without copying or re-encoding', () => {
    const body = new Uint8Array(new ArrayBuffer(16), 4, 8).fill(7);
    const [, , sent] = encodeResponse({ status: 200, headers: [], body });
    expect(sent.buffer).toBe(body.buffer);
    expect(sent.byteOffset).toBe(4);
    expect(sent.length).toBe(8);
  });

  it('refuses a status that is not a three-digit integer', () => {
    expect(() => encodeResponse({ status: 20.5, headers: [], body: new Uint8Array(0) })).toThrow(TypeError);
    expect(() => encodeResponse({ status: 42, headers: [], body: new Uint8Array(0) })).toThrow(TypeError);
  });

  it('gives in-flight and failed records no response', () => {
    expect(decodeRecord(reply({ ...head, s: 'in_flight' })).response).toBeNull();
    expect(decodeRecord(reply({ ...head, s: 'failed' })).response).toBeNull();
  });

  it('refuses replies that are not a record, naming what is wrong', () => {
    const cases: Array<[unknown[], RegExp]> = [
      [[Buffer.from('v')], /not a flat hash reply/],
      [['v', '1'], /not a flat hash reply/],
      [reply({ ...head, v: '2', s: 'in_flight' }), /format version/],
      [reply({ ...head, s: 'pending' }), /unknown state/],
      [reply({ ...head, s: 'in_flight', l: '-5' }), /malformed time in field l/],
      [reply({ ...head, s: 'in_flight', e: '1e12' }), /malformed time in field e/],
      [reply({ v: '1', s: 'failed', t: 'x', l: '1', e: '2' }), /lacks field f/],
      [reply({ ...head, s: 'completed', h: '[]', b: '' }), /lacks field c/],
      [reply({ ...head, s: 'completed', c: '200', h: '[1,2]', b: '' }), /malformed headers/],
    ];
    for (const [fields, why] of cases) {
      expect(() => decodeRecord(fields)).toThrow(RecordFormatError);
      expect(() => decodeRecord(fields)).toThrow(why);
    }
  });
});
