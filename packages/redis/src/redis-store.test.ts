import {
  IdempotencyEngine,
  IdempotencyError,
  isIdempotencyError,
  type Store,
  type StoredResponse,
} from '@idem/core';
import { makeClaim, makeResponse, testStore, uniqueKey } from '@idem/store-test-suite';
import { redisUrl } from '@idem/test-services';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisStore } from './index.js';

const LONG = 60_000;
const url = await redisUrl();
// The settings the README recommends; the conformance suite starts before the connection is ready,
// which the store allows (it only refuses while the client knows the connection is down).
const client = new Redis(url, { maxRetriesPerRequest: 0 });
afterAll(() => client.quit());

testStore({
  name: 'redis',
  createStore: () => redisStore({ client }),
  readRaw: async (_store, key) => {
    const pttl = await client.pttl(key);
    if (pttl === -2) return null;
    return { expiresInMs: pttl < 0 ? null : pttl };
  },
  // A state no record has.
  corruptRecord: async (_store, key) => {
    await client.hset(key, 's', 'bogus');
  },
});

describe('redisStore', () => {
  let store: Store;
  beforeAll(() => {
    store = redisStore({ client });
  });

  const completed = async (response: StoredResponse = makeResponse()): Promise<string> => {
    const key = uniqueKey('redis');
    const claim = makeClaim();
    expect(await store.acquire(key, claim)).toEqual({ acquired: true });
    expect(await store.complete(key, claim.token, response, LONG)).toBe(true);
    return key;
  };

  describe('what it stores', () => {
    it('keeps one hash per record with the body as raw bytes, not re-encoded', async () => {
      const body = Uint8Array.from({ length: 4096 }, (_, i) => (i * 31) % 256);
      const key = await completed(makeResponse(body));
      expect(await client.type(key)).toBe('hash');
      const raw = await client.hgetallBuffer(key);
      expect(Buffer.compare(raw['b']!, Buffer.from(body))).toBe(0);
      expect(Object.keys(raw).sort()).toEqual(['b', 'c', 'e', 'f', 'h', 'l', 's', 't', 'v']);
      expect(raw['s']!.toString()).toBe('completed');
      // The whole record costs little more than its body.
      expect(await client.hstrlen(key, 'b')).toBe(body.length);
    });

    it('ends the key exactly when the record ends (PEXPIREAT at expiresAt)', async () => {
      const key = uniqueKey('expiry');
      await store.acquire(key, makeClaim('fp', { ttlMs: LONG }));
      const inFlight = await store.get(key);
      expect(Number(await client.call('PEXPIRETIME', key))).toBe(inFlight!.expiresAt);
      const claim = makeClaim();
      const other = uniqueKey('expiry');
      await store.acquire(other, claim);
      await store.complete(other, claim.token, makeResponse(), 3 * LONG);
      const done = await store.get(other);
      expect(Number(await client.call('PEXPIRETIME', other))).toBe(done!.expiresAt);
    });

    it('keeps lease and expiry times on the Redis clock', async () => {
      const [seconds, micros] = (await client.time()) as [string | number, string | number];
      const redisNow = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
      const key = uniqueKey('clock');
      await store.acquire(key, makeClaim('fp', { leaseMs: 5_000, ttlMs: LONG }));
      const record = await store.get(key);
      expect(record!.leaseExpiresAt - redisNow).toBeGreaterThanOrEqual(5_000);
      expect(record!.leaseExpiresAt - redisNow).toBeLessThan(5_000 + 2_000);
      expect(record!.expiresAt - record!.leaseExpiresAt).toBe(LONG - 5_000);
    });

    it('treats an acquire re-sent with the same token (its reply lost) as acquired', async () => {
      const key = uniqueKey('resent');
      const claim = makeClaim();
      expect(await store.acquire(key, claim)).toEqual({ acquired: true });
      expect(await store.acquire(key, claim)).toEqual({ acquired: true });
      expect(await store.acquire(key, makeClaim())).toMatchObject({
        acquired: false,
        record: { token: claim.token },
      });
      await store.complete(key, claim.token, makeResponse(), LONG);
      expect(await store.acquire(key, claim)).toMatchObject({
        acquired: false,
        record: { state: 'completed' },
      });
    });

    it('writes under the store prefix, and stores with other prefixes do not see the record', async () => {
      const prefixed = redisStore({ client, prefix: 'idem-test-prefix:' });
      const key = uniqueKey('prefix');
      const claim = makeClaim();
      expect(await prefixed.acquire(key, claim)).toEqual({ acquired: true });
      expect(await client.exists(`idem-test-prefix:${key}`)).toBe(1);
      expect(await client.exists(key)).toBe(0);
      expect(await store.get(key)).toBeNull();
      expect((await prefixed.get(key))?.token).toBe(claim.token);
      await prefixed.delete(key);
      expect(await client.exists(`idem-test-prefix:${key}`)).toBe(0);
    });

    it("honours the client's own ioredis keyPrefix for scripts and delete", async () => {
      const scoped = new Redis(url, { keyPrefix: 'idem-test-kp:', maxRetriesPerRequest: 0 });
      try {
        const kpStore = redisStore({ client: scoped });
        const key = uniqueKey('kp');
        const claim = makeClaim();
        await kpStore.acquire(key, claim);
        expect(await kpStore.complete(key, claim.token, makeResponse(), LONG)).toBe(true);
        expect(await client.hget(`idem-test-kp:${key}`, 's')).toBe('completed');
        await kpStore.delete(key);
        expect(await client.exists(`idem-test-kp:${key}`)).toBe(0);
      } finally {
        await scoped.quit();
      }
    });
  });

  describe('records it cannot read', () => {
    const operations = (key: string): Array<[string, () => Promise<unknown>]> => [
      ['get', () => store.get(key)],
      ['acquire', () => store.acquire(key, makeClaim())],
      ['complete', () => store.complete(key, 'token', makeResponse(), LONG)],
      ['release', () => store.release(key, 'token', LONG)],
      ['extend', () => store.extend(key, 'token', LONG)],
    ];

    const expectCorrupt = async (key: string, why: RegExp): Promise<void> => {
      for (const [name, operation] of operations(key)) {
        const error = await operation().then(
          () => new Error(`${name} did not throw`),
          (thrown: unknown) => thrown,
        );
        expect(error, name).toBeInstanceOf(IdempotencyError);
        expect((error as IdempotencyError).code, name).toBe('record_corrupt');
        expect((error as IdempotencyError).message, name).toContain(`key "${key}"`);
        expect((error as IdempotencyError).message, name).toMatch(why);
        expect((error as IdempotencyError).details, name).toMatchObject({ store: 'redis', key });
      }
    };

    const claimed = async (): Promise<string> => {
      const key = uniqueKey('corrupt');
      await store.acquire(key, makeClaim());
      return key;
    };

    it('reports a key of another type as record_corrupt, and leaves it alone', async () => {
      const key = uniqueKey('corrupt');
      await client.set(key, Buffer.from([0xff, 0x00, 0x13, 0x37]), 'PX', LONG);
      await expectCorrupt(key, /holds a Redis string, not a hash/);
      expect(await client.getBuffer(key)).toEqual(Buffer.from([0xff, 0x00, 0x13, 0x37]));
      const list = uniqueKey('corrupt');
      await client.rpush(list, 'x');
      await client.pexpire(list, LONG);
      await expectCorrupt(list, /holds a Redis list/);
    });

    it('reports a hash written by something else, or by another format version', async () => {
      const foreign = uniqueKey('corrupt');
      await client.hset(foreign, { name: 'not ours' });
      await client.pexpire(foreign, LONG);
      await expectCorrupt(foreign, /format version/);

      const older = await claimed();
      await client.hset(older, 'v', '0');
      await expectCorrupt(older, /format version/);
    });

    it('reports a truncated record (fields missing or garbled)', async () => {
      const noToken = await claimed();
      await client.hdel(noToken, 't');
      await expectCorrupt(noToken, /lacks a fingerprint, token, lease or expiry/);

      const badTime = await claimed();
      await client.hset(badTime, 'l', 'soon');
      await expectCorrupt(badTime, /lacks a fingerprint, token, lease or expiry/);

      const badState = await claimed();
      await client.hset(badState, 's', 'done');
      await expectCorrupt(badState, /unknown state/);
    });

    it('never replays a completed record whose response is garbled', async () => {
      const cases: Array<[field: string, value: string | null, why: RegExp]> = [
        ['h', '{"content-type":"text/plain"}', /malformed headers/],
        ['h', '["content-type"]', /malformed headers/],
        ['h', '[truncated', /malformed headers/],
        ['c', '2000', /malformed status/],
        ['o', 'lost', /omitted-body marker/],
        ['b', null, /lacks field b/],
        ['h', null, /lacks field h/],
      ];
      for (const [field, value, why] of cases) {
        const key = await completed();
        if (value === null) await client.hdel(key, field);
        else await client.hset(key, field, value);
        for (const read of [() => store.get(key), () => store.acquire(key, makeClaim('fp-1'))]) {
          await expect(read()).rejects.toSatisfy(
            (error) => isIdempotencyError(error, 'record_corrupt') && why.test(error.message),
          );
        }
      }
    });

    it('fails an engine run with record_corrupt without running the work', async () => {
      const key = uniqueKey('corrupt');
      await client.set(key, 'garbage', 'PX', LONG);
      const engine = new IdempotencyEngine({ store });
      let ran = 0;
      await expect(
        engine.run(
          { storageKey: key, fingerprint: 'fp' },
          async () => ran++,
          () => makeResponse(),
        ),
      ).rejects.toSatisfy((error) => isIdempotencyError(error, 'record_corrupt'));
      expect(ran).toBe(0);
      // Deleting the key is the way out.
      await store.delete(key);
      await engine.run(
        { storageKey: key, fingerprint: 'fp' },
        async () => ran++,
        () => makeResponse(),
      );
      expect(ran).toBe(1);
    });
  });

  describe('through the engine', () => {
    it('runs the work exactly once for 50 concurrent requests on one key; the others replay', async () => {
      const engine = new IdempotencyEngine({ store, wait: { timeoutMs: 10_000, pollMs: 20 } });
      const key = uniqueKey('engine');
      let executions = 0;
      const work = async (): Promise<string> => {
        executions++;
        await new Promise((resolve) => setTimeout(resolve, 100));
        return `order-${executions}`;
      };
      const settle = (value: string): StoredResponse => ({
        status: 201,
        headers: [['content-type', 'text/plain']],
        body: new TextEncoder().encode(value),
      });
      const results = await Promise.all(
        Array.from({ length: 50 }, () => engine.run({ storageKey: key, fingerprint: 'fp' }, work, settle)),
      );
      expect(executions).toBe(1);
      expect(results.filter((result) => !result.replayed)).toHaveLength(1);
      const replays = results.filter((result) => result.replayed);
      expect(replays).toHaveLength(49);
      for (const replay of replays) expect(new TextDecoder().decode(replay.response.body)).toBe('order-1');
    });

    it('answers the losers of 50 concurrent claims with in_flight when they do not wait', async () => {
      const engine = new IdempotencyEngine({ store });
      const key = uniqueKey('engine');
      let executions = 0;
      let finishWork: () => void = () => {};
      const workRuns = new Promise<void>((resolve) => {
        finishWork = resolve;
      });
      let answered = 0;
      let allLosersAnswered: () => void = () => {};
      const losersAnswered = new Promise<void>((resolve) => {
        allLosersAnswered = resolve;
      });
      const outcomes = Array.from({ length: 50 }, () =>
        engine
          .run(
            { storageKey: key, fingerprint: 'fp' },
            async () => {
              executions++;
              await workRuns;
            },
            () => makeResponse(),
          )
          .then(
            () => 'executed',
            (error: unknown) => {
              if (++answered === 49) allLosersAnswered();
              return isIdempotencyError(error, 'in_flight') ? 'in_flight' : error;
            },
          ),
      );
      // The work holds the key until every other request has had its answer.
      await losersAnswered;
      finishWork();
      const settled = await Promise.all(outcomes);
      expect(executions).toBe(1);
      expect(settled.filter((outcome) => outcome === 'executed')).toHaveLength(1);
      expect(settled.filter((outcome) => outcome === 'in_flight')).toHaveLength(49);
    });
  });

  it('runs on the ioredis major its test project names (vitest.ioredis6.config.ts: 6, speaking RESP3)', () => {
    const probe = new Redis({ lazyConnect: true });
    const { protocol } = probe.options as { protocol?: number };
    probe.disconnect();
    expect(protocol).toBe(process.env['IDEM_IOREDIS_MAJOR'] === '6' ? 3 : undefined);
  });

  it('refuses something that is not an ioredis client', () => {
    expect(() => redisStore({ client: {} as Redis })).toThrow(TypeError);
    expect(() => redisStore(undefined as unknown as { client: Redis })).toThrow(TypeError);
  });
});
