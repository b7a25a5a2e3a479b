import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  backoffDelay,
  isReplayed,
  isRetryableResponse,
  isRetryableStatus,
  parseRetryAfter,
} from './retry-policy.js';

describe('parseRetryAfter', () => {
  const now = Date.parse('2030-01-01T00:00:00Z');

  it.each<[string | null | undefined, number | undefined]>([
    ['0', 0],
    ['1', 1000],
    [' 120 ', 120_000],
    ['Tue, 01 Jan 2030 00:00:05 GMT', 5000],
    ['Tuesday, 01-Jan-30 00:00:05 GMT', 5000],
    ['Mon, 31 Dec 2029 23:59:00 GMT', 0],
    [null, undefined],
    [undefined, undefined],
    ['', undefined],
    ['-1', undefined],
    ['1.5', undefined],
    ['soon', undefined],
  ])('reads %j as %j ms', (header, ms) => {
    expect(parseRetryAfter(header, now)).toBe(ms);
  });
});

describe('backoffDelay', () => {
  it('doubles the ceiling per retry up to maxDelayMs', () => {
    const almostOne = 1 - Number.EPSILON;
    expect([1, 2, 3, 4, 5].map((n) => Math.round(backoffDelay(n, 100, 500, almostOne)))).toEqual([
      100, 200, 400, 500, 500,
    ]);
    expect(backoffDelay(3, 100, 500, 0)).toBe(0);
  });

  it('stays in [0, min(max, base * 2^(retry-1))) for any random in [0, 1)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 1, max: 100_000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (retry, base, max, random) => {
          const delay = backoffDelay(retry, base, max, random);
          const ceiling = Math.min(max, base * 2 ** (retry - 1));
          return delay >= 0 && delay < ceiling;
        },
      ),
    );
  });
});

describe('isRetryableStatus', () => {
  it('retries 409 only with a key, 429 and every 5xx', () => {
    const retried = (keyed: boolean) =>
      Array.from({ length: 500 }, (_, i) => i + 100).filter((s) => isRetryableStatus(s, keyed));
    const fiveHundreds = Array.from({ length: 100 }, (_, i) => 500 + i);
    expect(retried(true)).toEqual([409, 429, ...fiveHundreds]);
    expect(retried(false)).toEqual([429, ...fiveHundreds]);
  });
});

describe('isRetryableResponse', () => {
  const replayed = (status: number) =>
    new Response(null, { status, headers: { 'idempotent-replayed': 'true' } });

  it('never retries a replay: the stored outcome is the same on every attempt', () => {
    for (const status of [409, 429, 500, 503]) {
      expect(isReplayed(replayed(status))).toBe(true);
      expect(isRetryableResponse(replayed(status), true)).toBe(false);
    }
  });

  it('decides a fresh answer by its status', () => {
    expect(isRetryableResponse(new Response(null, { status: 503 }), false)).toBe(true);
    expect(isRetryableResponse(new Response(null, { status: 409 }), true)).toBe(true);
    expect(isRetryableResponse(new Response(null, { status: 409 }), false)).toBe(false);
    expect(isRetryableResponse(new Response(null, { status: 422 }), true)).toBe(false);
    const notReplayed = new Response(null, { status: 503, headers: { 'idempotent-replayed': 'false' } });
    expect(isRetryableResponse(notReplayed, true)).toBe(true);
  });
});
