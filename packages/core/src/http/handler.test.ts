import { memoryStore } from '@idem/memory';
import { describe, expect, it, vi } from 'vitest';
import { createIdempotencyHandler } from './handler.js';
import type { CapturedResponse, HttpRequest } from './types.js';

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
