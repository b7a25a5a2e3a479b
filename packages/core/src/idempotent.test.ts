// By path, not by name: a devDependency of core on @idem/memory would make the workspace graph cyclic
// (memory depends on core), which turbo refuses.
import { memoryStore } from '@idem/memory';
import { describe, expect, it, vi } from 'vitest';
import { IdempotencyError } from './errors.js';
import { DEFAULT_KEY_PREFIX, jobStorageKey, storageKey } from './hash.js';
import { idempotent, jsonSerializer, type ResultSerializer } from './idempotent.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

let counter = 0;
const uniqueId = () => `job-${++counter}-${Math.random().toString(36).slice(2)}`;

interface Payment {
  id: string;
  cents: number;
  tenant?: string;
}

describe('idempotent', () => {
  it('runs 100 concurrent calls with one key exactly once; the others get in_flight', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const fn = vi.fn(async (payment: Payment) => {
      await gate;
      return { charged: payment.cents };
    });
    const charge = idempotent(fn, { store: memoryStore(), key: (payment) => payment.id });
    const payment = { id: uniqueId(), cents: 1200 };
    let settled = 0;
    const calls = Array.from({ length: 100 }, () =>
      charge(payment).then(
        (value) => ({ value }),
        (error: unknown) => {
          settled++;
          return { error };
        },
      ),
    );
    // The one running call is held until every other call has had its answer.
    await vi.waitFor(() => expect(settled).toBe(99), { timeout: 5_000, interval: 5 });
    release();
    const results = await Promise.all(calls);
    expect(fn).toHaveBeenCalledTimes(1);
    expect(results.filter((result) => 'value' in result)).toEqual([{ value: { charged: 1200 } }]);
    for (const result of results) {
      if ('error' in result) {
        expect(result.error).toBeInstanceOf(IdempotencyError);
        expect(result.error).toMatchObject({ code: 'in_flight' });
      }
    }
    expect(await charge(payment)).toEqual({ charged: 1200 });
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('gives 100 concurrent calls the one result in wait mode', async () => {
    const fn = vi.fn(async (payment: Payment) => {
      await sleep(50);
      return { charged: payment.cents };
    });
    const charge = idempotent(fn, {
      store: memoryStore(),
      key: (payment) => payment.id,
      wait: { timeoutMs: 5_000, pollMs: 10 },
    });
    const payment = { id: uniqueId(), cents: 700 };
    const results = await Promise.all(Array.from({ length: 100 }, () => charge(payment)));
    expect(fn).toHaveBeenCalledTimes(1);
    expect(results).toEqual(Array.from({ length: 100 }, () => ({ charged: 700 })));
  });

  it('returns the stored result to a repeat, as a JSON round trip', async () => {
    const fn = vi.fn(async (id: string) => ({
      id,
      at: new Date(0),
      list: [1, 'two', null],
      skipped: undefined,
    }));
    const job = idempotent(fn, { store: memoryStore(), key: (id) => id });
    const id = uniqueId();
    const first = await job(id);
    expect(first.at).toBeInstanceOf(Date);
    const repeat = await job(id);
    expect(repeat).toEqual({ id, at: '1970-01-01T00:00:00.000Z', list: [1, 'two', null] });
    expect('skipped' in repeat).toBe(false);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it.each([
    ['undefined', undefined],
    ['null', null],
    ['zero', 0],
    ['an empty string', ''],
    ['false', false],
  ])('stores and replays %s', async (_, value) => {
    const fn = vi.fn(async (_id: string) => value);
    const job = idempotent(fn, { store: memoryStore(), key: (id) => id });
    const id = uniqueId();
    expect(await job(id)).toBe(value);
    expect(await job(id)).toBe(value);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('refuses a repeat with other arguments as key_mismatch', async () => {
    const fn = vi.fn(async (payment: Payment) => payment.cents);
    const charge = idempotent(fn, { store: memoryStore(), key: (payment) => payment.id });
    const id = uniqueId();
    await charge({ id, cents: 100 });
    await expect(charge({ id, cents: 200 })).rejects.toMatchObject({ code: 'key_mismatch' });
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('fingerprints arguments canonically, and by a chosen part when asked', async () => {
    const store = memoryStore();
    const fn = vi.fn(async (order: Record<string, unknown>) => Object.keys(order).length);
    const byAll = idempotent(fn, { store, key: (order) => String(order['id']) });
    const id = uniqueId();
    await byAll({ id, a: 1, b: 2 });
    // Same members in another order: the same call.
    expect(await byAll({ b: 2, id, a: 1 })).toBe(3);
    expect(fn).toHaveBeenCalledTimes(1);

    const byAmount = idempotent(fn, {
      store,
      prefix: 'idem:amount:',
      key: (order) => String(order['id']),
      fingerprint: (order) => order['amount'],
    });
    await byAmount({ id, amount: 5, note: 'first' });
    expect(await byAmount({ id, amount: 5, note: 'a different note' })).toBe(3);
    await expect(byAmount({ id, amount: 6, note: 'first' })).rejects.toMatchObject({ code: 'key_mismatch' });
  });

  it('keeps scopes apart: the same key in two scopes is two operations', async () => {
    const fn = vi.fn(async (payment: Payment) => `${payment.tenant}:${payment.cents}`);
    const charge = idempotent(fn, {
      store: memoryStore(),
      key: (payment) => payment.id,
      scope: (payment) => payment.tenant ?? '',
    });
    const id = uniqueId();
    expect(await charge({ id, cents: 1, tenant: 'acme' })).toBe('acme:1');
    expect(await charge({ id, cents: 2, tenant: 'globex' })).toBe('globex:2');
    expect(await charge({ id, cents: 1, tenant: 'acme' })).toBe('acme:1');
    expect(fn).toHaveBeenCalledTimes(2);
  });

  it('keys the store by prefix + hash(job, scope, key), never by the raw key', async () => {
    const store = memoryStore();
    const job = idempotent(async (_id: string) => 'x', {
      store,
      key: (id) => id,
      scope: () => 'tenant-1',
      prefix: 'jobs:',
    });
    const id = uniqueId();
    await job(id);
    expect(await store.get(id)).toBeNull();
    expect(await store.get(await jobStorageKey(id, 'tenant-1', 'jobs:'))).toMatchObject({
      state: 'completed',
    });
    expect(await store.get(await jobStorageKey(id, '', 'jobs:'))).toBeNull();
  });

  it('stores results through a custom serializer', async () => {
    const serializer: ResultSerializer<Map<string, number>> = {
      serialize: (map) => new TextEncoder().encode(JSON.stringify([...map])),
      deserialize: (bytes) => new Map(JSON.parse(new TextDecoder().decode(bytes)) as Array<[string, number]>),
    };
    const fn = vi.fn(async (_id: string) => new Map([['a', 1]]));
    const job = idempotent(fn, { store: memoryStore(), key: (id) => id, serializer });
    const id = uniqueId();
    await job(id);
    const repeat = await job(id);
    expect(repeat).toBeInstanceOf(Map);
    expect([...repeat]).toEqual([['a', 1]]);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('runs again on a repeat after the function threw', async () => {
    let attempt = 0;
    const fn = vi.fn(async (_id: string) => {
      attempt++;
      if (attempt === 1) throw new Error('gateway timeout');
      return `attempt ${attempt}`;
    });
    const job = idempotent(fn, { store: memoryStore(), key: (id) => id });
    const id = uniqueId();
    await expect(job(id)).rejects.toThrow('gateway timeout');
    expect(await job(id)).toBe('attempt 2');
    expect(await job(id)).toBe('attempt 2');
    expect(fn).toHaveBeenCalledTimes(2);
  });

  it('reports a result it cannot serialise as result_invalid, and never runs the function again', async () => {
    const fn = vi.fn(async (_id: string) => ({ big: 1n }));
    const store = memoryStore();
    const job = idempotent(fn, { store, key: (id) => id });
    const id = uniqueId();
    await expect(job(id)).rejects.toMatchObject({
      code: 'result_invalid',
      message: expect.stringMatching(/could not be serialised.*does not run the function again/),
      cause: expect.any(TypeError),
    });
    await expect(job(id)).rejects.toMatchObject({
      code: 'result_invalid',
      message: expect.stringMatching(/ran before.*does not run again/),
    });
    expect(fn).toHaveBeenCalledTimes(1);
    expect(await store.get(await jobStorageKey(id, '', DEFAULT_KEY_PREFIX))).toMatchObject({
      state: 'completed',
    });
  });

  it('tells a repeat that the result was too large for the store to keep, and never runs the function again', async () => {
    const fn = vi.fn(async (_id: string) => ({ report: 'x'.repeat(500) }));
    const job = idempotent(fn, { store: memoryStore({ maxBytes: 100 }), key: (id) => id });
    const id = uniqueId();
    expect(await job(id)).toEqual({ report: 'x'.repeat(500) });
    await expect(job(id)).rejects.toMatchObject({
      code: 'result_invalid',
      message: expect.stringMatching(/ran before.*too large for the store to keep.*does not run again/),
      details: { reason: 'too_large' },
    });
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it("keeps jobs and HTTP requests apart in a shared store: a request cannot claim a job's key", async () => {
    const store = memoryStore();
    const id = uniqueId();
    // What an HTTP request without credentials (scope '') and with Idempotency-Key `id` claims.
    const http = await storageKey(id, '', DEFAULT_KEY_PREFIX);
    expect(
      await store.acquire(http, { fingerprint: 'http', token: 't', leaseMs: 10_000, ttlMs: 60_000 }),
    ).toEqual({
      acquired: true,
    });
    const fn = vi.fn(async (_id: string) => 'charged');
    expect(await idempotent(fn, { store, key: (key) => key })(id)).toBe('charged');
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('reports a stored result it cannot read back as result_invalid', async () => {
    const serializer: ResultSerializer<string> = {
      serialize: (value) => new TextEncoder().encode(value),
      deserialize: () => {
        throw new Error('unreadable');
      },
    };
    const job = idempotent(async (_id: string) => 'x', { store: memoryStore(), key: (id) => id, serializer });
    const id = uniqueId();
    expect(await job(id)).toBe('x');
    const error = await job(id).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'result_invalid', cause: { message: 'unreadable' } });
  });

  it('refuses an empty key', async () => {
    const job = idempotent(async () => 'x', { store: memoryStore(), key: () => '' });
    await expect(job()).rejects.toMatchObject({ code: 'key_invalid' });
  });

  it('has a JSON serializer that keeps undefined as an empty body', () => {
    expect(jsonSerializer.serialize(undefined)).toEqual(new Uint8Array(0));
    expect(jsonSerializer.deserialize(new Uint8Array(0))).toBeUndefined();
    expect(jsonSerializer.deserialize(jsonSerializer.serialize({ a: [1] }))).toEqual({ a: [1] });
  });
});
