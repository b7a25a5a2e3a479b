// By path, not by name: a devDependency of core on @idem/memory would make the workspace graph cyclic
// (memory depends on core), which turbo refuses.
import { memoryStore } from '@idem/memory';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type EngineOptions, IdempotencyEngine, type Operation, type Settle } from './engine.js';
import { IdempotencyError } from './errors.js';
import type { IdempotencyEvent } from './events.js';
import type { Claim, IdempotencyRecord, Store, StoredResponse } from './store.js';
import { requestScopedTimers } from './test/request-timers.js';

const encode = (text: string) => new TextEncoder().encode(text);
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

let counter = 0;
function request(fingerprint = 'fp-a') {
  counter++;
  return { storageKey: `idem:engine-test:${counter}`, fingerprint };
}

const settle: Settle<string> = (value) => ({ status: 200, headers: [['x-run', value]], body: encode(value) });

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** An engine on `store` that records its events. */
function setup(options: Partial<EngineOptions> = {}) {
  const events: IdempotencyEvent[] = [];
  const store = options.store ?? memoryStore({ cleanupIntervalMs: 0 });
  const engine = new IdempotencyEngine({ onEvent: (event) => events.push(event), ...options, store });
  const types = () => events.map((event) => event.type);
  return { engine, store, events, types };
}

/** A plain engine on `store`, for a second holder. */
const engine0 = (store: Store) => new IdempotencyEngine({ store });

/** A store that delegates to `inner` except for the methods given. */
function wrap(inner: Store, overrides: Partial<Store>): Store {
  return {
    name: overrides.name ?? inner.name,
    acquire: overrides.acquire ?? ((key, claim) => inner.acquire(key, claim)),
    complete:
      overrides.complete ?? ((key, token, response, ttl) => inner.complete(key, token, response, ttl)),
    release: overrides.release ?? ((key, token, ttl) => inner.release(key, token, ttl)),
    extend: overrides.extend ?? ((key, token, lease) => inner.extend(key, token, lease)),
    get: overrides.get ?? ((key) => inner.get(key)),
    delete: overrides.delete ?? ((key) => inner.delete(key)),
  };
}

/** A store whose every method fails, like a backend that is down. */
function brokenStore(): Store & { cause: Error } {
  const cause = new Error('connect ECONNREFUSED 127.0.0.1:6379');
  const fail = async (): Promise<never> => {
    throw cause;
  };
  return {
    name: 'broken',
    cause,
    acquire: fail,
    complete: fail,
    release: fail,
    extend: fail,
    get: fail,
    delete: fail,
  };
}

/** A store whose every method never answers. */
function hangingStore(): Store {
  const hang = () => new Promise<never>(() => {});
  return {
    name: 'hanging',
    acquire: hang,
    complete: hang,
    release: hang,
    extend: hang,
    get: hang,
    delete: hang,
  };
}

/**
 * A memory store whose claims wait until the test answers them (`hung`, one function per claim, in
 * order), with `acquire` and `release` spied on.
 */
function claimsAnsweredByHand() {
  const inner = memoryStore({ cleanupIntervalMs: 0 });
  const hung: Array<() => void> = [];
  const acquire = vi.fn(async (key: string, claim: Claim) => {
    await new Promise<void>((resolve) => hung.push(resolve));
    return inner.acquire(key, claim);
  });
  const release = vi.fn((key: string, token: string, ttl: number) => inner.release(key, token, ttl));
  return { inner, hung, acquire, release, store: wrap(inner, { acquire, release }) };
}

async function rejection(promise: Promise<unknown>): Promise<IdempotencyError> {
  const error = await promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error,
  );
  expect(error).toBeInstanceOf(IdempotencyError);
  return error as IdempotencyError;
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('IdempotencyEngine', () => {
  it('executes once, then replays the stored response', async () => {
    const { engine, store, types } = setup();
    const req = request();
    const work = vi.fn(async (operation: Operation) => {
      expect(operation).toMatchObject({
        storageKey: req.storageKey,
        fingerprint: 'fp-a',
        claimed: true,
        store,
      });
      expect(operation.ttlMs).toBe(24 * 60 * 60 * 1000);
      expect(operation.signal.aborted).toBe(false);
      return 'first';
    });
    const first = await engine.run(req, work, settle);
    expect(first).toMatchObject({ replayed: false, value: 'first' });
    expect(await store.get(req.storageKey)).toMatchObject({ state: 'completed', fingerprint: 'fp-a' });

    const second = await engine.run(req, work, settle);
    expect(second.replayed).toBe(true);
    if (!second.replayed) return;
    expect(second.response.status).toBe(200);
    expect(second.response.headers).toEqual([['x-run', 'first']]);
    expect(decode(second.response.body)).toBe('first');
    expect(work).toHaveBeenCalledTimes(1);
    expect(types()).toEqual(['execute', 'replay']);
  });

  it('refuses the same key with another fingerprint, completed or in flight', async () => {
    const { engine, events } = setup();
    const req = request('fp-a');
    await engine.run(req, async () => 'a', settle);
    const work = vi.fn(async () => 'b');
    const error = await rejection(engine.run({ ...req, fingerprint: 'fp-b' }, work, settle));
    expect(error.code).toBe('key_mismatch');
    expect(error.details).toMatchObject({ key: req.storageKey, store: 'memory' });
    expect(work).not.toHaveBeenCalled();
    expect(events.at(-1)).toEqual({ type: 'mismatch', key: req.storageKey, store: 'memory' });

    const running = request('fp-a');
    const gate = deferred();
    const holder = engine.run(running, () => gate.promise.then(() => 'a'), settle);
    expect((await rejection(engine.run({ ...running, fingerprint: 'fp-b' }, work, settle))).code).toBe(
      'key_mismatch',
    );
    gate.resolve();
    await holder;
  });

  it('answers in_flight with Retry-After while another holder’s lease is live', async () => {
    const { engine, types } = setup({ leaseMs: 15_000 });
    const req = request();
    const gate = deferred();
    const holder = engine.run(req, () => gate.promise.then(() => 'a'), settle);
    const work = vi.fn(async () => 'b');
    const error = await rejection(engine.run(req, work, settle));
    expect(error.code).toBe('in_flight');
    // The work has only just started: retry soon, not when its 15 s lease ends.
    expect(error.details.retryAfterSeconds).toBe(1);
    expect(work).not.toHaveBeenCalled();
    expect(types()).toEqual(['execute', 'in_flight']);
    gate.resolve();
    await holder;
  });

  it('sets Retry-After to about as long as the work has run, within its lease, 1 to 60 s', async () => {
    const ttlMs = 24 * 60 * 60_000;
    for (const [ranMs, leaseLeftMs, expected] of [
      [300, 15_000, 1],
      [4_200, 15_000, 5],
      [40_000, 7_000, 7],
      [20 * 60_000, 10 * 60_000, 60],
    ] as const) {
      const now = Date.now();
      const blocking: IdempotencyRecord = {
        state: 'in_flight',
        fingerprint: 'fp-a',
        token: 'holder',
        leaseExpiresAt: now + leaseLeftMs,
        expiresAt: now - ranMs + ttlMs,
        response: null,
      };
      const store = wrap(memoryStore(), { acquire: async () => ({ acquired: false, record: blocking }) });
      const { engine } = setup({ store, ttlMs });
      const error = await rejection(engine.run(request(), async () => 'b', settle));
      expect([ranMs, error.details.retryAfterSeconds]).toEqual([ranMs, expected]);
    }
  });

  describe('wait mode', () => {
    it('replays once the first holder completes', async () => {
      const { engine, types } = setup({ wait: { timeoutMs: 3_000, pollMs: 10 } });
      const req = request();
      const gate = deferred();
      const holder = engine.run(req, () => gate.promise.then(() => 'first'), settle);
      const work = vi.fn(async () => 'second');
      const waiting = engine.run(req, work, settle);
      await sleep(80);
      gate.resolve();
      const result = await waiting;
      expect(result.replayed).toBe(true);
      if (result.replayed) expect(decode(result.response.body)).toBe('first');
      expect(work).not.toHaveBeenCalled();
      await holder;
      expect(types()).toContain('replay');
    });

    it('runs the work itself when the first holder fails', async () => {
      const { engine } = setup({ wait: { timeoutMs: 3_000, pollMs: 10 } });
      const req = request();
      const gate = deferred();
      const holder = engine.run(
        req,
        () => gate.promise.then(() => Promise.reject(new Error('boom'))),
        settle,
      );
      const waiting = engine.run(req, async () => 'second', settle);
      await sleep(50);
      gate.resolve();
      await expect(holder).rejects.toThrow('boom');
      expect(await waiting).toMatchObject({ replayed: false, value: 'second' });
    });

    it('gives up with in_flight after its timeout', async () => {
      const { engine } = setup({ wait: { timeoutMs: 150, pollMs: 20 } });
      const req = request();
      const gate = deferred();
      const holder = engine.run(req, () => gate.promise.then(() => 'first'), settle);
      const started = Date.now();
      const work = vi.fn(async () => 'second');
      const error = await rejection(engine.run(req, work, settle));
      expect(error.code).toBe('in_flight');
      expect(Date.now() - started).toBeGreaterThanOrEqual(140);
      expect(Date.now() - started).toBeLessThan(1_500);
      expect(work).not.toHaveBeenCalled();
      gate.resolve();
      await holder;
    });
  });

  describe('leases', () => {
    async function longHandler(heartbeat: boolean) {
      const { engine, store, types } = setup({ leaseMs: 200, heartbeat });
      const req = request();
      const holder = engine.run(req, () => sleep(1_000).then(() => 'long'), settle);
      await sleep(500);
      const contender = await engine
        .run(req, async () => 'contender', settle)
        .then(
          (result) => ({ result }),
          (error: unknown) => ({ error }),
        );
      await holder;
      return { contender, record: await store.get(req.storageKey), types: types() };
    }

    it('keeps a long handler’s lease with heartbeats: a concurrent claim gets in_flight, no takeover', async () => {
      const { contender, record, types } = await longHandler(true);
      expect(contender).toMatchObject({ error: { code: 'in_flight' } });
      expect(record?.state).toBe('completed');
      expect(decode(record!.response!.body)).toBe('long');
      expect(types).not.toContain('lease_lost');
    });

    it('keeps renewing the lease while a slow store completes: no takeover between the work and complete', async () => {
      const inner = memoryStore({ cleanupIntervalMs: 0 });
      const slowComplete = wrap(inner, {
        complete: async (...args) => {
          await sleep(700);
          return inner.complete(...args);
        },
      });
      const { engine, types } = setup({ store: slowComplete, leaseMs: 200, storeTimeoutMs: 2_000 });
      const req = request();
      const holder = engine.run(req, async () => 'first', settle);
      await sleep(450); // the work is done; complete is still on its way, past two leases
      const contender = await rejection(engine.run(req, async () => 'second', settle));
      expect(contender.code).toBe('in_flight');
      await holder;
      expect(decode((await inner.get(req.storageKey))!.response!.body)).toBe('first');
      expect(types()).not.toContain('lease_lost');
    });

    it('without heartbeats, lets a claim take the expired lease over (the contrast case)', async () => {
      const { contender, record, types } = await longHandler(false);
      expect(contender).toMatchObject({ result: { replayed: false, value: 'contender' } });
      expect(decode(record!.response!.body)).toBe('contender');
      expect(types).toContain('lease_lost');
    });

    it('takes over from a crashed holder once its lease has passed', async () => {
      const { engine, store } = setup();
      const req = request();
      await store.acquire(req.storageKey, {
        fingerprint: 'fp-a',
        token: 'crashed',
        leaseMs: 300,
        ttlMs: 60_000,
      });
      expect((await rejection(engine.run(req, async () => 'early', settle))).code).toBe('in_flight');
      await sleep(350);
      const result = await engine.run(req, async () => 'recovered', settle);
      expect(result).toMatchObject({ replayed: false, value: 'recovered' });
      const record = await store.get(req.storageKey);
      expect(record).toMatchObject({ state: 'completed' });
      expect(record?.token).not.toBe('crashed');
    });

    it('fences a holder whose lease was taken over: its result is not stored, the newer one stays', async () => {
      const { engine, store, events } = setup({ leaseMs: 100, heartbeat: false });
      const req = request();
      const gate = deferred();
      const stale = engine.run(req, () => gate.promise.then(() => 'stale'), settle);
      await sleep(150);
      expect(await engine.run(req, async () => 'fresh', settle)).toMatchObject({
        replayed: false,
        value: 'fresh',
      });
      gate.resolve();
      // The stale holder's caller still gets its own value; nothing is thrown at it.
      expect(await stale).toMatchObject({ replayed: false, value: 'stale' });
      expect(events).toContainEqual({
        type: 'lease_lost',
        key: req.storageKey,
        store: 'memory',
        operation: 'complete',
      });
      expect(decode((await store.get(req.storageKey))!.response!.body)).toBe('fresh');
    });

    it('aborts the work’s signal when a heartbeat finds the lease lost', async () => {
      const { engine, store, events } = setup({ leaseMs: 100 });
      const req = request();
      let signal: AbortSignal | undefined;
      const holder = engine.run(
        req,
        async (operation) => {
          signal = operation.signal;
          await new Promise((resolve) => operation.signal.addEventListener('abort', resolve));
          return 'aborted';
        },
        settle,
      );
      await sleep(10);
      await store.delete(req.storageKey);
      await store.acquire(req.storageKey, {
        fingerprint: 'fp-a',
        token: 'usurper',
        leaseMs: 60_000,
        ttlMs: 60_000,
      });
      await holder;
      expect(signal?.aborted).toBe(true);
      expect(signal?.reason).toMatchObject({ code: 'in_flight' });
      expect(events).toContainEqual({
        type: 'lease_lost',
        key: req.storageKey,
        store: 'memory',
        operation: 'extend',
      });
      expect(await store.get(req.storageKey)).toMatchObject({ state: 'in_flight', token: 'usurper' });
    });

    it('reports no lost lease for a heartbeat that the store answers after the work completed', async () => {
      const inner = memoryStore({ cleanupIntervalMs: 0 });
      // The extend reaches the store late, after the complete (e.g. over another pooled connection).
      const slowExtend = wrap(inner, {
        extend: (key, token, lease) => sleep(80).then(() => inner.extend(key, token, lease)),
      });
      const { engine, types } = setup({ store: slowExtend, leaseMs: 100 });
      await engine.run(request(), () => sleep(70).then(() => 'done'), settle);
      await sleep(120);
      expect(types()).toEqual(['execute']);
    });
  });

  describe('releasing', () => {
    it('releases when the work throws, so that a retry runs again', async () => {
      const { engine, store } = setup();
      const req = request();
      const boom = new Error('boom');
      const work = vi.fn(async () => {
        if (work.mock.calls.length === 1) throw boom;
        return 'second';
      });
      await expect(engine.run(req, work, settle)).rejects.toBe(boom);
      expect(await store.get(req.storageKey)).toMatchObject({ state: 'failed', fingerprint: 'fp-a' });
      expect(await engine.run(req, work, settle)).toMatchObject({ replayed: false, value: 'second' });
      expect(work).toHaveBeenCalledTimes(2);
      expect((await store.get(req.storageKey))?.state).toBe('completed');
    });

    it('releases when settle returns null, and when settle throws', async () => {
      const { engine, store } = setup();
      const req = request();
      const work = vi.fn(async () => 'value');
      expect(await engine.run(req, work, () => null)).toMatchObject({ replayed: false, value: 'value' });
      expect((await store.get(req.storageKey))?.state).toBe('failed');
      const broken = new Error('settle failed');
      await expect(
        engine.run(req, work, () => {
          throw broken;
        }),
      ).rejects.toBe(broken);
      expect((await store.get(req.storageKey))?.state).toBe('failed');
      await engine.run(req, work, settle);
      expect(work).toHaveBeenCalledTimes(3);
    });

    it('keeps the failed fingerprint: a retry with another payload is still refused', async () => {
      const { engine } = setup();
      const req = request();
      await expect(engine.run(req, () => Promise.reject(new Error('x')), settle)).rejects.toThrow('x');
      expect(
        (await rejection(engine.run({ ...req, fingerprint: 'fp-b' }, async () => 'b', settle))).code,
      ).toBe('key_mismatch');
    });
  });

  describe('store failures', () => {
    it('fails closed with store_unavailable before the work runs', async () => {
      const store = brokenStore();
      const { engine, events } = setup({ store });
      const work = vi.fn(async () => 'never');
      const req = request();
      const error = await rejection(engine.run(req, work, settle));
      expect(error.code).toBe('store_unavailable');
      expect(error.cause).toBe(store.cause);
      expect(error.message).toMatch(/^\[idem\] \[broken\] acquire failed/);
      expect(error.details).toMatchObject({ store: 'broken', key: req.storageKey, retryAfterSeconds: 1 });
      expect(work).not.toHaveBeenCalled();
      expect(events).toEqual([
        { type: 'store_error', key: req.storageKey, store: 'broken', operation: 'acquire', error },
      ]);
    });

    it('fails closed when a store method throws synchronously', async () => {
      const throwing = wrap(memoryStore(), {
        acquire: () => {
          throw new Error('sync');
        },
      });
      const { engine } = setup({ store: throwing });
      const work = vi.fn(async () => 'never');
      expect((await rejection(engine.run(request(), work, settle))).code).toBe('store_unavailable');
      expect(work).not.toHaveBeenCalled();
    });

    it('fails closed after storeTimeoutMs when the store hangs', async () => {
      const { engine } = setup({ store: hangingStore(), storeTimeoutMs: 100 });
      const work = vi.fn(async () => 'never');
      const started = Date.now();
      const error = await rejection(engine.run(request(), work, settle));
      expect(error.code).toBe('store_unavailable');
      expect(error.message).toMatch(/acquire timed out after 100 ms/);
      expect(Date.now() - started).toBeGreaterThanOrEqual(90);
      expect(Date.now() - started).toBeLessThan(1_500);
      expect(work).not.toHaveBeenCalled();
    });

    it('fails open when asked: the work runs without a claim and a store_error says so', async () => {
      const { engine, events } = setup({ store: brokenStore(), failOpen: true });
      const req = request();
      const work = vi.fn(async (operation: Operation) => {
        expect(operation.claimed).toBe(false);
        return 'ran anyway';
      });
      expect(await engine.run(req, work, settle)).toMatchObject({ replayed: false, value: 'ran anyway' });
      expect(work).toHaveBeenCalledTimes(1);
      expect(events).toEqual([
        {
          type: 'store_error',
          key: req.storageKey,
          store: 'broken',
          operation: 'acquire',
          error: expect.objectContaining({ code: 'store_unavailable' }),
          failOpen: true,
        },
      ]);
    });

    it('stops sending calls while maxTimedOutCalls timed-out calls still wait for the store, and resumes as they are answered', async () => {
      const { inner, hung, acquire, release, store } = claimsAnsweredByHand();
      const { engine } = setup({ store, storeTimeoutMs: 20, maxTimedOutCalls: 3 });
      const work = vi.fn(async () => 'never');
      for (let i = 0; i < 3; i++) {
        const error = await rejection(engine.run(request(), work, settle));
        expect(error.message).toMatch(/acquire timed out after 20 ms/);
      }
      expect(acquire).toHaveBeenCalledTimes(3);
      // The store never answered those three: the next calls fail at once without reaching it.
      const refused = request();
      const error = await rejection(engine.run(refused, work, settle));
      expect(error.code).toBe('store_unavailable');
      expect(error.message).toBe(
        '[idem] [memory] acquire not sent: 3 earlier calls timed out and the store has not answered them yet',
      );
      expect(error.details).toMatchObject({ store: 'memory', key: refused.storageKey, retryAfterSeconds: 1 });
      await rejection(engine.run(request(), work, settle));
      expect(acquire).toHaveBeenCalledTimes(3);
      // One answer arrives (a claim, given back since nobody will complete it): one call may go again.
      hung.shift()!();
      await vi.waitFor(() => expect(release).toHaveBeenCalledTimes(1), { timeout: 2_000, interval: 5 });
      const sent = engine.run(request(), work, settle);
      expect(acquire).toHaveBeenCalledTimes(4);
      await rejection(sent);
      // That one timed out too: the bound is reached again.
      await rejection(engine.run(request(), work, settle));
      expect(acquire).toHaveBeenCalledTimes(4);
      for (const answer of hung.splice(0)) answer();
      await vi.waitFor(() => expect(release).toHaveBeenCalledTimes(4), { timeout: 2_000, interval: 5 });
      acquire.mockImplementation((key, claim) => inner.acquire(key, claim));
      expect(await engine.run(request(), async () => 'ran', settle)).toMatchObject({ value: 'ran' });
      expect(work).not.toHaveBeenCalled();
    });

    it('gives back every late claim, even while the timed-out calls are over the bound', async () => {
      const { inner, hung, release, store } = claimsAnsweredByHand();
      const { engine, events } = setup({ store, storeTimeoutMs: 20, maxTimedOutCalls: 3 });
      // Five calls sent before any timed out: the count ends above the bound.
      const requests = Array.from({ length: 5 }, () => request());
      await Promise.all(requests.map((each) => rejection(engine.run(each, async () => 'never', settle))));
      for (const answer of hung.splice(0)) answer();
      await vi.waitFor(() => expect(release).toHaveBeenCalledTimes(5), { timeout: 2_000, interval: 5 });
      for (const each of requests) {
        await vi.waitFor(async () => expect((await inner.get(each.storageKey))?.state).toBe('failed'), {
          timeout: 2_000,
          interval: 5,
        });
      }
      expect(events.filter((event) => event.type === 'store_error' && event.operation === 'release')).toEqual(
        [],
      );
    });

    it('still sends the completion of work that ran while the bound holds new claims back', async () => {
      const inner = memoryStore({ cleanupIntervalMs: 0 });
      // While `hang` is set, every call waits for it (as a client queues commands while it connects).
      let hang: Promise<void> | null = null;
      let recover = () => {};
      const held =
        <A extends unknown[], R>(call: (...args: A) => Promise<R>) =>
        (...args: A) =>
          hang ? hang.then(() => call(...args)) : call(...args);
      const store = wrap(inner, {
        acquire: held((key, claim) => inner.acquire(key, claim)),
        complete: held((key, token, response, ttl) => inner.complete(key, token, response, ttl)),
      });
      // No background retries: the one completion sent must be the one that lands.
      const { engine } = setup({
        store,
        storeTimeoutMs: 20,
        maxTimedOutCalls: 2,
        heartbeat: false,
        completeRetries: 0,
      });
      const req = request();
      const gate = deferred();
      const work = vi.fn(async () => {
        await gate.promise;
        return 'ran';
      });
      const running = engine.run(req, work, settle);
      await vi.waitFor(() => expect(work).toHaveBeenCalledTimes(1), { timeout: 2_000, interval: 5 });
      hang = new Promise<void>((resolve) => {
        recover = resolve;
      });
      for (let i = 0; i < 2; i++) await rejection(engine.run(request(), work, settle));
      expect((await rejection(engine.run(request(), work, settle))).message).toMatch(/acquire not sent/);
      // The work ends while the bound holds: its completion is sent all the same, and waits with the rest.
      gate.resolve();
      expect(await running).toMatchObject({ replayed: false, value: 'ran' });
      recover();
      await vi.waitFor(async () => expect((await inner.get(req.storageKey))?.state).toBe('completed'), {
        timeout: 2_000,
        interval: 5,
      });
      expect(await engine.run(req, work, settle)).toMatchObject({ replayed: true });
      expect(work).toHaveBeenCalledTimes(1);
    });

    it('counts only calls that timed out: slow calls answered in time never reach the bound', async () => {
      const inner = memoryStore({ cleanupIntervalMs: 0 });
      const acquire = vi.fn(async (key: string, claim: Claim) => {
        await sleep(5);
        return inner.acquire(key, claim);
      });
      const { engine } = setup({
        store: wrap(inner, { acquire }),
        storeTimeoutMs: 2_000,
        maxTimedOutCalls: 1,
      });
      const results = await Promise.all(
        Array.from({ length: 20 }, () => engine.run(request(), async () => 'ran', settle)),
      );
      expect(results.every((result) => !result.replayed && result.value === 'ran')).toBe(true);
      expect(acquire).toHaveBeenCalledTimes(20);
    });

    it('counts a timed-out call that fails late as answered', async () => {
      const failures: Array<(error: Error) => void> = [];
      const store = wrap(memoryStore({ cleanupIntervalMs: 0 }), {
        acquire: () => new Promise((_, reject) => failures.push(reject)),
      });
      const { engine } = setup({ store, storeTimeoutMs: 20, maxTimedOutCalls: 1 });
      await rejection(engine.run(request(), async () => 'never', settle));
      expect((await rejection(engine.run(request(), async () => 'never', settle))).message).toMatch(
        /not sent/,
      );
      failures.shift()!(new Error('connection closed'));
      await sleep(0);
      expect((await rejection(engine.run(request(), async () => 'never', settle))).message).toMatch(
        /acquire timed out/,
      );
      expect(failures).toHaveLength(1);
    });

    it('gives back a claim that lands after the timeout answered, so that a retry runs at once', async () => {
      const inner = memoryStore({ cleanupIntervalMs: 0 });
      const late = deferred();
      const acquire = vi.fn(async (key: string, claim: Claim) => {
        if (acquire.mock.calls.length === 1) await late.promise;
        return inner.acquire(key, claim);
      });
      const { engine, types } = setup({ store: wrap(inner, { acquire }), storeTimeoutMs: 50 });
      const req = request();
      const work = vi.fn(async () => 'ran');
      expect((await rejection(engine.run(req, work, settle))).code).toBe('store_unavailable');
      late.resolve();
      await vi.waitFor(async () => expect((await inner.get(req.storageKey))?.state).toBe('failed'), {
        timeout: 2_000,
        interval: 10,
      });
      // Without the release the late claim's lease (15 s) would answer in_flight here.
      expect(await engine.run(req, work, settle)).toMatchObject({ replayed: false, value: 'ran' });
      expect(work).toHaveBeenCalledTimes(1);
      expect(types()).toEqual(['store_error', 'execute']);
    });

    it('gives back a late claim under fail-open too (the work ran without it)', async () => {
      const inner = memoryStore({ cleanupIntervalMs: 0 });
      const late = deferred();
      const acquire = vi.fn(async (key: string, claim: Claim) => {
        await late.promise;
        return inner.acquire(key, claim);
      });
      const { engine } = setup({ store: wrap(inner, { acquire }), storeTimeoutMs: 50, failOpen: true });
      const req = request();
      expect(await engine.run(req, async () => 'ran anyway', settle)).toMatchObject({ value: 'ran anyway' });
      late.resolve();
      await vi.waitFor(async () => expect((await inner.get(req.storageKey))?.state).toBe('failed'), {
        timeout: 2_000,
        interval: 10,
      });
    });

    it('leaves a late refusal alone: only its own claim is given back', async () => {
      const inner = memoryStore({ cleanupIntervalMs: 0 });
      const req = request();
      const holder = deferred();
      const running = engine0(inner).run(req, () => holder.promise.then(() => 'first'), settle);
      const late = deferred();
      const release = vi.fn((key: string, token: string, ttl: number) => inner.release(key, token, ttl));
      const acquire = vi.fn(async (key: string, claim: Claim) => {
        await late.promise;
        return inner.acquire(key, claim);
      });
      const { engine } = setup({ store: wrap(inner, { acquire, release }), storeTimeoutMs: 50 });
      expect((await rejection(engine.run(req, async () => 'never', settle))).code).toBe('store_unavailable');
      late.resolve();
      await acquire.mock.results[0]!.value;
      await sleep(20);
      expect(release).not.toHaveBeenCalled();
      expect((await inner.get(req.storageKey))?.state).toBe('in_flight');
      holder.resolve();
      await running;
    });

    it('does not report a lost lease when its complete landed but the answer came too late', async () => {
      const inner = memoryStore({ cleanupIntervalMs: 0 });
      const complete = vi.fn(async (key: string, token: string, response: StoredResponse, ttl: number) => {
        const completed = await inner.complete(key, token, response, ttl);
        // The first answer is lost on its way back: the engine times out and retries a complete that landed.
        if (complete.mock.calls.length === 1) await sleep(200);
        return completed;
      });
      const { engine, types } = setup({ store: wrap(inner, { complete }), storeTimeoutMs: 50 });
      const req = request();
      await engine.run(req, async () => 'ran', settle);
      await vi.waitFor(() => expect(complete).toHaveBeenCalledTimes(2), { timeout: 2_000, interval: 10 });
      await sleep(20);
      expect(types()).toEqual(['execute', 'store_error']);
      expect((await engine.run(req, async () => 'again', settle)).replayed).toBe(true);
    });

    it('still reports a lost lease when another holder took the record over', async () => {
      const inner = memoryStore({ cleanupIntervalMs: 0 });
      const req = request();
      const { engine, types } = setup({ store: inner, leaseMs: 100, heartbeat: false });
      await engine.run(
        req,
        async () => {
          await sleep(150);
          expect(
            await inner.acquire(req.storageKey, {
              fingerprint: 'fp-a',
              token: 'other',
              leaseMs: 10_000,
              ttlMs: 60_000,
            }),
          ).toEqual({ acquired: true });
          return 'late';
        },
        settle,
      );
      await vi.waitFor(() => expect(types()).toEqual(['execute', 'lease_lost']), {
        timeout: 2_000,
        interval: 10,
      });
    });

    it('fails open on a hanging store too, after the timeout', async () => {
      const { engine } = setup({ store: hangingStore(), failOpen: true, storeTimeoutMs: 50 });
      expect(await engine.run(request(), async () => 'ran', settle)).toMatchObject({ value: 'ran' });
    });

    it('never fails open on a corrupt record: record_corrupt propagates as it is', async () => {
      const corrupt = new IdempotencyError('record_corrupt', '[memory] could not decode the record');
      for (const failOpen of [false, true]) {
        const store = wrap(memoryStore(), { acquire: () => Promise.reject(corrupt) });
        const { engine, events } = setup({ store, failOpen });
        const work = vi.fn(async () => 'never');
        const req = request();
        await expect(engine.run(req, work, settle)).rejects.toBe(corrupt);
        expect(work).not.toHaveBeenCalled();
        // The operator hears of it (the client's problem detail does not say what is wrong).
        expect(events).toEqual([
          {
            type: 'record_corrupt',
            key: req.storageKey,
            store: 'memory',
            operation: 'acquire',
            error: corrupt,
          },
        ]);
      }
    });

    it('passes on a record_corrupt thrown by another copy of core (a store loaded as CommonJS), as it is', async () => {
      // @ts-expect-error a second instance of the errors module, as the other build of core would have
      const other: typeof import('./errors.js') = await import('./errors.js?store-copy');
      const corrupt = new other.IdempotencyError('record_corrupt', '[memory] could not decode the record');
      const store = wrap(memoryStore(), { acquire: () => Promise.reject(corrupt) });
      const { engine, types } = setup({ store, failOpen: true });
      const work = vi.fn(async () => 'never');
      await expect(engine.run(request(), work, settle)).rejects.toBe(corrupt);
      expect(work).not.toHaveBeenCalled();
      expect(types()).toEqual(['record_corrupt']);
    });

    it('reports a completed record without a response as record_corrupt', async () => {
      const store = wrap(memoryStore(), {
        acquire: async () => ({
          acquired: false,
          record: {
            state: 'completed',
            fingerprint: 'fp-a',
            token: 't',
            leaseExpiresAt: 0,
            expiresAt: Date.now() + 60_000,
            response: null,
          },
        }),
      });
      const { engine, events } = setup({ store });
      const req = request();
      const error = await rejection(engine.run(req, async () => 'x', settle));
      expect(error.code).toBe('record_corrupt');
      expect(events).toEqual([
        { type: 'record_corrupt', key: req.storageKey, store: 'memory', operation: 'acquire', error },
      ]);
    });

    it('retries a failed complete in the background, then reports complete_failed, never throwing', async () => {
      const inner = memoryStore({ cleanupIntervalMs: 0 });
      const complete = vi.fn(() => Promise.reject(new Error('write failed')));
      const { engine, events, types } = setup({ store: wrap(inner, { complete }), completeRetries: 2 });
      const req = request();
      expect(await engine.run(req, async () => 'done', settle)).toMatchObject({
        replayed: false,
        value: 'done',
      });
      // Only the first attempt is awaited; the retries follow in the background.
      expect(complete).toHaveBeenCalledTimes(1);
      await vi.waitFor(() => expect(types()).toContain('complete_failed'), { timeout: 3_000, interval: 20 });
      expect(complete).toHaveBeenCalledTimes(3);
      expect(types()).toEqual(['execute', 'store_error', 'store_error', 'store_error', 'complete_failed']);
      expect(events.at(-1)).toMatchObject({ key: req.storageKey, error: { code: 'store_unavailable' } });
      expect(events[1]).toMatchObject({ operation: 'complete' });
    });

    it('stores the result when a background retry of complete succeeds', async () => {
      const inner = memoryStore({ cleanupIntervalMs: 0 });
      let failures = 1;
      const store = wrap(inner, {
        complete: (key, token, response, ttl) =>
          failures-- > 0 ? Promise.reject(new Error('blip')) : inner.complete(key, token, response, ttl),
      });
      const { engine, types } = setup({ store });
      const req = request();
      await engine.run(req, async () => 'done', settle);
      await vi.waitFor(async () => expect((await inner.get(req.storageKey))?.state).toBe('completed'), {
        timeout: 2_000,
        interval: 20,
      });
      const replay = await engine.run(req, async () => 'again', settle);
      expect(replay.replayed).toBe(true);
      expect(types()).not.toContain('complete_failed');
    });

    it('does not break runs when onEvent throws', async () => {
      const onEvent = vi.fn(() => {
        throw new Error('observer bug');
      });
      const { engine } = setup({ onEvent });
      const req = request();
      expect(await engine.run(req, async () => 'ok', settle)).toMatchObject({ value: 'ok' });
      expect((await engine.run(req, async () => 'again', settle)).replayed).toBe(true);
      expect(onEvent).toHaveBeenCalledTimes(2);
    });

    it('swallows the rejection of an async onEvent (unhandled, it would end a Node process)', async () => {
      const unhandled: unknown[] = [];
      const onUnhandled = (reason: unknown) => unhandled.push(reason);
      process.on('unhandledRejection', onUnhandled);
      try {
        // Not a vi.fn: a spy handles the promises its function returns, to record how they settled.
        let calls = 0;
        const onEvent = async () => {
          calls++;
          throw new Error('metrics backend down');
        };
        const { engine } = setup({ onEvent });
        const req = request();
        expect(await engine.run(req, async () => 'ok', settle)).toMatchObject({ value: 'ok' });
        expect((await engine.run(req, async () => 'again', settle)).replayed).toBe(true);
        // Node reports unhandled rejections after the microtask queue drains: give it a macrotask.
        await new Promise((resolve) => setImmediate(resolve));
        await new Promise((resolve) => setImmediate(resolve));
        expect(calls).toBe(2);
        expect(unhandled).toEqual([]);
      } finally {
        process.off('unhandledRejection', onUnhandled);
      }
    });
  });

  describe('on a runtime whose timers belong to a request (Workers)', () => {
    it("keeps renewing a running lease after the request that set the engine's first timer ended", async () => {
      const timers = requestScopedTimers();
      try {
        const engine = new IdempotencyEngine({ store: memoryStore({ cleanupIntervalMs: 0 }), leaseMs: 300 });
        // A sets the shared timer while B runs beside it, then ends; B's handler lasts four leases.
        const a = timers.run('a', () => engine.run(request(), () => sleep(200).then(() => 'a'), settle));
        await sleep(50);
        const b = request();
        const running = timers.run('b', () => engine.run(b, () => sleep(1_200).then(() => 'b'), settle));
        await a;
        timers.end('a');
        await sleep(700);
        const duplicate = await rejection(timers.run('c', () => engine.run(b, async () => 'again', settle)));
        expect(duplicate.code).toBe('in_flight');
        expect(await running).toMatchObject({ value: 'b' });
      } finally {
        timers.restore();
      }
    });
  });

  describe('markCompleted', () => {
    it('leaves completing to the work: the engine neither completes nor releases', async () => {
      const inner = memoryStore({ cleanupIntervalMs: 0 });
      const complete = vi.fn((key: string, token: string, response: StoredResponse, ttl: number) =>
        inner.complete(key, token, response, ttl),
      );
      const release = vi.fn((key: string, token: string, ttl: number) => inner.release(key, token, ttl));
      const { engine } = setup({ store: wrap(inner, { complete, release }) });
      const req = request();
      const own: StoredResponse = { status: 201, headers: [], body: encode('from the work') };
      await engine.run(
        req,
        async (operation) => {
          expect(
            await operation.store.complete(operation.storageKey, operation.token, own, operation.ttlMs),
          ).toBe(true);
          operation.markCompleted();
          return 'value';
        },
        settle,
      );
      expect(complete).toHaveBeenCalledTimes(1);
      expect(release).not.toHaveBeenCalled();
      expect(decode((await inner.get(req.storageKey))!.response!.body)).toBe('from the work');

      // Also when the work throws after completing: the engine's fenced release (in case the work's
      // transaction rolled back) is refused, and the record stays completed.
      const other = request();
      await expect(
        engine.run(
          other,
          async (operation) => {
            await operation.store.complete(operation.storageKey, operation.token, own, operation.ttlMs);
            operation.markCompleted();
            throw new Error('after commit');
          },
          settle,
        ),
      ).rejects.toThrow('after commit');
      expect(release).toHaveBeenCalledTimes(1);
      await expect(release.mock.results[0]!.value).resolves.toBe(false);
      expect((await inner.get(other.storageKey))?.state).toBe('completed');
    });
  });

  describe('options', () => {
    it('refuses a missing store and non-positive durations', () => {
      expect(() => new IdempotencyEngine({} as EngineOptions)).toThrow(/store is required/);
      const store = memoryStore();
      for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
        expect(() => new IdempotencyEngine({ store, leaseMs: bad })).toThrow(TypeError);
        expect(() => new IdempotencyEngine({ store, ttlMs: bad })).toThrow(TypeError);
        expect(() => new IdempotencyEngine({ store, storeTimeoutMs: bad })).toThrow(TypeError);
      }
      for (const bad of [0, -1, 1.5, Number.NaN, Number.NEGATIVE_INFINITY]) {
        expect(() => new IdempotencyEngine({ store, maxTimedOutCalls: bad })).toThrow(
          '[idem] maxTimedOutCalls must be a positive integer (or Infinity)',
        );
      }
      expect(
        () => new IdempotencyEngine({ store, maxTimedOutCalls: Number.POSITIVE_INFINITY }),
      ).not.toThrow();
    });

    it('refuses wait options that would poll without pause or never give up', () => {
      const store = memoryStore();
      for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
        expect(() => new IdempotencyEngine({ store, wait: { timeoutMs: 1_000, pollMs: bad } })).toThrow(
          /wait.pollMs must be a positive number/,
        );
      }
      for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
        expect(() => new IdempotencyEngine({ store, wait: { timeoutMs: bad } })).toThrow(
          /wait.timeoutMs must be a number of at least 0/,
        );
      }
      expect(() => new IdempotencyEngine({ store, wait: { timeoutMs: 0 } })).not.toThrow();
    });

    it('passes ttl and lease to the store', async () => {
      const inner = memoryStore({ cleanupIntervalMs: 0 });
      const acquire = vi.fn(inner.acquire.bind(inner));
      const complete = vi.fn(inner.complete.bind(inner));
      const { engine } = setup({ store: wrap(inner, { acquire, complete }), ttlMs: 5_000, leaseMs: 2_000 });
      await engine.run(request(), async () => 'x', settle);
      expect(acquire.mock.calls[0]![1]).toMatchObject({ leaseMs: 2_000, ttlMs: 5_000, fingerprint: 'fp-a' });
      expect(complete.mock.calls[0]![3]).toBe(5_000);
    });
  });
});
