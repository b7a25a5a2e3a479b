import { IdempotencyError as CoreError, type IdempotencyError, problemFor } from '@idem/core';
import { describe, expect, it } from 'vitest';
import { ensureOk, isProblemError, ProblemError } from './problem-error.js';

/** The response an idem binding sends for `error`. */
function idemAnswer(error: IdempotencyError): Response {
  const { status, headers, problem } = problemFor(error);
  return new Response(JSON.stringify(problem), { status, headers });
}

describe('ensureOk', () => {
  it.each([200, 201, 204, 304])('resolves with a %i response', async (status) => {
    const response = new Response(null, { status });
    expect(await ensureOk(response)).toBe(response);
  });

  it("parses idem's problem and keeps the body readable", async () => {
    const response = idemAnswer(
      new CoreError('response_not_stored', 'the original response was not stored', {
        details: { reason: 'too_large' },
      }),
    );
    const error = await ensureOk(response).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProblemError);
    const problem = error as ProblemError;
    expect(problem.status).toBe(410);
    expect(problem.code).toBe('response_not_stored');
    expect(problem.idemProblem).toMatchObject({
      type: 'https://idem.dev/problems/response-not-stored',
      status: 410,
      reason: 'too_large',
    });
    expect(problem.message).toContain('410 The original response was not stored');
    expect(await problem.response.json()).toMatchObject({ code: 'response_not_stored' });
  });

  it("keeps another server's problem without claiming it is idem's", async () => {
    const body = { type: 'https://shop.test/out-of-stock', title: 'Out of stock', code: 'out_of_stock' };
    const response = new Response(JSON.stringify(body), {
      status: 409,
      headers: { 'content-type': 'application/problem+json; charset=utf-8' },
    });
    const error = (await ensureOk(response).catch((e: unknown) => e)) as ProblemError;
    expect(error.problem).toEqual(body);
    expect(error.code).toBeUndefined();
    expect(error.idemProblem).toBeUndefined();
  });

  it.each([
    ['a plain text body', 'text/plain', 'not found'],
    ['a JSON body that is not a problem', 'application/json', '{"code":"key_mismatch"}'],
    ['a broken problem', 'application/problem+json', '{"title":'],
    ['a problem that is not an object', 'application/problem+json', '[1]'],
  ])('has no problem for %s', async (_, type, body) => {
    const response = new Response(body, {
      status: 404,
      statusText: 'Not Found',
      headers: { 'content-type': type },
    });
    const error = (await ensureOk(response).catch((e: unknown) => e)) as ProblemError;
    expect(error).toMatchObject({ status: 404, problem: undefined, code: undefined });
    expect(error.message).toContain('404 Not Found');
  });
});

describe('isProblemError', () => {
  it('checks the class and, when given, the code', async () => {
    const error = await ensureOk(idemAnswer(new CoreError('key_mismatch', 'different payload'))).catch(
      (e: unknown) => e,
    );
    expect(isProblemError(error)).toBe(true);
    expect(isProblemError(error, 'key_mismatch', 'in_flight')).toBe(true);
    expect(isProblemError(error, 'in_flight')).toBe(false);
    expect(isProblemError(new Error('x'))).toBe(false);
  });

  it('recognises an error of another copy of the module (the ESM and CommonJS builds side by side)', async () => {
    // @ts-expect-error a second instance of this module, as a second build of the package would be
    const other: typeof import('./problem-error.js') = await import('./problem-error.js?second-copy');
    expect(other.ProblemError).not.toBe(ProblemError);
    const theirs = new other.ProblemError(new Response(null, { status: 409 }), { code: 'in_flight' });
    expect(theirs instanceof ProblemError).toBe(true);
    expect(isProblemError(theirs, 'in_flight')).toBe(true);
    expect(
      new ProblemError(new Response(null, { status: 422 }), undefined) instanceof other.ProblemError,
    ).toBe(true);
    expect(Object.create(Error.prototype) instanceof ProblemError).toBe(false);
  });
});
