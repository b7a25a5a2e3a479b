import { describe, expect, it } from 'vitest';
import {
  IdempotencyError,
  type IdempotencyErrorCode,
  isIdempotencyError,
  problemFor,
  problemTypeForCode,
  statusForCode,
} from './errors.js';

/** Every code with its HTTP status and problem type: the contract every binding answers with. */
const codes: Array<[IdempotencyErrorCode, number, string]> = [
  ['key_missing', 400, 'https://idem.dev/problems/key-missing'],
  ['key_invalid', 400, 'https://idem.dev/problems/key-invalid'],
  ['key_mismatch', 422, 'https://idem.dev/problems/key-mismatch'],
  ['in_flight', 409, 'https://idem.dev/problems/in-flight'],
  ['store_unavailable', 503, 'https://idem.dev/problems/store-unavailable'],
  ['request_too_large', 413, 'https://idem.dev/problems/request-too-large'],
  ['response_not_stored', 410, 'https://idem.dev/problems/response-not-stored'],
  ['record_corrupt', 500, 'https://idem.dev/problems/record-corrupt'],
  ['result_invalid', 500, 'https://idem.dev/problems/result-invalid'],
];

describe('IdempotencyError', () => {
  it('carries code, details, cause and a prefixed message', () => {
    const cause = new Error('ECONNREFUSED');
    const error = new IdempotencyError('store_unavailable', '[redis] acquire failed', {
      cause,
      details: { store: 'redis', retryAfterSeconds: 1 },
    });
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('IdempotencyError');
    expect(error.message).toBe('[idem] [redis] acquire failed');
    expect(error.code).toBe('store_unavailable');
    expect(error.cause).toBe(cause);
    expect(error.details).toEqual({ store: 'redis', retryAfterSeconds: 1 });
    expect(new IdempotencyError('key_invalid', 'x').details).toEqual({});
    expect('cause' in new IdempotencyError('key_invalid', 'x')).toBe(false);
  });

  it('is recognised by isIdempotencyError, optionally by code', () => {
    const error = new IdempotencyError('in_flight', 'busy');
    expect(isIdempotencyError(error)).toBe(true);
    expect(isIdempotencyError(error, 'in_flight')).toBe(true);
    expect(isIdempotencyError(error, 'key_mismatch', 'in_flight')).toBe(true);
    expect(isIdempotencyError(error, 'key_mismatch')).toBe(false);
    expect(isIdempotencyError(new Error('in_flight'))).toBe(false);
    expect(isIdempotencyError({ code: 'in_flight', name: 'IdempotencyError' })).toBe(false);
    expect(isIdempotencyError(null)).toBe(false);
  });

  it("recognises an error of another copy of the module (core's ESM and CommonJS builds side by side)", async () => {
    // @ts-expect-error a second instance of this module, as a second build of the package would be
    const other: typeof import('./errors.js') = await import('./errors.js?second-copy');
    expect(other.IdempotencyError).not.toBe(IdempotencyError);
    const theirs = new other.IdempotencyError('record_corrupt', 'unreadable');
    const ours = new IdempotencyError('in_flight', 'busy');
    expect(theirs instanceof IdempotencyError).toBe(true);
    expect(isIdempotencyError(theirs, 'record_corrupt')).toBe(true);
    expect(ours instanceof other.IdempotencyError).toBe(true);
    expect(other.isIdempotencyError(ours, 'in_flight')).toBe(true);
    // Still only idem's errors: a look-alike without the brand is not one.
    expect(Object.create(Error.prototype) instanceof IdempotencyError).toBe(false);
    expect(isIdempotencyError({ code: 'in_flight', name: 'IdempotencyError', message: '' })).toBe(false);
  });
});

describe('problemFor', () => {
  it('knows every code', () => {
    expect(new Set(codes.map(([code]) => code)).size).toBe(9);
  });

  it.each(codes)('answers %s with %i and type %s', (code, status, type) => {
    const error = new IdempotencyError(code, 'what happened');
    const detail = status < 500 ? 'what happened' : expect.not.stringContaining('what happened');
    expect(statusForCode(code)).toBe(status);
    expect(problemTypeForCode(code)).toBe(type);
    const answer = problemFor(error);
    expect(answer.status).toBe(status);
    expect(answer.headers).toEqual({ 'content-type': 'application/problem+json' });
    expect(answer.problem).toEqual({
      type,
      title: expect.any(String),
      status,
      detail,
      code,
    });
    expect(answer.problem.title.length).toBeGreaterThan(0);
    // The problem is JSON-serialisable as it is.
    expect(JSON.parse(JSON.stringify(answer.problem))).toEqual(answer.problem);
  });

  it.each(codes)('adds Retry-After to %s when the error says when to retry', (code) => {
    const answer = problemFor(new IdempotencyError(code, 'later', { details: { retryAfterSeconds: 7 } }));
    expect(answer.headers).toEqual({ 'content-type': 'application/problem+json', 'retry-after': '7' });
    expect(answer.problem['retryAfter']).toBe(7);
  });

  it('gives every code its own title and type', () => {
    const answers = codes.map(([code]) => problemFor(new IdempotencyError(code, 'x')).problem);
    expect(new Set(answers.map((problem) => problem.title)).size).toBe(codes.length);
    expect(new Set(answers.map((problem) => problem.type)).size).toBe(codes.length);
  });

  it('keeps the reason of a response that was not stored, and leaves internals out', () => {
    const cause = new Error('secret connection string');
    const error = new IdempotencyError('response_not_stored', 'the response was not stored', {
      cause,
      details: { reason: 'too_large', store: 'redis', key: 'idem:abc' },
    });
    const { problem } = problemFor(error);
    expect(problem['reason']).toBe('too_large');
    expect(JSON.stringify(problem)).not.toMatch(/secret|idem:abc|redis/);
  });

  it.each(codes.filter(([, status]) => status >= 500))(
    'gives %s a fixed detail: its message (store, storage key, key id) is for the operator, not the client',
    (code) => {
      const error = new IdempotencyError(code, '[redis] record idem:abc cannot be read: key id k-2024', {
        details: { store: 'redis', key: 'idem:abc' },
      });
      const { problem } = problemFor(error);
      expect(problem.detail.length).toBeGreaterThan(20);
      expect(JSON.stringify(problem)).not.toMatch(/redis|idem:abc|k-2024/);
      // The thrown error keeps the message, for logs.
      expect(error.message).toContain('idem:abc');
    },
  );

  it('strips only the leading [idem] prefix from the detail', () => {
    const { problem } = problemFor(new IdempotencyError('key_invalid', 'invalid [idem] key'));
    expect(problem.detail).toBe('invalid [idem] key');
  });
});
