import { memoryStore } from '@idem/memory';
import { describe, expect, it, vi } from 'vitest';
import type { IdempotencyEvent } from '../events.js';
import { createIdempotencyHandler } from './handler.js';
import type { CapturedResponse, HttpRequest, IdempotencyContext } from './types.js';

const encoder = new TextEncoder();

function post(key: string): HttpRequest {
  const body = encoder.encode('{"item":"book"}');
  const headers: Record<string, string> = { 'idempotency-key': key, 'content-type': 'application/json' };
  return { method: 'POST', path: '/orders', header: (name) => headers[name], body: () => body };
}

let counter = 0;

describe('createIdempotencyHandler: which statuses are stored by default', () => {
  const layer = createIdempotencyHandler({ store: memoryStore({ cleanupIntervalMs: 0 }) });

  /** Two requests with one key; how many times the route ran. */
  async function runsFor(status: number): Promise<number> {
    const key = `status-${status}-${++counter}`;
    const route = vi.fn(
      async (): Promise<CapturedResponse> => ({ status, headers: [], body: encoder.encode('{}') }),
    );
    await layer.handle(post(key), route);
    await layer.handle(post(key), route);
    return route.mock.calls.length;
  }

  it('stores 2xx and 4xx: a retry is replayed', async () => {
    for (const status of [200, 201, 204, 205, 301, 400, 404, 409, 422]) expect(await runsFor(status)).toBe(1);
  });

  it('does not store 408, 429 and 5xx, which ask for a later retry: the retry runs again', async () => {
    for (const status of [408, 429, 500, 502, 503]) expect(await runsFor(status)).toBe(2);
  });

  it('follows storeStatus when it is given', async () => {
    const storing = createIdempotencyHandler({
      store: memoryStore({ cleanupIntervalMs: 0 }),
      storeStatus: (status) => status === 429,
    });
    const route = vi.fn(
      async (): Promise<CapturedResponse> => ({ status: 429, headers: [], body: encoder.encode('{}') }),
    );
    const key = `custom-${++counter}`;
    await storing.handle(post(key), route);
    expect(await storing.handle(post(key), route)).toMatchObject({ action: 'respond', replayed: true });
    expect(route).toHaveBeenCalledTimes(1);
  });
});

describe('createIdempotencyHandler: a stored response that cannot be sent', () => {
  it('answers 500 record_corrupt without saying where, and tells onEvent what is wrong', async () => {
    const store = memoryStore({ cleanupIntervalMs: 0 });
    const events: IdempotencyEvent[] = [];
    const layer = createIdempotencyHandler({ store, onEvent: (event) => events.push(event) });
    let context: IdempotencyContext | undefined;
    const route = vi.fn(async (given: IdempotencyContext): Promise<CapturedResponse> => {
      context = given;
      return { status: 201, headers: [['x-order', '1']], body: encoder.encode('{}') };
    });
    await layer.handle(post('forged'), route);
    // The record as a compromised store (or another writer) could hold it: a header with a line break.
    const { storageKey, fingerprint } = context!;
    await store.delete(storageKey);
    await store.acquire(storageKey, { fingerprint, token: 't', leaseMs: 10_000, ttlMs: 60_000 });
    const forged = {
      status: 201,
      headers: [['x-order', '1\r\nset-cookie: a=b']] as const,
      body: new Uint8Array(),
    };
    expect(await store.complete(storageKey, 't', forged, 60_000)).toBe(true);

    const result = await layer.handle(post('forged'), route);
    expect(route).toHaveBeenCalledTimes(1);
    if (result.action !== 'respond') throw new Error(`expected an answer, got ${result.action}`);
    expect(result).toMatchObject({ replayed: false, response: { status: 500 } });
    const text = new TextDecoder().decode(result.response.body);
    expect(JSON.parse(text)).toMatchObject({
      code: 'record_corrupt',
      detail: 'the stored record of this Idempotency-Key cannot be read; the request did not run',
    });
    expect(text).not.toContain(storageKey);
    expect(text).not.toContain('memory');
    expect(events.at(-1)).toMatchObject({
      type: 'record_corrupt',
      key: storageKey,
      store: 'memory',
      error: {
        code: 'record_corrupt',
        message: expect.stringContaining('a header that cannot be sent'),
        details: { key: storageKey, store: 'memory' },
      },
    });
  });
});
