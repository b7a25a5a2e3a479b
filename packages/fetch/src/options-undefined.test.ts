import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createIdempotentFetch, type IdempotentFetchOptions } from './idempotent-fetch.js';
import { retryInfo } from './retry-info.js';
import { answer, drive, scriptedFetch, useFakeClock } from './scripted-fetch.js';

// Under `exactOptionalPropertyTypes` (on in this repo), every optional option must accept an explicit
// `undefined`, meaning the default: `tsc` checks the types below, the tests that it is the default.

/** An option the caller left unset, typed the way user code has it (`config.retries` of `retries?: number`). */
const unset = <T>(): T | undefined => undefined;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

beforeEach(useFakeClock);
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

describe('createIdempotentFetch with every option undefined', () => {
  it('uses the global fetch, keys a POST, retries it 4 times in all with its key, and resolves', async () => {
    const server = scriptedFetch(answer(503), answer(503), answer(503), answer(503), answer(201));
    vi.stubGlobal('fetch', server.fetch);
    const options: IdempotentFetchOptions = {
      fetch: undefined,
      keyMethods: unset<readonly string[]>(),
      idempotentMethods: unset<readonly string[]>(),
      generateKey: unset<() => string>(),
      maxAttempts: unset<number>(),
      deadlineMs: unset<number>(),
      attemptTimeoutMs: unset<number>(),
      baseDelayMs: unset<number>(),
      maxDelayMs: unset<number>(),
      bufferStreams: unset<boolean>(),
      maxBufferBytes: unset<number>(),
      throwOnProblem: unset<boolean>(),
      onRetry: undefined,
      random: unset<() => number>(),
    };
    const fetch = createIdempotentFetch(options);

    const response = await drive(fetch('https://api.test/orders', { method: 'POST', body: '{}' }));
    expect(response.status).toBe(503); // maxAttempts 4, throwOnProblem false
    expect(server.seen).toHaveLength(4);
    expect(server.seen[0]?.key).toMatch(UUID);
    expect(new Set(server.seen.map((seen) => seen.key)).size).toBe(1);
    expect(retryInfo(response)).toMatchObject({ attempts: 4, replayed: false });

    // keyMethods (POST, PATCH): a GET is sent without a key.
    const get = await drive(fetch('https://api.test/orders'));
    expect(get.status).toBe(201);
    expect(server.seen[4]).toMatchObject({ method: 'GET', key: null });
  });
});
