import type { Claim, IdempotencyRecord, Store, StoredResponse } from '@idem/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** What the backend really holds for a key, read without going through the store. */
export interface RawRecord {
  /** Milliseconds until the backend itself drops the key (Redis PTTL, a TTL attribute, an expiry column). */
  expiresInMs: number | null;
}

/** Options of {@link testStore}. */
export interface StoreTestOptions {
  /** Shown in the test names, e.g. `"redis"`. */
  name: string;
  /**
   * Makes the store under test. Called once per test file (in `beforeAll`); every test uses fresh,
   * random keys, so stores may share a namespace.
   */
  createStore: () => Store | Promise<Store>;
  /** Optional raw reader, so the suite can check what was stored and when the backend expires it. */
  readRaw?: (store: Store, key: string) => Promise<RawRecord | null>;
  /** Called once after all tests (close clients, drop tables). */
  teardown?: (store: Store) => void | Promise<void>;
  /**
   * Short real durations the timing tests use, in ms. Stores keep time on their own clock, so fake
   * timers do not apply. Defaults: lease 300, ttl 600. Raise them for slow or coarse-clocked backends
   * (e.g. a backend with one-second expiry resolution).
   */
  timing?: { leaseMs?: number; ttlMs?: number };
  /** Test-local registration hook for store-specific cases that need the same store. */
  additionalTests?: (getStore: () => Store) => void;
}

const LONG = 60_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let counter = 0;
/** A fresh storage-like key, unique across runs and processes. */
export function uniqueKey(label = 'k'): string {
  counter++;
  return `idem-test:${label}:${Date.now().toString(36)}:${counter}:${Math.random().toString(36).slice(2, 10)}`;
}

/** A claim with a fresh token. */
export function makeClaim(fingerprint = 'fp-1', overrides: Partial<Claim> = {}): Claim {
  return { fingerprint, token: crypto.randomUUID(), leaseMs: LONG, ttlMs: LONG, ...overrides };
}

/** A small response with repeated headers, for round trips. */
export function makeResponse(body: Uint8Array = new TextEncoder().encode('{"ok":true}')): StoredResponse {
  return {
    status: 201,
    headers: [
      ['content-type', 'application/json'],
      ['x-trace', 'a'],
      ['x-trace', 'b'],
      ['link', '</orders/1>; rel="self"'],
    ],
    body,
  };
}

/**
 * The conformance suite: the definition of a correct idem Store. Call it from a test file:
 *
 * ```ts
 * testStore({ name: 'redis', createStore: () => redisStore({ client }) });
 * ```
 *
 * Every case runs against the real backend with short real durations: claim on an absent key, the
 * blocking record, 50 parallel claims with exactly one winner, lease takeover with a new token,
 * fingerprints that never take over, fencing of stale tokens, release and re-claim, ttl expiry,
 * byte-exact bodies, headers in order, get and delete, independence of near-identical keys.
 */
export function testStore(options: StoreTestOptions): void {
  const leaseMs = options.timing?.leaseMs ?? 300;
  const ttlMs = options.timing?.ttlMs ?? 600;
  let store: Store;
  const getStore = () => store;

  describe(`store conformance: ${options.name}`, () => {
    beforeAll(async () => {
      store = await options.createStore();
    });
    afterAll(async () => {
      if (store) await options.teardown?.(store);
    });

    describe('acquire', () => {
      it('claims an absent key and records it in flight', async () => {
        const key = uniqueKey('absent');
        const claim = makeClaim('fp-a');
        const before = Date.now();
        expect(await store.acquire(key, claim)).toEqual({ acquired: true });
        const record = await store.get(key);
        expect(record).toMatchObject({
          state: 'in_flight',
          fingerprint: 'fp-a',
          token: claim.token,
          response: null,
        });
        // Store clocks may differ a little from this process's clock.
        expect(record!.leaseExpiresAt).toBeGreaterThan(before + LONG - 5_000);
        expect(record!.leaseExpiresAt).toBeLessThan(before + LONG + 5_000);
        expect(record!.expiresAt).toBeGreaterThan(before + LONG - 5_000);
      });

      it('refuses a second claim and returns the blocking record in the same call', async () => {
        const key = uniqueKey('second');
        const first = makeClaim('fp-a');
        await store.acquire(key, first);
        const result = await store.acquire(key, makeClaim('fp-a'));
        expect(result.acquired).toBe(false);
        if (result.acquired) return;
        expect(result.record).toMatchObject({ state: 'in_flight', fingerprint: 'fp-a', token: first.token });
      });

      it('returns a blocking record with another fingerprint unchanged', async () => {
        const key = uniqueKey('other-fp');
        const first = makeClaim('fp-a');
        await store.acquire(key, first);
        const result = await store.acquire(key, makeClaim('fp-b'));
        expect(result).toMatchObject({
          acquired: false,
          record: { fingerprint: 'fp-a', token: first.token },
        });
      });

      it('lets exactly one of 50 parallel claims on one key win', async () => {
        const key = uniqueKey('parallel');
        const claims = Array.from({ length: 50 }, () => makeClaim('fp-a'));
        const results = await Promise.all(claims.map((claim) => store.acquire(key, claim)));
        const winners = results.filter((result) => result.acquired);
        expect(winners).toHaveLength(1);
        const winner = claims[results.findIndex((result) => result.acquired)]!;
        for (const result of results) {
          if (!result.acquired) expect(result.record.token).toBe(winner.token);
        }
        expect((await store.get(key))?.token).toBe(winner.token);
      });

      it('lets exactly one of 50 parallel claims win on each of 20 keys', async () => {
        const keys = Array.from({ length: 20 }, () => uniqueKey('many'));
        const results = await Promise.all(
          keys.flatMap((key) =>
            Array.from({ length: 50 }, () => store.acquire(key, makeClaim('fp-a')).then((r) => ({ key, r }))),
          ),
        );
        for (const key of keys) {
          expect(results.filter(({ key: k, r }) => k === key && r.acquired)).toHaveLength(1);
        }
      });

      it('lets the same fingerprint take over after the lease expires, with a new token', async () => {
        const key = uniqueKey('takeover');
        const first = makeClaim('fp-a', { leaseMs });
        await store.acquire(key, first);
        expect((await store.acquire(key, makeClaim('fp-a'))).acquired).toBe(false);
        await sleep(leaseMs + 150);
        const second = makeClaim('fp-a');
        expect(await store.acquire(key, second)).toEqual({ acquired: true });
        const record = await store.get(key);
        expect(record).toMatchObject({ state: 'in_flight', token: second.token });
      });

      it('never lets a different fingerprint take over an expired lease', async () => {
        const key = uniqueKey('no-takeover');
        const first = makeClaim('fp-a', { leaseMs });
        await store.acquire(key, first);
        await sleep(leaseMs + 150);
        const result = await store.acquire(key, makeClaim('fp-b'));
        expect(result).toMatchObject({
          acquired: false,
          record: { fingerprint: 'fp-a', token: first.token },
        });
      });

      it('never takes over a completed record, whatever the fingerprint', async () => {
        const key = uniqueKey('completed');
        const first = makeClaim('fp-a', { leaseMs });
        await store.acquire(key, first);
        expect(await store.complete(key, first.token, makeResponse(), LONG)).toBe(true);
        await sleep(leaseMs + 150);
        const same = await store.acquire(key, makeClaim('fp-a'));
        expect(same).toMatchObject({ acquired: false, record: { state: 'completed', token: first.token } });
        if (!same.acquired) expect(same.record.response).toEqual(makeResponse());
        expect(await store.acquire(key, makeClaim('fp-b'))).toMatchObject({ acquired: false });
      });
    });

    describe('fencing', () => {
      it('refuses complete, release and extend with a stale token after a takeover', async () => {
        const key = uniqueKey('fencing');
        const stale = makeClaim('fp-a', { leaseMs });
        await store.acquire(key, stale);
        await sleep(leaseMs + 150);
        const fresh = makeClaim('fp-a');
        expect((await store.acquire(key, fresh)).acquired).toBe(true);
        expect(await store.complete(key, stale.token, makeResponse(), LONG)).toBe(false);
        expect(await store.release(key, stale.token, LONG)).toBe(false);
        expect(await store.extend(key, stale.token, LONG)).toBe(false);
        expect(await store.get(key)).toMatchObject({
          state: 'in_flight',
          token: fresh.token,
          response: null,
        });
        expect(await store.complete(key, fresh.token, makeResponse(), LONG)).toBe(true);
      });

      it('refuses writes with a token that never held the key, and on absent keys', async () => {
        const key = uniqueKey('foreign');
        const claim = makeClaim();
        await store.acquire(key, claim);
        expect(await store.complete(key, 'not-the-token', makeResponse(), LONG)).toBe(false);
        expect(await store.release(key, 'not-the-token', LONG)).toBe(false);
        expect(await store.extend(key, 'not-the-token', LONG)).toBe(false);
        const absent = uniqueKey('absent-write');
        expect(await store.complete(absent, claim.token, makeResponse(), LONG)).toBe(false);
        expect(await store.release(absent, claim.token, LONG)).toBe(false);
        expect(await store.extend(absent, claim.token, LONG)).toBe(false);
        expect(await store.get(absent)).toBeNull();
      });

      it('refuses a second complete and a release after completion', async () => {
        const key = uniqueKey('twice');
        const claim = makeClaim();
        await store.acquire(key, claim);
        expect(await store.complete(key, claim.token, makeResponse(), LONG)).toBe(true);
        expect(await store.complete(key, claim.token, makeResponse(new Uint8Array([9])), LONG)).toBe(false);
        expect(await store.release(key, claim.token, LONG)).toBe(false);
        expect(await store.extend(key, claim.token, LONG)).toBe(false);
        expect((await store.get(key))?.response).toEqual(makeResponse());
      });

      it('lets the holder complete after its lease ran out when nobody took over', async () => {
        const key = uniqueKey('late');
        const claim = makeClaim('fp-a', { leaseMs });
        await store.acquire(key, claim);
        await sleep(leaseMs + 150);
        expect(await store.complete(key, claim.token, makeResponse(), LONG)).toBe(true);
      });

      it('extends a lease so that it is not taken over', async () => {
        const key = uniqueKey('extend');
        const claim = makeClaim('fp-a', { leaseMs });
        await store.acquire(key, claim);
        for (let i = 0; i < 3; i++) {
          await sleep(leaseMs / 2);
          expect(await store.extend(key, claim.token, leaseMs)).toBe(true);
        }
        expect((await store.acquire(key, makeClaim('fp-a'))).acquired).toBe(false);
        const record = await store.get(key);
        expect(record?.leaseExpiresAt).toBeGreaterThan(Date.now() + leaseMs / 4 - 1_000);
      });
    });

    describe('release', () => {
      it('moves to failed keeping the fingerprint; the same fingerprint re-claims, another is refused', async () => {
        const key = uniqueKey('release');
        const claim = makeClaim('fp-a');
        await store.acquire(key, claim);
        expect(await store.release(key, claim.token, LONG)).toBe(true);
        expect(await store.get(key)).toMatchObject({ state: 'failed', fingerprint: 'fp-a', response: null });
        expect(await store.acquire(key, makeClaim('fp-b'))).toMatchObject({
          acquired: false,
          record: { state: 'failed', fingerprint: 'fp-a' },
        });
        const again = makeClaim('fp-a');
        expect(await store.acquire(key, again)).toEqual({ acquired: true });
        expect(await store.get(key)).toMatchObject({ state: 'in_flight', token: again.token });
        expect(await store.release(key, claim.token, LONG)).toBe(false);
      });

      it('lets exactly one of 50 parallel re-claims of a failed record win', async () => {
        const key = uniqueKey('reclaim');
        const claim = makeClaim('fp-a');
        await store.acquire(key, claim);
        await store.release(key, claim.token, LONG);
        const results = await Promise.all(
          Array.from({ length: 50 }, () => store.acquire(key, makeClaim('fp-a'))),
        );
        expect(results.filter((result) => result.acquired)).toHaveLength(1);
      });
    });

    describe('expiry', () => {
      it('forgets an in-flight record after its ttl', async () => {
        const key = uniqueKey('ttl-inflight');
        await store.acquire(key, makeClaim('fp-a', { leaseMs: ttlMs, ttlMs }));
        await sleep(ttlMs + 200);
        expect(await store.get(key)).toBeNull();
        expect(await store.acquire(key, makeClaim('fp-b'))).toEqual({ acquired: true });
      });

      it('forgets a completed record after its ttl', async () => {
        const key = uniqueKey('ttl-completed');
        const claim = makeClaim('fp-a');
        await store.acquire(key, claim);
        expect(await store.complete(key, claim.token, makeResponse(), ttlMs)).toBe(true);
        expect((await store.get(key))?.state).toBe('completed');
        await sleep(ttlMs + 200);
        expect(await store.get(key)).toBeNull();
        expect(await store.acquire(key, makeClaim('fp-b'))).toEqual({ acquired: true });
      });

      it('forgets a failed record after its ttl', async () => {
        const key = uniqueKey('ttl-failed');
        const claim = makeClaim('fp-a');
        await store.acquire(key, claim);
        expect(await store.release(key, claim.token, ttlMs)).toBe(true);
        await sleep(ttlMs + 200);
        expect(await store.get(key)).toBeNull();
      });

      it('sets the record expiry on completion', async () => {
        const key = uniqueKey('ttl-set');
        const claim = makeClaim('fp-a', { ttlMs: LONG });
        await store.acquire(key, claim);
        const before = Date.now();
        await store.complete(key, claim.token, makeResponse(), 2 * LONG);
        const record = await store.get(key);
        expect(record!.expiresAt).toBeGreaterThan(before + 2 * LONG - 5_000);
        expect(record!.expiresAt).toBeLessThan(before + 2 * LONG + 5_000);
        if (options.readRaw) {
          const raw = await options.readRaw(store, key);
          expect(raw).not.toBeNull();
          expect(raw!.expiresInMs).not.toBeNull();
          expect(raw!.expiresInMs!).toBeGreaterThan(2 * LONG - 5_000);
          expect(raw!.expiresInMs!).toBeLessThanOrEqual(2 * LONG + 5_000);
        }
      });
    });

    describe('stored responses', () => {
      const roundTrip = async (response: StoredResponse): Promise<IdempotencyRecord | null> => {
        const key = uniqueKey('bytes');
        const claim = makeClaim();
        await store.acquire(key, claim);
        expect(await store.complete(key, claim.token, response, LONG)).toBe(true);
        return store.get(key);
      };

      it('keeps an empty body', async () => {
        const record = await roundTrip({ status: 204, headers: [], body: new Uint8Array(0) });
        expect(record?.response).toEqual({ status: 204, headers: [], body: new Uint8Array(0) });
      });

      it('keeps every byte value 0..255 exactly', async () => {
        const body = Uint8Array.from({ length: 512 }, (_, i) => i % 256);
        const record = await roundTrip(makeResponse(body));
        expect(record!.response!.body).toBeInstanceOf(Uint8Array);
        expect(Array.from(record!.response!.body)).toEqual(Array.from(body));
      });

      it('keeps a 1 MiB body byte-exact', async () => {
        const body = new Uint8Array(1024 * 1024);
        for (let i = 0; i < body.length; i++) body[i] = (i * 7919 + (i >> 8)) & 0xff;
        const record = await roundTrip(makeResponse(body));
        expect(record!.response!.body.length).toBe(body.length);
        expect(Buffer.compare(Buffer.from(record!.response!.body), Buffer.from(body))).toBe(0);
      });

      it('keeps status and repeated headers in order, with unusual values', async () => {
        const response: StoredResponse = {
          status: 418,
          headers: [
            ['x-a', '1'],
            ['set-later', 'x; y="z"'],
            ['x-a', '2'],
            ['x-empty', ''],
            ['x-unicode', 'caf\u00e9 \u{1F600}'],
            ['x-a', '3'],
          ],
          body: new TextEncoder().encode('teapot'),
        };
        expect((await roundTrip(response))?.response).toEqual(response);
      });

      it('keeps the omitted-body marker', async () => {
        for (const omitted of ['too_large', 'streaming'] as const) {
          const response: StoredResponse = {
            status: 200,
            headers: [['content-type', 'text/plain']],
            body: new Uint8Array(0),
            omitted,
          };
          expect((await roundTrip(response))?.response).toEqual(response);
        }
      });
    });

    describe('get and delete', () => {
      it('returns null for an absent key', async () => {
        expect(await store.get(uniqueKey('none'))).toBeNull();
      });

      it('deletes a record in any state, and deleting an absent key is fine', async () => {
        const key = uniqueKey('delete');
        const claim = makeClaim();
        await store.acquire(key, claim);
        await store.delete(key);
        expect(await store.get(key)).toBeNull();
        expect(await store.acquire(key, makeClaim('fp-other'))).toEqual({ acquired: true });
        await store.delete(key);
        await store.delete(key);
        expect(await store.get(key)).toBeNull();
      });

      it('keeps keys that differ in one character independent', async () => {
        const base = uniqueKey('near');
        const keys = [base + 'a', base + 'b', base + 'A', base + 'a ', base];
        const claims = keys.map(() => makeClaim());
        for (const [i, key] of keys.entries())
          expect((await store.acquire(key, claims[i]!)).acquired).toBe(true);
        await store.complete(keys[0]!, claims[0]!.token, makeResponse(), LONG);
        await store.release(keys[1]!, claims[1]!.token, LONG);
        await store.delete(keys[2]!);
        expect((await store.get(keys[0]!))?.state).toBe('completed');
        expect((await store.get(keys[1]!))?.state).toBe('failed');
        expect(await store.get(keys[2]!)).toBeNull();
        expect((await store.get(keys[3]!))?.token).toBe(claims[3]!.token);
        expect((await store.get(keys[4]!))?.token).toBe(claims[4]!.token);
      });
    });

    options.additionalTests?.(getStore);
  });
}
