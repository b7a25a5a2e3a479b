import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createIdempotentFetch, type IdempotentFetchOptions, type RetryEvent } from './idempotent-fetch.js';
import { isProblemError, ProblemError } from './problem-error.js';
import { retryInfo } from './retry-info.js';
import {
  answer,
  drive,
  flush,
  networkError,
  type Step,
  scriptedFetch,
  tick,
  useFakeClock,
} from './scripted-fetch.js';

const URL_ = 'https://api.test/orders';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

beforeEach(useFakeClock);
afterEach(() => {
  vi.useRealTimers();
});

function setup(steps: Step[], options: Omit<IdempotentFetchOptions, 'fetch'> = {}) {
  const server = scriptedFetch(...steps);
  const retries: RetryEvent[] = [];
  const fetch = createIdempotentFetch({
    fetch: server.fetch,
    onRetry: (event) => retries.push(event),
    ...options,
  });
  return { fetch, seen: server.seen, retries };
}

/** A server step that answers after `ms`, unless the attempt is aborted first. */
function slowAnswer(ms: number, response: Response): Step {
  return (request) =>
    new Promise((resolve, reject) => {
      const id = setTimeout(() => resolve(response), ms);
      request.signal.addEventListener('abort', () => {
        clearTimeout(id);
        reject(request.signal.reason);
      });
    });
}

const post = { method: 'POST', body: '{"sku":"a"}', headers: { 'content-type': 'application/json' } };

describe('keys', () => {
  it('sends a fresh random key on POST and the same key on every retry of the call', async () => {
    const { fetch, seen } = setup([networkError(), answer(503), answer(201)]);
    const response = await drive(fetch(URL_, post));
    expect(response.status).toBe(201);
    expect(seen).toHaveLength(3);
    expect(seen[0]?.key).toMatch(UUID);
    expect(new Set(seen.map((s) => s.key)).size).toBe(1);
    expect(retryInfo(response)).toEqual({ attempts: 3, replayed: false, idempotencyKey: seen[0]?.key });
  });

  it('gives each logical call its own key', async () => {
    const { fetch, seen } = setup([answer(201), answer(201)]);
    await drive(fetch(URL_, post));
    await drive(fetch(URL_, post));
    expect(seen[0]?.key).not.toBe(seen[1]?.key);
  });

  it('keys PATCH and lowercase methods too', async () => {
    const { fetch, seen } = setup([answer(200), answer(200)]);
    await drive(fetch(URL_, { method: 'PATCH', body: 'x' }));
    await drive(fetch(URL_, { method: 'post', body: 'x' }));
    expect(seen.map((s) => s.key)).toEqual([expect.stringMatching(UUID), expect.stringMatching(UUID)]);
  });

  it.each(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'])('retries %s without a key', async (method) => {
    const { fetch, seen } = setup([answer(503), networkError(), answer(200)]);
    const response = await drive(fetch(URL_, { method }));
    expect(response.status).toBe(200);
    expect(seen.map((s) => [s.method, s.key])).toEqual([
      [method, null],
      [method, null],
      [method, null],
    ]);
  });

  it('keeps a caller-supplied key as is, and retries with it', async () => {
    const { fetch, seen } = setup([networkError(), answer(201)]);
    await drive(fetch(URL_, { ...post, headers: { 'Idempotency-Key': '"order-42"' } }));
    expect(seen.map((s) => s.key)).toEqual(['"order-42"', '"order-42"']);
  });

  it('uses generateKey', async () => {
    let n = 0;
    const { fetch, seen } = setup([networkError(), answer(201), answer(201)], {
      generateKey: () => `k${++n}`,
    });
    await drive(fetch(URL_, post));
    await drive(fetch(URL_, post));
    expect(seen.map((s) => s.key)).toEqual(['k1', 'k1', 'k2']);
  });

  it('keys the configured methods only, and never retries an unkeyed non-idempotent request', async () => {
    const { fetch, seen } = setup([answer(503), answer(503), answer(200)], { keyMethods: ['PUT'] });
    expect((await drive(fetch(URL_, post))).status).toBe(503);
    expect(seen).toHaveLength(1);
    expect(seen[0]?.key).toBeNull();
    await drive(fetch(URL_, { method: 'PUT' }));
    expect(seen[1]?.key).toMatch(UUID);
    expect(seen[2]?.key).toBe(seen[1]?.key);
  });

  it('does not retry safe methods when idempotentMethods is empty', async () => {
    const { fetch, seen } = setup([answer(503)], { idempotentMethods: [] });
    expect((await drive(fetch(URL_))).status).toBe(503);
    expect(seen).toHaveLength(1);
  });
});

describe('which answers are retried', () => {
  it.each([409, 429, 500, 502, 503, 504])('retries %i with the same key', async (status) => {
    const { fetch, seen, retries } = setup([answer(status), answer(201)]);
    const response = await drive(fetch(URL_, post));
    expect(response.status).toBe(201);
    expect(seen).toHaveLength(2);
    expect(seen[1]?.key).toBe(seen[0]?.key);
    expect(retries[0]?.response?.status).toBe(status);
  });

  it.each([400, 401, 403, 404, 410, 413, 422])('returns %i at once', async (status) => {
    const { fetch, seen, retries } = setup([answer(status), answer(201)]);
    const response = await drive(fetch(URL_, post));
    expect(response.status).toBe(status);
    expect(await response.text()).toBe(`status ${status}`);
    expect(seen).toHaveLength(1);
    expect(retries).toEqual([]);
  });

  it('treats 409 on an unkeyed request as a real conflict', async () => {
    const { fetch, seen } = setup([answer(409), answer(200)]);
    expect((await drive(fetch(URL_, { method: 'PUT' }))).status).toBe(409);
    expect(seen).toHaveLength(1);
  });

  it('returns the last retryable response when the attempts run out', async () => {
    const { fetch, seen } = setup([answer(503), answer(502), answer(500)], { maxAttempts: 3 });
    const response = await drive(fetch(URL_, post));
    expect(response.status).toBe(500);
    expect(seen).toHaveLength(3);
    expect(retryInfo(response)?.attempts).toBe(3);
  });

  it('throws the last network error when the attempts run out', async () => {
    const last = networkError();
    const { fetch, seen } = setup([networkError(), last], { maxAttempts: 2 });
    const error = await drive(fetch(URL_, post)).catch((e: unknown) => e);
    expect(error).toBe(last);
    expect(seen).toHaveLength(2);
    expect(retryInfo(error)).toEqual({ attempts: 2, replayed: false, idempotencyKey: seen[0]?.key });
  });

  it.each([409, 429, 500, 503])(
    'returns a replayed %i at once: a stored outcome never changes',
    async (status) => {
      const replay = answer(status, { 'idempotent-replayed': 'true', 'retry-after': '1' });
      const { fetch, seen, retries } = setup([replay, answer(201)]);
      const response = await drive(fetch(URL_, post));
      expect(response.status).toBe(status);
      expect(await response.text()).toBe(`status ${status}`);
      expect(seen).toHaveLength(1);
      expect(retries).toEqual([]);
      expect(retryInfo(response)).toEqual({ attempts: 1, replayed: true, idempotencyKey: seen[0]?.key });
    },
  );

  it('cancels the body of a response it retries', async () => {
    const cancel = vi.fn();
    const body = new ReadableStream({ cancel });
    const { fetch } = setup([new Response(body, { status: 503 }), answer(201)]);
    await drive(fetch(URL_, post));
    expect(cancel).toHaveBeenCalled();
  });
});

describe('waits', () => {
  it('backs off exponentially with full jitter, capped by maxDelayMs', async () => {
    const steps = [answer(503), answer(503), answer(503), answer(503), answer(201)];
    const { fetch, retries } = setup(steps, {
      maxAttempts: 5,
      baseDelayMs: 100,
      maxDelayMs: 300,
      random: () => 0.5,
    });
    await drive(fetch(URL_, post));
    expect(retries.map((r) => r.delayMs)).toEqual([50, 100, 150, 150]);
  });

  it('waits exactly the jittered delay before the next attempt', async () => {
    const { fetch, seen } = setup([answer(503), answer(201)], { baseDelayMs: 1000, random: () => 0.25 });
    const pending = fetch(URL_, post);
    await tick(249);
    expect(seen).toHaveLength(1);
    await tick(1);
    expect(seen).toHaveLength(2);
    expect((await pending).status).toBe(201);
  });

  it.each([
    ['409', '2'],
    ['429', '2'],
    ['503', '2'],
  ])('honours Retry-After in seconds on %s', async (status, header) => {
    const { fetch, seen, retries } = setup([answer(Number(status), { 'retry-after': header }), answer(201)]);
    const pending = fetch(URL_, post);
    await tick(1999);
    expect(seen).toHaveLength(1);
    await tick(1);
    expect(seen).toHaveLength(2);
    expect((await pending).status).toBe(201);
    expect(retries[0]?.delayMs).toBe(2000);
  });

  it('honours Retry-After as an HTTP-date', async () => {
    const at = new Date(Date.now() + 5000).toUTCString();
    const { fetch, seen } = setup([answer(429, { 'retry-after': at }), answer(201)]);
    const pending = fetch(URL_, post);
    await tick(4999);
    expect(seen).toHaveLength(1);
    await tick(1);
    expect(seen).toHaveLength(2);
    await pending;
  });

  it('waits out a Retry-After longer than a timer can hold (2^31-1 ms) when there is no deadline', async () => {
    const thirtyDays = 30 * 24 * 3600;
    const { fetch, seen } = setup([answer(503, { 'retry-after': String(thirtyDays) }), answer(201)], {
      deadlineMs: Number.POSITIVE_INFINITY,
    });
    const start = Date.now();
    const pending = drive(fetch(URL_, post));
    await tick(60_000);
    expect(seen).toHaveLength(1);
    expect((await pending).status).toBe(201);
    expect(seen).toHaveLength(2);
    expect(Date.now() - start).toBe(thirtyDays * 1000);
  });

  it('gives up at once when Retry-After ends after the deadline', async () => {
    const { fetch, seen } = setup([answer(503, { 'retry-after': '60' }), answer(201)], {
      deadlineMs: 10_000,
    });
    const start = Date.now();
    const response = await drive(fetch(URL_, post));
    expect(response.status).toBe(503);
    expect(seen).toHaveLength(1);
    expect(Date.now() - start).toBe(0);
  });
});

describe('timeouts and the deadline', () => {
  it('aborts an attempt after attemptTimeoutMs and retries it with the same key', async () => {
    const { fetch, seen, retries } = setup(['hang', answer(201)], { attemptTimeoutMs: 1000 });
    const response = await drive(fetch(URL_, post));
    expect(response.status).toBe(201);
    expect(seen[0]?.signal.reason).toMatchObject({ name: 'TimeoutError' });
    expect(seen[1]?.key).toBe(seen[0]?.key);
    expect(retries[0]?.error).toMatchObject({ name: 'TimeoutError' });
  });

  it('ends the whole call with a TimeoutError at the deadline', async () => {
    const { fetch, seen } = setup(['hang', 'hang', 'hang', 'hang'], {
      deadlineMs: 2500,
      attemptTimeoutMs: 1000,
      random: () => 0,
    });
    const start = Date.now();
    const error = await drive(fetch(URL_, post)).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'TimeoutError' });
    expect(Date.now() - start).toBe(2500);
    expect(seen).toHaveLength(3);
    expect(retryInfo(error)?.attempts).toBe(3);
  });

  it('makes no retry whose wait would end after the deadline', async () => {
    const { fetch, seen } = setup([answer(503), answer(503), answer(201)], {
      deadlineMs: 1000,
      baseDelayMs: 800,
      random: () => 0.99,
    });
    const response = await drive(fetch(URL_, post));
    expect(response.status).toBe(503);
    expect(seen).toHaveLength(2);
  });

  it.each([2 ** 31, Number.MAX_SAFE_INTEGER])(
    'lets an attempt take its time under a deadlineMs of %d, beyond what one timer can hold',
    async (deadlineMs) => {
      const { fetch, seen } = setup([slowAnswer(60_000, answer(201))], { deadlineMs });
      const start = Date.now();
      expect((await drive(fetch(URL_, post))).status).toBe(201);
      expect(seen).toHaveLength(1);
      expect(Date.now() - start).toBe(60_000);
    },
  );

  it('aborts at a deadline beyond 2^31-1 ms exactly when it ends', async () => {
    const deadlineMs = 2 ** 31 + 1000;
    const { fetch, seen } = setup(['hang', answer(201)], { deadlineMs });
    const start = Date.now();
    const error = await drive(fetch(URL_, post)).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'TimeoutError' });
    expect(Date.now() - start).toBe(deadlineMs);
    expect(seen).toHaveLength(1);
  });

  it('has no deadline with deadlineMs: Infinity', async () => {
    const { fetch, seen } = setup([answer(503, { 'retry-after': '3600' }), answer(201)], {
      deadlineMs: Number.POSITIVE_INFINITY,
    });
    const start = Date.now();
    expect((await drive(fetch(URL_, post))).status).toBe(201);
    expect(seen).toHaveLength(2);
    expect(Date.now() - start).toBe(3_600_000);
  });
});

describe('abort', () => {
  it('rejects before any attempt when the signal is already aborted', async () => {
    const { fetch, seen } = setup([answer(201)]);
    const reason = new Error('gone');
    await expect(drive(fetch(URL_, { ...post, signal: AbortSignal.abort(reason) }))).rejects.toBe(reason);
    expect(seen).toHaveLength(0);
  });

  it('does not retry an attempt the caller aborted', async () => {
    const controller = new AbortController();
    const { fetch, seen, retries } = setup(['hang', answer(201)]);
    const pending = fetch(URL_, { ...post, signal: controller.signal }).catch((e: unknown) => e);
    await flush();
    controller.abort(new Error('user left'));
    expect(await pending).toMatchObject({ message: 'user left' });
    await tick(60_000);
    expect(seen).toHaveLength(1);
    expect(retries).toEqual([]);
  });

  it('stops at once when aborted during the backoff wait', async () => {
    const controller = new AbortController();
    const { fetch, seen } = setup([answer(503, { 'retry-after': '10' }), answer(201)]);
    const pending = fetch(URL_, { ...post, signal: controller.signal }).catch((e: unknown) => e);
    await tick(10);
    const before = Date.now();
    controller.abort(new Error('stop'));
    expect(await pending).toMatchObject({ message: 'stop' });
    expect(Date.now()).toBe(before);
    await tick(60_000);
    expect(seen).toHaveLength(1);
  });

  it("honours a Request's own signal", async () => {
    const controller = new AbortController();
    const { fetch, seen } = setup([answer(503, { 'retry-after': '10' }), answer(201)]);
    const request = new Request(URL_, { ...post, signal: controller.signal });
    const pending = fetch(request).catch((e: unknown) => e);
    await tick(10);
    controller.abort(new Error('stop'));
    expect(await pending).toMatchObject({ message: 'stop' });
    expect(seen).toHaveLength(1);
  });

  it('keeps the caller signal linked to the returned response', async () => {
    const controller = new AbortController();
    const { fetch, seen } = setup([answer(200)]);
    await drive(fetch(URL_, { signal: controller.signal }));
    controller.abort();
    expect(seen[0]?.signal.aborted).toBe(true);
  });
});

describe('reporting', () => {
  it('tells onRetry what failed, how long it waits and which key it keeps', async () => {
    const error = networkError();
    const { fetch, seen, retries } = setup([error, answer(429, { 'retry-after': '1' }), answer(201)], {
      random: () => 0.5,
      baseDelayMs: 100,
    });
    await drive(fetch(URL_, post));
    const key = seen[0]?.key;
    expect(retries).toEqual([
      { attempt: 1, delayMs: 50, method: 'POST', url: URL_, idempotencyKey: key, error },
      {
        attempt: 2,
        delayMs: 1000,
        method: 'POST',
        url: URL_,
        idempotencyKey: key,
        response: expect.any(Response),
      },
    ]);
  });

  it('ignores an onRetry hook that throws', async () => {
    const { fetch, seen } = setup([answer(503), answer(201)], {
      onRetry: () => {
        throw new Error('broken logger');
      },
    });
    expect((await drive(fetch(URL_, post))).status).toBe(201);
    expect(seen).toHaveLength(2);
  });

  it('reports a replayed final response', async () => {
    const { fetch } = setup([networkError(), answer(201, { 'idempotent-replayed': 'true' })]);
    const response = await drive(fetch(URL_, post));
    expect(retryInfo(response)).toMatchObject({ attempts: 2, replayed: true });
    expect(retryInfo(response.clone())).toBeUndefined();
    expect(retryInfo(new Response())).toBeUndefined();
  });
});

describe('throwOnProblem', () => {
  const mismatch = () =>
    new Response(
      JSON.stringify({
        type: 'https://idem.dev/problems/key-mismatch',
        title: 'Idempotency-Key reused with a different request',
        status: 422,
        detail: 'this Idempotency-Key was already used with a different request',
        code: 'key_mismatch',
      }),
      { status: 422, headers: { 'content-type': 'application/problem+json' } },
    );

  it('resolves with a problem response by default', async () => {
    const { fetch } = setup([mismatch()]);
    expect((await drive(fetch(URL_, post))).status).toBe(422);
  });

  it('rejects with a typed ProblemError carrying the parsed problem', async () => {
    const { fetch } = setup([mismatch()], { throwOnProblem: true });
    const error = await drive(fetch(URL_, post)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProblemError);
    expect(isProblemError(error, 'key_mismatch')).toBe(true);
    const problem = error as ProblemError;
    expect(problem.status).toBe(422);
    expect(problem.problem?.detail).toBe('this Idempotency-Key was already used with a different request');
    expect(await problem.response.json()).toMatchObject({ code: 'key_mismatch' });
    expect(retryInfo(problem)?.attempts).toBe(1);
  });

  it('rejects with the last retryable response once the attempts run out', async () => {
    const { fetch } = setup([answer(503), answer(503)], { throwOnProblem: true, maxAttempts: 2 });
    const error = await drive(fetch(URL_, post)).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'ProblemError', status: 503, code: undefined });
    expect(retryInfo(error)?.attempts).toBe(2);
  });

  it('resolves with ok responses', async () => {
    const { fetch } = setup([answer(201)], { throwOnProblem: true });
    expect((await drive(fetch(URL_, post))).status).toBe(201);
  });
});

describe('options', () => {
  it('refuses maxAttempts below 1', () => {
    expect(() => createIdempotentFetch({ maxAttempts: 0 })).toThrow(/maxAttempts/);
  });

  it('refuses durations and sizes that are not numbers of at least 0', () => {
    for (const name of ['deadlineMs', 'attemptTimeoutMs'] as const) {
      for (const bad of [0, -1, Number.NaN]) {
        expect(() => createIdempotentFetch({ [name]: bad })).toThrow(
          new RegExp(`${name} must be a positive number`),
        );
      }
      expect(() => createIdempotentFetch({ [name]: Number.POSITIVE_INFINITY })).not.toThrow();
    }
    for (const name of ['baseDelayMs', 'maxDelayMs', 'maxBufferBytes'] as const) {
      for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
        expect(() => createIdempotentFetch({ [name]: bad })).toThrow(
          new RegExp(`${name} must be a finite number`),
        );
      }
      expect(() => createIdempotentFetch({ [name]: 0 })).not.toThrow();
    }
  });

  it('uses globalThis.fetch at call time by default', async () => {
    const server = scriptedFetch(answer(201));
    vi.stubGlobal('fetch', server.fetch);
    try {
      const response = await drive(createIdempotentFetch()(URL_, post));
      expect(response.status).toBe(201);
      expect(server.seen[0]?.key).toMatch(UUID);
    } finally {
      vi.unstubAllGlobals();
    }
  });
});
