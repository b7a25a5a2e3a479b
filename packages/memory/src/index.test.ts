import {
  type Claim,
  type IdempotencyRecord,
  type StateEvent,
  type StoredResponse,
  transition,
} from '@idem/core';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type MemoryStore, type MemoryStoreOptions, memoryStore } from './index.js';

const SECOND = 1_000;
const encode = (text: string) => new TextEncoder().encode(text);

let tokens = 0;
function claim(fingerprint = 'fp', overrides: Partial<Claim> = {}): Claim {
  tokens++;
  return { fingerprint, token: `t${tokens}`, leaseMs: 10 * SECOND, ttlMs: 60 * SECOND, ...overrides };
}

function response(text = 'ok'): StoredResponse {
  return { status: 201, headers: [['content-type', 'text/plain']], body: encode(text) };
}

/** A store on a clock the test moves by hand, without the sweep timer. */
function clocked(options: MemoryStoreOptions = {}): { store: MemoryStore; clock: { now: number } } {
  const clock = { now: 1_000_000 };
  const store = memoryStore({ cleanupIntervalMs: 0, now: () => clock.now, ...options });
  return { store, clock };
}

async function completed(store: MemoryStore, key: string, ttlMs = 60 * SECOND): Promise<Claim> {
  const c = claim('fp', { ttlMs });
  expect(await store.acquire(key, c)).toEqual({ acquired: true });
  expect(await store.complete(key, c.token, response(key), ttlMs)).toBe(true);
  return c;
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('clock', () => {
  it('takes leases and expiry from the injected clock', async () => {
    const { store, clock } = clocked();
    const first = claim('fp', { leaseMs: 5 * SECOND, ttlMs: 20 * SECOND });
    await store.acquire('k', first);
    expect(await store.get('k')).toMatchObject({
      leaseExpiresAt: clock.now + 5 * SECOND,
      expiresAt: clock.now + 20 * SECOND,
    });

    clock.now += 5 * SECOND - 1;
    expect((await store.acquire('k', claim())).acquired).toBe(false);
    clock.now += 1;
    const second = claim();
    expect(await store.acquire('k', second)).toEqual({ acquired: true });
    expect(await store.get('k')).toMatchObject({ state: 'in_flight', token: second.token });
  });

  it('treats a record as absent from its expiry on, and drops it when touched', async () => {
    const { store, clock } = clocked();
    await completed(store, 'k', 10 * SECOND);
    clock.now += 10 * SECOND - 1;
    expect((await store.get('k'))?.state).toBe('completed');
    clock.now += 1;
    expect(store.size).toBe(1);
    expect(await store.get('k')).toBeNull();
    expect(store.size).toBe(0);
    expect(await store.acquire('k', claim('another-fp'))).toEqual({ acquired: true });
  });

  it('refuses writes to an expired in-flight record even with its token', async () => {
    const { store, clock } = clocked();
    const c = claim('fp', { ttlMs: 10 * SECOND });
    await store.acquire('k', c);
    clock.now += 10 * SECOND;
    expect(await store.extend('k', c.token, SECOND)).toBe(false);
    expect(await store.complete('k', c.token, response(), SECOND)).toBe(false);
    expect(await store.release('k', c.token, SECOND)).toBe(false);
    expect(store.size).toBe(0);
  });

  it('extends the lease but not the expiry', async () => {
    const { store, clock } = clocked();
    const c = claim('fp', { leaseMs: SECOND, ttlMs: 10 * SECOND });
    await store.acquire('k', c);
    const expiresAt = clock.now + 10 * SECOND;
    clock.now += 800;
    expect(await store.extend('k', c.token, 3 * SECOND)).toBe(true);
    expect(await store.get('k')).toMatchObject({ leaseExpiresAt: clock.now + 3 * SECOND, expiresAt });
  });
});

describe('cleanup', () => {
  it('sweeps expired records of every ttl and keeps live ones', async () => {
    const { store, clock } = clocked();
    await completed(store, 'short-1', SECOND);
    await completed(store, 'long', 60 * SECOND);
    await completed(store, 'short-2', SECOND);
    await store.acquire('in-flight-short', claim('fp', { ttlMs: 2 * SECOND }));
    clock.now += 2 * SECOND;
    store.sweep();
    expect(store.size).toBe(1);
    expect((await store.get('long'))?.state).toBe('completed');
  });

  it('runs the sweep on a timer started by the first write, which does not keep the process alive', async () => {
    const setIntervalSpy = vi.spyOn(globalThis, 'setInterval');
    const clearIntervalSpy = vi.spyOn(globalThis, 'clearInterval');
    const clock = { now: 0 };
    const store = memoryStore({ cleanupIntervalMs: 20, now: () => clock.now });
    try {
      expect(setIntervalSpy).not.toHaveBeenCalled();
      await completed(store, 'a', SECOND);
      await completed(store, 'b', SECOND);
      expect(setIntervalSpy).toHaveBeenCalledTimes(1);
      expect(setIntervalSpy.mock.calls[0]![1]).toBe(20);
      const timer = setIntervalSpy.mock.results[0]!.value as NodeJS.Timeout;
      expect(timer.hasRef()).toBe(false);

      clock.now = 2 * SECOND;
      expect(store.size).toBe(2);
      await vi.waitFor(() => expect(store.size).toBe(0), { timeout: 2_000, interval: 10 });

      store.close();
      expect(clearIntervalSpy).toHaveBeenCalledWith(timer);
      await completed(store, 'c');
      expect(setIntervalSpy).toHaveBeenCalledTimes(1);
    } finally {
      store.close();
    }
  });

  it('sweeps where the runtime has no WeakRef (Workers before 2025 compatibility dates)', async () => {
    vi.stubGlobal('WeakRef', undefined);
    const clock = { now: 0 };
    const store = memoryStore({ cleanupIntervalMs: 20, now: () => clock.now });
    try {
      await completed(store, 'a', SECOND);
      clock.now = 2 * SECOND;
      await vi.waitFor(() => expect(store.size).toBe(0), { timeout: 2_000, interval: 10 });
    } finally {
      store.close();
      vi.unstubAllGlobals();
    }
  });

  it('starts no timer when the sweep is off', async () => {
    const setIntervalSpy = vi.spyOn(globalThis, 'setInterval');
    const store = memoryStore({ cleanupIntervalMs: 0 });
    await completed(store, 'a');
    expect(setIntervalSpy).not.toHaveBeenCalled();
  });
});

describe('maxEntries', () => {
  it('evicts the oldest settled record when a new key exceeds the bound', async () => {
    const { store } = clocked({ maxEntries: 3 });
    for (const key of ['a', 'b', 'c']) await completed(store, key);
    await completed(store, 'd');
    expect(store.size).toBe(3);
    expect(await store.get('a')).toBeNull();
    for (const key of ['b', 'c', 'd']) expect((await store.get(key))?.state).toBe('completed');
  });

  it('orders settled records by when they settled, not when they were claimed', async () => {
    const { store } = clocked({ maxEntries: 2 });
    const a = claim();
    const b = claim();
    await store.acquire('a', a);
    await store.acquire('b', b);
    await store.complete('b', b.token, response(), 60 * SECOND);
    await store.release('a', a.token, 60 * SECOND);
    await store.acquire('c', claim());
    expect(await store.get('b')).toBeNull();
    expect(await store.get('a')).toMatchObject({ state: 'failed' });
  });

  it('evicts expired records before older live ones', async () => {
    const { store, clock } = clocked({ maxEntries: 3 });
    await completed(store, 'old-long', 60 * SECOND);
    await completed(store, 'newer-short', SECOND);
    await completed(store, 'newest-long', 60 * SECOND);
    clock.now += SECOND;
    await store.acquire('new', claim());
    expect(store.size).toBe(3);
    expect((await store.get('old-long'))?.state).toBe('completed');
    expect((await store.get('newest-long'))?.state).toBe('completed');
    expect(await store.get('new')).not.toBeNull();
  });

  it('evicts an expired in-flight record like any expired one', async () => {
    const { store, clock } = clocked({ maxEntries: 2 });
    await store.acquire('stale', claim('fp', { ttlMs: SECOND }));
    await completed(store, 'done');
    clock.now += SECOND;
    await store.acquire('new', claim());
    expect(store.size).toBe(2);
    expect((await store.get('done'))?.state).toBe('completed');
  });

  it('never evicts an in-flight record: it evicts a newer settled one, or exceeds the bound', async () => {
    const { store } = clocked({ maxEntries: 2 });
    const a = claim();
    await store.acquire('a', a);
    await completed(store, 'b');
    await store.acquire('c', claim());
    expect(await store.get('b')).toBeNull();
    expect(store.size).toBe(2);

    // Only in-flight records left: the claim still succeeds and the bound is exceeded.
    expect(await store.acquire('d', claim())).toEqual({ acquired: true });
    expect(store.size).toBe(3);
    for (const key of ['a', 'c', 'd']) expect((await store.get(key))?.state).toBe('in_flight');

    // Once records settle, the next new key brings the store back under the bound.
    await store.complete('a', a.token, response(), 60 * SECOND);
    await store.acquire('e', claim());
    expect(await store.get('a')).toBeNull();
    expect(store.size).toBe(3);
  });

  it('does not evict when a claim re-takes an existing key', async () => {
    const { store, clock } = clocked({ maxEntries: 2 });
    const a = claim('fp', { leaseMs: SECOND });
    await store.acquire('a', a);
    await completed(store, 'b');
    clock.now += SECOND;
    expect(await store.acquire('a', claim())).toEqual({ acquired: true });
    expect((await store.get('b'))?.state).toBe('completed');
  });

  it('forgets an evicted record entirely: its key is free for another fingerprint', async () => {
    const { store } = clocked({ maxEntries: 1 });
    await completed(store, 'a');
    await completed(store, 'b');
    expect(await store.acquire('a', claim('other'))).toEqual({ acquired: true });
  });

  it('refuses a bound that is not a positive integer', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      expect(() => memoryStore({ maxEntries: bad })).toThrow(
        '[idem] [memory] maxEntries must be a positive integer (or Infinity)',
      );
      expect(() => memoryStore({ maxBytes: bad })).toThrow(
        '[idem] [memory] maxBytes must be a positive integer (or Infinity)',
      );
    }
    expect(() => memoryStore({ cleanupIntervalMs: -1 })).toThrow(/^\[idem\] \[memory\] cleanupIntervalMs/);
    expect(() => memoryStore({ maxEntries: Number.POSITIVE_INFINITY })).not.toThrow();
    expect(() => memoryStore({ maxBytes: Number.POSITIVE_INFINITY })).not.toThrow();
  });

  it('keeps 100 000 records by default', async () => {
    const { store } = clocked();
    for (let i = 0; i <= 100_000; i++) {
      const c = claim();
      await store.acquire(`k${i}`, c);
      await store.release(`k${i}`, c.token, 60 * SECOND);
    }
    expect(store.size).toBe(100_000);
    expect(await store.get('k0')).toBeNull();
    expect((await store.get('k1'))?.state).toBe('failed');
  });

  it('keeps every record with Infinity', async () => {
    const { store } = clocked({ maxEntries: Number.POSITIVE_INFINITY });
    for (let i = 0; i <= 100_000; i++) await store.acquire(`k${i}`, claim());
    expect(store.size).toBe(100_001);
  });
});

describe('maxBytes', () => {
  /** A response of `bodyBytes` body bytes and 22 header characters (`content-type`, `text/plain`). */
  const sized = (bodyBytes: number): StoredResponse => ({
    status: 201,
    headers: [['content-type', 'text/plain']],
    body: new Uint8Array(bodyBytes),
  });
  async function completeWith(store: MemoryStore, key: string, stored: StoredResponse): Promise<void> {
    const c = claim();
    expect(await store.acquire(key, c)).toEqual({ acquired: true });
    expect(await store.complete(key, c.token, stored, 60 * SECOND)).toBe(true);
  }

  it('evicts the oldest settled records when a completion takes the store over the bound', async () => {
    const { store } = clocked({ maxBytes: 300 });
    await completeWith(store, 'a', sized(78)); // 100 bytes with its headers
    await completeWith(store, 'b', sized(78));
    await completeWith(store, 'c', sized(78));
    expect(store.size).toBe(3);
    await completeWith(store, 'd', sized(178));
    expect(await store.get('a')).toBeNull();
    expect(await store.get('b')).toBeNull();
    for (const key of ['c', 'd']) expect((await store.get(key))?.state).toBe('completed');
    expect((await store.get('d'))?.response?.body.byteLength).toBe(178);
  });

  it('never evicts the record just completed, even with more in-flight records than maxEntries', async () => {
    const { store } = clocked({ maxEntries: 2, maxBytes: 100 });
    const claims = ['a', 'b', 'c', 'd'].map((key) => [key, claim()] as const);
    for (const [key, c] of claims) await store.acquire(key, c);
    // Four in flight over a bound of two (allowed); each completion then takes the bytes over 100.
    expect(await store.complete('a', claims[0]![1].token, sized(38), 60 * SECOND)).toBe(true);
    expect(await store.complete('b', claims[1]![1].token, sized(38), 60 * SECOND)).toBe(true);
    expect(await store.get('a')).toBeNull();
    expect((await store.get('b'))?.state).toBe('completed');
    expect(await store.acquire('b', claim())).toMatchObject({ acquired: false });
  });

  it('never evicts an in-flight record for bytes', async () => {
    const { store } = clocked({ maxBytes: 100 });
    const running = claim();
    await store.acquire('running', running);
    await completeWith(store, 'a', sized(78));
    await completeWith(store, 'b', sized(78));
    expect(await store.get('a')).toBeNull();
    expect((await store.get('running'))?.state).toBe('in_flight');
    expect((await store.get('b'))?.response?.body.byteLength).toBe(78);
  });

  it('stores a response larger than the bound without its body, so that a retry is told instead of running again', async () => {
    const { store } = clocked({ maxBytes: 100 });
    await completeWith(store, 'small', sized(10));
    const c = claim();
    await store.acquire('big', c);
    expect(await store.complete('big', c.token, sized(79), 60 * SECOND)).toBe(true);
    const record = await store.get('big');
    expect(record?.state).toBe('completed');
    expect(record?.response).toEqual({
      status: 201,
      headers: [['content-type', 'text/plain']],
      body: new Uint8Array(0),
      omitted: 'too_large',
    });
    expect(await store.acquire('big', claim())).toMatchObject({
      acquired: false,
      record: { state: 'completed' },
    });
    // Its headers count: 'small' (32) and 'big' (22) fit together.
    expect((await store.get('small'))?.response?.body.byteLength).toBe(10);
  });

  it('keeps a response whose headers alone are over the bound without its headers either, rather than not at all', async () => {
    const { store } = clocked({ maxBytes: 50 });
    const c = claim();
    await store.acquire('headers', c);
    const stored = { status: 201, headers: [['x-long', 'v'.repeat(70)] as const], body: encode('{}') };
    expect(await store.complete('headers', c.token, stored, 60 * SECOND)).toBe(true);
    expect(store.size).toBe(1);
    expect((await store.get('headers'))?.response).toEqual({
      status: 201,
      headers: [],
      body: new Uint8Array(0),
      omitted: 'too_large',
    });
    // It counts nothing, so it evicts nothing: a small response still fits beside it.
    await completeWith(store, 'small', sized(10));
    expect((await store.get('headers'))?.state).toBe('completed');
  });

  it('frees the bytes of records deleted, released, expired or cleared', async () => {
    const { store, clock } = clocked({ maxBytes: 200 });
    await completeWith(store, 'kept', sized(78));
    await completeWith(store, 'deleted', sized(78));
    await store.delete('deleted');
    await completeWith(store, 'after-delete', sized(78));
    expect((await store.get('kept'))?.state).toBe('completed');

    await completeWith(store, 'expiring', sized(0));
    clock.now += 60 * SECOND;
    store.sweep();
    await completeWith(store, 'x', sized(78));
    await completeWith(store, 'y', sized(78));
    expect(store.size).toBe(2);
    store.clear();
    await completeWith(store, 'p', sized(78));
    await completeWith(store, 'q', sized(78));
    expect(store.size).toBe(2);
  });

  it('keeps 64 MiB of responses by default', async () => {
    const { store } = clocked();
    await completeWith(store, 'a', sized(32 * 1024 * 1024));
    await completeWith(store, 'b', sized(32 * 1024 * 1024 - 100));
    expect((await store.get('a'))?.state).toBe('completed');
    await completeWith(store, 'c', sized(100));
    // States, not records: a failed comparison would print 32 MiB of body.
    expect((await store.get('a'))?.state).toBeUndefined();
    expect((await store.get('b'))?.response?.body.byteLength).toBe(32 * 1024 * 1024 - 100);
    const big = claim();
    await store.acquire('too-big', big);
    await store.complete('too-big', big.token, sized(64 * 1024 * 1024), 60 * SECOND);
    expect((await store.get('too-big'))?.response?.omitted).toBe('too_large');
  });
});

describe('copies', () => {
  it('keeps stored bytes and headers when the caller mutates what it passed in', async () => {
    const { store } = clocked();
    const c = claim();
    await store.acquire('k', c);
    const headers: Array<[string, string]> = [['x-a', '1']];
    const body = encode('original');
    await store.complete('k', c.token, { status: 200, headers, body }, 60 * SECOND);
    body.fill(0);
    headers[0]![1] = 'changed';
    headers.push(['x-b', '2']);
    const stored = (await store.get('k'))!.response!;
    expect(new TextDecoder().decode(stored.body)).toBe('original');
    expect(stored.headers).toEqual([['x-a', '1']]);
  });

  it('hands out bodies that do not share bytes with the store, from get and from acquire', async () => {
    const { store } = clocked();
    await completed(store, 'k');
    const fromGet = (await store.get('k'))!.response!;
    fromGet.body.fill(0);
    const blocked = await store.acquire('k', claim());
    if (blocked.acquired) throw new Error('expected the completed record');
    expect(new TextDecoder().decode(blocked.record.response!.body)).toBe('k');
    blocked.record.response!.body.fill(0);
    blocked.record.state = 'failed';
    const again = (await store.get('k'))!;
    expect(again.state).toBe('completed');
    expect(new TextDecoder().decode(again.response!.body)).toBe('k');
  });

  it('does not let callers change stored headers through a returned record', async () => {
    const { store } = clocked();
    await completed(store, 'k');
    const headers = (await store.get('k'))!.response!.headers as Array<[string, string]>;
    expect(() => headers.push(['x', 'y'])).toThrow(TypeError);
    expect(() => {
      headers[0]![1] = 'changed';
    }).toThrow(TypeError);
    expect((await store.get('k'))!.response!.headers).toEqual([['content-type', 'text/plain']]);
  });

  it('stores a Node Buffer as a plain copy of its bytes only', async () => {
    const { store } = clocked();
    const c = claim();
    await store.acquire('k', c);
    const pool = Buffer.from('xxhelloyy');
    await store.complete('k', c.token, { status: 200, headers: [], body: pool.subarray(2, 7) }, 60 * SECOND);
    pool.fill(0);
    const body = (await store.get('k'))!.response!.body;
    expect(body.constructor).toBe(Uint8Array);
    expect(body.byteLength).toBe(5);
    expect(body.buffer.byteLength).toBe(5);
    expect(new TextDecoder().decode(body)).toBe('hello');
  });

  it('keeps the omitted-body marker and leaves it off otherwise', async () => {
    const { store } = clocked();
    const c = claim();
    await store.acquire('k', c);
    await store.complete(
      'k',
      c.token,
      { status: 200, headers: [], body: new Uint8Array(0), omitted: 'streaming' },
      60 * SECOND,
    );
    expect((await store.get('k'))!.response!.omitted).toBe('streaming');
    await completed(store, 'plain');
    expect((await store.get('plain'))!.response).not.toHaveProperty('omitted');
  });
});

describe('housekeeping', () => {
  it('clears every record and reports its size and name', async () => {
    const { store } = clocked({ name: 'embedded' });
    expect(store.name).toBe('embedded');
    await completed(store, 'a');
    await store.acquire('b', claim());
    expect(store.size).toBe(2);
    store.clear();
    expect(store.size).toBe(0);
    expect(await store.get('a')).toBeNull();
    expect(await store.acquire('b', claim('other'))).toEqual({ acquired: true });
  });

  it('decides before returning, so calls in the same tick never interleave', async () => {
    const { store } = clocked();
    const claims = Array.from({ length: 20 }, () => claim());
    const pending = claims.map((c) => store.acquire('k', c));
    const results = await Promise.all(pending);
    expect(results[0]).toEqual({ acquired: true });
    for (const result of results.slice(1)) {
      expect(result).toMatchObject({ acquired: false, record: { token: claims[0]!.token } });
    }
  });
});

describe('against the core state machine', () => {
  const KEYS = ['k0', 'k1', 'k2'];
  type Op =
    | { kind: 'acquire'; key: number; fp: number; token: number; leaseMs: number; ttlMs: number }
    | { kind: 'complete' | 'release'; key: number; token: number; ttlMs: number }
    | { kind: 'extend'; key: number; token: number; leaseMs: number }
    | { kind: 'delete'; key: number }
    | { kind: 'tick'; ms: number }
    | { kind: 'sweep' };
  const key = fc.nat(KEYS.length - 1);
  const token = fc.nat(1);
  // Few distinct durations, so that records often share a ttl (and an expiry queue).
  const ms = fc.constantFrom(500, 1_000, 3_000);
  const op: fc.Arbitrary<Op> = fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant('acquire' as const),
        key,
        fp: fc.nat(1),
        token,
        leaseMs: ms,
        ttlMs: ms,
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constantFrom('complete' as const, 'release' as const),
        key,
        token,
        ttlMs: ms,
      }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('extend' as const), key, token, leaseMs: ms }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), key }) },
    {
      weight: 2,
      arbitrary: fc.record({ kind: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 3_000 }) }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('sweep' as const) }) },
  );
  const ops = fc.array(op, { minLength: 5, maxLength: 60 });

  /**
   * Runs the ops on the store and on `transition` (the reference) and compares every answer and
   * every record. A bounded store may drop a settled record the reference still has (never an
   * in-flight one); the reference then forgets it too.
   */
  async function compare(ops: Op[], maxEntries?: number, maxBytes?: number): Promise<void> {
    const unbounded = Number.POSITIVE_INFINITY;
    const { store, clock } = clocked(
      maxEntries === undefined && maxBytes === undefined
        ? { maxEntries: unbounded, maxBytes: unbounded }
        : { maxEntries: maxEntries ?? unbounded, maxBytes: maxBytes ?? unbounded },
    );
    const model = new Map<string, IdempotencyRecord | null>();
    for (const o of ops) {
      if (o.kind === 'tick') {
        clock.now += o.ms;
        continue;
      }
      if (o.kind === 'sweep') {
        // Records that expired since the last look are still held; the sweep must find every one.
        store.sweep();
        const live = [...model.values()].filter((r) => r !== null && r.expiresAt > clock.now);
        expect(store.size).toBe(live.length);
        continue;
      }
      const k = KEYS[o.key]!;
      const current = model.get(k) ?? null;
      const now = clock.now;
      if (o.kind === 'delete') {
        await store.delete(k);
        model.set(k, null);
      } else if (o.kind === 'acquire') {
        const c: Claim = {
          fingerprint: `fp${o.fp}`,
          token: `t${o.token}`,
          leaseMs: o.leaseMs,
          ttlMs: o.ttlMs,
        };
        const expected = transition(current, { type: 'claim', claim: c }, now);
        const wasLive = current !== null && current.expiresAt > now;
        const result = await store.acquire(k, c);
        if (expected.outcome === 'execute') expect(result).toEqual({ acquired: true });
        else expect(result).toEqual({ acquired: false, record: expected.record });
        model.set(k, expected.record);
        if (!wasLive && maxEntries !== undefined) await checkBound(store, maxEntries);
      } else {
        const { event, accepted } = write(store, k, o);
        const expected = transition(current, event, now);
        expect(await accepted).toBe(expected.outcome === 'accepted');
        model.set(k, expected.record);
      }
      for (const each of KEYS) {
        const stored = await store.get(each);
        const modelled = model.get(each) ?? null;
        const live = modelled !== null && modelled.expiresAt > clock.now ? modelled : null;
        if (stored === null && live !== null) {
          expect(maxEntries ?? maxBytes, `${each} vanished without a bound`).toBeDefined();
          expect(live.state, `${each} was evicted while in flight`).not.toBe('in_flight');
          model.set(each, null);
        } else {
          expect(stored).toEqual(live);
        }
      }
    }
  }

  /** A token-carrying write, on the store and as a state-machine event. */
  function write(
    store: MemoryStore,
    k: string,
    o: Extract<Op, { kind: 'complete' | 'release' | 'extend' }>,
  ): { event: StateEvent; accepted: Promise<boolean> } {
    const token = `t${o.token}`;
    switch (o.kind) {
      case 'complete': {
        const stored = response(token);
        return {
          event: { type: 'complete', token, response: stored, ttlMs: o.ttlMs },
          accepted: store.complete(k, token, stored, o.ttlMs),
        };
      }
      case 'release':
        return {
          event: { type: 'release', token, ttlMs: o.ttlMs },
          accepted: store.release(k, token, o.ttlMs),
        };
      case 'extend':
        return {
          event: { type: 'extend', token, leaseMs: o.leaseMs },
          accepted: store.extend(k, token, o.leaseMs),
        };
    }
  }

  /** Right after a new key was claimed, the store is within its bound unless only in-flight records are left. */
  async function checkBound(store: MemoryStore, maxEntries: number): Promise<void> {
    const held = (await Promise.all(KEYS.map((each) => store.get(each)))).filter((r) => r !== null);
    expect(store.size).toBe(held.length);
    if (held.length > maxEntries) expect(held.every((r) => r.state === 'in_flight')).toBe(true);
  }

  it('answers exactly as transition() when unbounded', async () => {
    await fc.assert(
      fc.asyncProperty(ops, (list) => compare(list)),
      { numRuns: 500 },
    );
  });

  it('answers as transition() when bounded, evicting only settled or expired records', async () => {
    await fc.assert(
      fc.asyncProperty(ops, fc.integer({ min: 1, max: 3 }), (list, max) => compare(list, max)),
      { numRuns: 500 },
    );
  });

  it('answers as transition() when bounded in bytes, evicting only settled or expired records', async () => {
    // Each response here counts 24 bytes (headers included): 26 to 80 keeps one to three of them.
    await fc.assert(
      fc.asyncProperty(ops, fc.integer({ min: 26, max: 80 }), (list, max) => compare(list, undefined, max)),
      { numRuns: 500 },
    );
  });
});
