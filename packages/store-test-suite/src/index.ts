import {
  type Claim,
  type IdempotencyRecord,
  isIdempotencyError,
  type Store,
  type StoredResponse,
} from '@idem/core';
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
  readRaw?: ((store: Store, key: string) => Promise<RawRecord | null>) | undefined;
  /** Called once after all tests (close clients, drop tables). */
  teardown?: ((store: Store) => void | Promise<void>) | undefined;
  /**
   * Short real durations the timing tests use, in ms. Stores keep time on their own clock, so fake
   * timers do not apply. Defaults: lease 300, ttl 600. Raise them for slow or coarse-clocked backends
   * (e.g. a backend with one-second expiry resolution).
   */
  timing?:
    | {
        /** The lease the timing tests claim with, in ms. Default 300. */
        leaseMs?: number | undefined;
        /** The record ttl the timing tests use, in ms. Default 600. */
        ttlMs?: number | undefined;
      }
    | undefined;
  /**
   * Optional: make the completed record at `key` one the store cannot decode, by writing the backend
   * directly (a field of the wrong type, a state that does not exist). With it, the suite checks that
   * `get` and `acquire` report such a record as `IdempotencyError` `record_corrupt` naming the store and
   * the key, never as a record, and that a claim does not overwrite it.
   */
  corruptRecord?: ((store: Store, key: string) => Promise<void>) | undefined;
  /** Test-local registration hook for store-specific cases that need the same store. */
  additionalTests?: ((getStore: () => Store) => void) | undefined;
}

const LONG = 60_000;
/**
 * How far a time the store reports may sit from this process's clock around the call: the store's
 * clock may differ a little, and a slow round trip adds to it. Long durations (multiples of LONG) keep
 * every wrong value (a lease or expiry left as it was, or taken from another duration) far outside it.
 */
const CLOCK_MARGIN = 5_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let counter = 0;
/** A fresh storage-like key, unique across runs and processes. */
export function uniqueKey(label = 'k'): string {
  counter++;
  return `idem-test:${label}:${Date.now().toString(36)}:${counter}:${Math.random().toString(36).slice(2, 10)}`;
}

/** A claim with a fresh token. */
export function makeClaim(
  fingerprint = 'fp-1',
  overrides: { [Field in keyof Claim]?: Claim[Field] | undefined } = {},
): Claim {
  // Field by field, not a spread: an override given as `undefined` keeps the default.
  return {
    fingerprint: overrides.fingerprint ?? fingerprint,
    token: overrides.token ?? crypto.randomUUID(),
    leaseMs: overrides.leaseMs ?? LONG,
    ttlMs: overrides.ttlMs ?? LONG,
  };
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
 * Every case runs against the real backend with short real durations: claim on an absent key with
 * its lease and expiry, the blocking record, refused claims that write nothing, 50 parallel claims
 * with exactly one winner (on an absent key, an expired lease, a failed record), lease takeover and
 * re-claim of a failed record with a fresh token, lease and expiry, fingerprints that never take
 * over, fencing of stale tokens, the holder's writes past its lease, extend renewing the lease from
 * now without moving the expiry, release and re-claim, ttl expiry (and no writes after it), the
 * expiry set by claim, completion and release, byte-exact bodies, headers in order, get and delete in
 * every state, independence of near-identical keys.
 */
export function testStore(options: StoreTestOptions): void {
  const leaseMs = options.timing?.leaseMs ?? 300;
  const ttlMs = options.timing?.ttlMs ?? 600;
  let store: Store;
  const getStore = () => store;

  /**
   * Check that `key`'s record ends `ttl` after a moment between `before` and `after` (this process's
   * clock), and that the backend itself drops it then (when the suite can read it raw).
   */
  const expectExpiry = async (key: string, ttl: number, before: number, after: number) => {
    const record = await store.get(key);
    expect(record).not.toBeNull();
    expect(record!.expiresAt).toBeGreaterThan(before + ttl - CLOCK_MARGIN);
    expect(record!.expiresAt).toBeLessThan(after + ttl + CLOCK_MARGIN);
    if (options.readRaw) {
      const raw = await options.readRaw(store, key);
      expect(raw).not.toBeNull();
      expect(raw!.expiresInMs).not.toBeNull();
      expect(raw!.expiresInMs!).toBeGreaterThan(ttl - CLOCK_MARGIN);
      expect(raw!.expiresInMs!).toBeLessThanOrEqual(ttl + CLOCK_MARGIN);
    }
  };

  /** Check that `key`'s lease ends `lease` after a moment between `before` and `after`. */
  const expectLease = async (key: string, lease: number, before: number, after: number) => {
    const record = await store.get(key);
    expect(record).not.toBeNull();
    expect(record!.leaseExpiresAt).toBeGreaterThan(before + lease - CLOCK_MARGIN);
    expect(record!.leaseExpiresAt).toBeLessThan(after + lease + CLOCK_MARGIN);
  };

  /**
   * Claim `key` (fingerprint `fp-a`) with a lease and a ttl far apart: the claim must succeed and the
   * record be the new claim's, with a lease and an expiry counted from now. Over a record the claim takes
   * over, the defaults differ from any earlier claim's or release's too.
   */
  const expectClaimed = async (key: string, leaseMs = 2 * LONG, ttlMs = 3 * LONG) => {
    const claim = makeClaim('fp-a', { leaseMs, ttlMs });
    const before = Date.now();
    expect(await store.acquire(key, claim)).toEqual({ acquired: true });
    const after = Date.now();
    const record = await store.get(key);
    expect(record).toMatchObject({
      state: 'in_flight',
      fingerprint: 'fp-a',
      token: claim.token,
      response: null,
    });
    await expectLease(key, leaseMs, before, after);
    await expectExpiry(key, ttlMs, before, after);
    return { claim, record };
  };

  describe(`store conformance: ${options.name}`, () => {
    beforeAll(async () => {
      store = await options.createStore();
    });
    afterAll(async () => {
      if (store) await options.teardown?.(store);
    });

    describe('acquire', () => {
      it('claims an absent key and records it in flight, with the lease and expiry of the claim', async () => {
        const key = uniqueKey('absent');
        // Lease and ttl far apart, so that neither can pass for the other.
        await expectClaimed(key, LONG, 3 * LONG);
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

      it('writes nothing when it refuses a claim, and returns the record as it is', async () => {
        // The refused claims ask for other leases and ttls: a store that wrote any of it would show.
        const refused = (fingerprint: string) =>
          makeClaim(fingerprint, { leaseMs: 3 * LONG, ttlMs: 4 * LONG });
        const inFlight = uniqueKey('refused-in-flight');
        const completed = uniqueKey('refused-completed');
        const failed = uniqueKey('refused-failed');
        const claims = [inFlight, completed, failed].map(() =>
          makeClaim('fp-a', { leaseMs: LONG, ttlMs: 2 * LONG }),
        );
        for (const [i, key] of [inFlight, completed, failed].entries())
          expect(await store.acquire(key, claims[i]!)).toEqual({ acquired: true });
        expect(await store.complete(completed, claims[1]!.token, makeResponse(), 2 * LONG)).toBe(true);
        expect(await store.release(failed, claims[2]!.token, 2 * LONG)).toBe(true);
        const cases: Array<[string, string[]]> = [
          [inFlight, ['fp-a', 'fp-b']],
          [completed, ['fp-a', 'fp-b']],
          [failed, ['fp-b']],
        ];
        for (const [key, fingerprints] of cases) {
          const record = await store.get(key);
          expect(record).not.toBeNull();
          for (const fingerprint of fingerprints) {
            expect(await store.acquire(key, refused(fingerprint))).toEqual({ acquired: false, record });
          }
          expect(await store.get(key)).toEqual(record);
        }
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

      it('lets the same fingerprint take over after the lease expires, with a new token, lease and expiry', async () => {
        const key = uniqueKey('takeover');
        const first = makeClaim('fp-a', { leaseMs, ttlMs: LONG });
        await store.acquire(key, first);
        expect((await store.acquire(key, makeClaim('fp-a'))).acquired).toBe(false);
        await sleep(leaseMs + 150);
        await expectClaimed(key);
      });

      it('lets exactly one of 50 parallel claims take over an expired lease, or the late holder complete', async () => {
        const key = uniqueKey('parallel-takeover');
        const first = makeClaim('fp-a', { leaseMs });
        await store.acquire(key, first);
        await sleep(leaseMs + 150);
        const claims = Array.from({ length: 50 }, () => makeClaim('fp-a'));
        // The holder, late but not yet taken over, completes in the same race: exactly one write wins.
        const [results, completed] = await Promise.all([
          Promise.all(claims.map((claim) => store.acquire(key, claim))),
          store.complete(key, first.token, makeResponse(), LONG),
        ]);
        const winners = results.filter((result) => result.acquired);
        expect(winners.length + (completed ? 1 : 0)).toBe(1);
        const token = completed ? first.token : claims[results.findIndex((result) => result.acquired)]!.token;
        for (const result of results) {
          if (!result.acquired) expect(result.record.token).toBe(token);
        }
        expect(await store.get(key)).toMatchObject({
          state: completed ? 'completed' : 'in_flight',
          fingerprint: 'fp-a',
          token,
        });
      });

      it('never lets a different fingerprint take over an expired lease', async () => {
        const key = uniqueKey('no-takeover');
        const first = makeClaim('fp-a', { leaseMs });
        await store.acquire(key, first);
        const record = await store.get(key);
        await sleep(leaseMs + 150);
        const result = await store.acquire(key, makeClaim('fp-b'));
        expect(result).toMatchObject({
          acquired: false,
          record: { fingerprint: 'fp-a', token: first.token },
        });
        expect(await store.get(key)).toEqual(record);
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
        const record = await store.get(key);
        expect(record).toMatchObject({ state: 'in_flight', token: fresh.token, response: null });
        expect(await store.complete(key, stale.token, makeResponse(), 3 * LONG)).toBe(false);
        expect(await store.release(key, stale.token, 3 * LONG)).toBe(false);
        expect(await store.extend(key, stale.token, 3 * LONG)).toBe(false);
        expect(await store.get(key)).toEqual(record);
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

      it('lets the holder complete, release or extend after its lease ran out when nobody took over', async () => {
        const keys = [uniqueKey('late-complete'), uniqueKey('late-release'), uniqueKey('late-extend')];
        const claims = keys.map(() => makeClaim('fp-a', { leaseMs }));
        for (const [i, key] of keys.entries()) await store.acquire(key, claims[i]!);
        await sleep(leaseMs + 150);
        expect(await store.complete(keys[0]!, claims[0]!.token, makeResponse(), LONG)).toBe(true);
        expect((await store.get(keys[0]!))?.state).toBe('completed');
        expect(await store.release(keys[1]!, claims[1]!.token, LONG)).toBe(true);
        expect((await store.get(keys[1]!))?.state).toBe('failed');
        // A late heartbeat renews the lease, and the renewed lease is not taken over.
        expect(await store.extend(keys[2]!, claims[2]!.token, LONG)).toBe(true);
        expect(await store.acquire(keys[2]!, makeClaim('fp-a'))).toMatchObject({
          acquired: false,
          record: { state: 'in_flight', token: claims[2]!.token },
        });
      });

      it('extends a lease to the new length from now, so that it is not taken over, and keeps the expiry', async () => {
        const key = uniqueKey('extend');
        // Not extended: shows that the original lease has run out when the extended one is checked.
        const control = uniqueKey('extend-control');
        const claim = makeClaim('fp-a', { leaseMs, ttlMs: 3 * LONG });
        await store.acquire(key, claim);
        await store.acquire(control, makeClaim('fp-a', { leaseMs, ttlMs: 3 * LONG }));
        const claimed = await store.get(key);
        await sleep(leaseMs / 2);
        const before = Date.now();
        expect(await store.extend(key, claim.token, 2 * LONG)).toBe(true);
        const after = Date.now();
        await expectLease(key, 2 * LONG, before, after);
        expect((await store.get(key))?.expiresAt).toBe(claimed!.expiresAt);
        await sleep(leaseMs / 2 + 150);
        expect((await store.acquire(control, makeClaim('fp-a'))).acquired).toBe(true);
        expect(await store.acquire(key, makeClaim('fp-a'))).toMatchObject({
          acquired: false,
          record: { state: 'in_flight', token: claim.token },
        });
      });

      it('renews the lease from now, not from its previous end, also to a shorter one, never moving the expiry', async () => {
        const key = uniqueKey('extend-from-now');
        const claim = makeClaim('fp-a', { leaseMs: LONG, ttlMs: 4 * LONG });
        const claimedAt = Date.now();
        await store.acquire(key, claim);
        const claimedBy = Date.now();
        const claimed = await store.get(key);
        for (const lease of [2 * LONG, 5 * LONG, leaseMs]) {
          // Longer, then past the record's end (the record still ends at its ttl), then shorter.
          const before = Date.now();
          expect(await store.extend(key, claim.token, lease)).toBe(true);
          const after = Date.now();
          await expectLease(key, lease, before, after);
          expect((await store.get(key))?.expiresAt).toBe(claimed!.expiresAt);
          await expectExpiry(key, 4 * LONG, claimedAt, claimedBy);
        }
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

      it("refuses the holder's complete, release and extend once it released", async () => {
        const key = uniqueKey('released');
        const claim = makeClaim('fp-a');
        await store.acquire(key, claim);
        expect(await store.release(key, claim.token, LONG)).toBe(true);
        const record = await store.get(key);
        expect(await store.complete(key, claim.token, makeResponse(), 2 * LONG)).toBe(false);
        expect(await store.release(key, claim.token, 2 * LONG)).toBe(false);
        expect(await store.extend(key, claim.token, 2 * LONG)).toBe(false);
        expect(await store.get(key)).toEqual(record);
      });

      it('re-claims a failed record with a fresh token, lease and expiry, and fences the old token', async () => {
        const key = uniqueKey('reclaim-fresh');
        const first = makeClaim('fp-a', { leaseMs: LONG, ttlMs: LONG });
        await store.acquire(key, first);
        expect(await store.release(key, first.token, 4 * LONG)).toBe(true);
        const { claim: second, record } = await expectClaimed(key);
        expect(await store.complete(key, first.token, makeResponse(), LONG)).toBe(false);
        expect(await store.release(key, first.token, LONG)).toBe(false);
        expect(await store.extend(key, first.token, LONG)).toBe(false);
        expect(await store.get(key)).toEqual(record);
        expect(await store.complete(key, second.token, makeResponse(), LONG)).toBe(true);
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
        // Claimed first, before anything reads it: another fingerprint is no longer blocked.
        const other = uniqueKey('ttl-failed-claim');
        for (const k of [key, other]) {
          const claim = makeClaim('fp-a');
          await store.acquire(k, claim);
          expect(await store.release(k, claim.token, ttlMs)).toBe(true);
        }
        await sleep(ttlMs + 200);
        expect(await store.get(key)).toBeNull();
        expect(await store.acquire(other, makeClaim('fp-b'))).toEqual({ acquired: true });
      });

      it("refuses the holder's complete, release and extend once the in-flight record expired, and keeps it gone", async () => {
        const keys = [
          uniqueKey('expired-complete'),
          uniqueKey('expired-release'),
          uniqueKey('expired-extend'),
        ];
        const claims = keys.map(() => makeClaim('fp-a', { leaseMs: ttlMs, ttlMs }));
        for (const [i, key] of keys.entries()) await store.acquire(key, claims[i]!);
        await sleep(ttlMs + 200);
        expect(await store.complete(keys[0]!, claims[0]!.token, makeResponse(), LONG)).toBe(false);
        expect(await store.release(keys[1]!, claims[1]!.token, LONG)).toBe(false);
        expect(await store.extend(keys[2]!, claims[2]!.token, LONG)).toBe(false);
        for (const key of keys) {
          expect(await store.get(key)).toBeNull();
          expect(await store.acquire(key, makeClaim('fp-b'))).toEqual({ acquired: true });
        }
      });

      it('sets the record expiry on completion', async () => {
        const key = uniqueKey('ttl-set');
        const claim = makeClaim('fp-a', { ttlMs: LONG });
        await store.acquire(key, claim);
        const before = Date.now();
        expect(await store.complete(key, claim.token, makeResponse(), 2 * LONG)).toBe(true);
        const after = Date.now();
        await expectExpiry(key, 2 * LONG, before, after);
      });

      it('sets the record expiry on release', async () => {
        const key = uniqueKey('ttl-set-failed');
        const claim = makeClaim('fp-a', { ttlMs: LONG });
        await store.acquire(key, claim);
        const before = Date.now();
        expect(await store.release(key, claim.token, 2 * LONG)).toBe(true);
        const after = Date.now();
        await expectExpiry(key, 2 * LONG, before, after);
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
        for (const settle of ['complete', 'release'] as const) {
          const settled = uniqueKey(`delete-${settle}`);
          const holder = makeClaim('fp-a');
          await store.acquire(settled, holder);
          expect(
            settle === 'complete'
              ? await store.complete(settled, holder.token, makeResponse(), LONG)
              : await store.release(settled, holder.token, LONG),
          ).toBe(true);
          await store.delete(settled);
          expect(await store.get(settled)).toBeNull();
          expect(await store.acquire(settled, makeClaim('fp-other'))).toEqual({ acquired: true });
        }
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

    const { corruptRecord } = options;
    if (corruptRecord) {
      describe('a record it cannot read', () => {
        it('is record_corrupt on get and on a claim, naming the store and the key, and a claim leaves it', async () => {
          const key = uniqueKey('corrupt');
          const holder = makeClaim('fp-a');
          await store.acquire(key, holder);
          expect(await store.complete(key, holder.token, makeResponse(), LONG)).toBe(true);
          await corruptRecord(store, key);
          const attempts: Array<[string, () => Promise<unknown>]> = [
            ['get', () => store.get(key)],
            ['acquire', () => store.acquire(key, makeClaim('fp-a'))],
            ['acquire with another fingerprint', () => store.acquire(key, makeClaim('fp-b'))],
            ['get after the claims', () => store.get(key)],
          ];
          for (const [name, attempt] of attempts) {
            const outcome = await attempt().then(
              (value) => ({ value }),
              (error: unknown) => ({ error }),
            );
            expect('error' in outcome && isIdempotencyError(outcome.error, 'record_corrupt'), name).toBe(
              true,
            );
            expect((outcome as { error: { details: unknown } }).error.details, name).toMatchObject({
              store: store.name,
              key,
            });
          }
        });
      });
    }

    options.additionalTests?.(getStore);
  });
}
