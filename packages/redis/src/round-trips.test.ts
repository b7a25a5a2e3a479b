import { createHash } from 'node:crypto';
import {
  IdempotencyEngine,
  idempotent,
  isIdempotencyError,
  type Store,
  type StoredResponse,
} from '@idem/core';
import { uniqueKey } from '@idem/store-test-suite';
import { RedisServerProcess } from '@idem/test-services';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisStore } from './index.js';
import { SCRIPTS } from './scripts.js';

// A private server, so that the server-side command counts see this test's commands only and
// SCRIPT FLUSH disturbs nobody else.
let server: RedisServerProcess;
let client: Redis;
let admin: Redis;
let store: Store;
const sent: string[] = [];

beforeAll(async () => {
  server = await RedisServerProcess.start();
  client = new Redis(server.url, { maxRetriesPerRequest: 0 });
  admin = new Redis(server.url);
  // Every command the client sends passes through sendCommand, re-sends after NOSCRIPT included.
  const sendCommand = client.sendCommand.bind(client);
  client.sendCommand = ((command, ...rest) => {
    sent.push(command.name);
    return sendCommand(command, ...rest);
  }) as typeof client.sendCommand;
  await client.ping();
  store = redisStore({ client });
});

afterAll(async () => {
  client?.disconnect();
  admin?.disconnect();
  await server?.stop();
});

/** Scripts run by the server (EVAL + EVALSHA, NOSCRIPT refusals included); the commands they call are not counted. */
async function serverScriptCalls(): Promise<number> {
  const stats = await admin.info('commandstats');
  let total = 0;
  for (const match of stats.matchAll(/^cmdstat_(eval|evalsha):calls=(\d+),.*rejected_calls=(\d+)/gm)) {
    total += Number(match[2]) + Number(match[3]);
  }
  return total;
}

/** How many commands the client sent, and how many scripts the server ran, during `action`. */
async function roundTrips(action: () => Promise<unknown>): Promise<{ client: number; server: number }> {
  const sentBefore = sent.length;
  const serverBefore = await serverScriptCalls();
  await action();
  return { client: sent.length - sentBefore, server: (await serverScriptCalls()) - serverBefore };
}

const response: StoredResponse = {
  status: 201,
  headers: [['content-type', 'text/plain']],
  body: new Uint8Array([1]),
};

describe('round trips', () => {
  it('costs 2 for a new request and 1 for a replay, from the first request on a new connection', async () => {
    const engine = new IdempotencyEngine({ store });
    const request = { storageKey: uniqueKey('rt'), fingerprint: 'fp' };
    // The first use of a script on a connection sends its source (EVAL), still one round trip.
    expect(
      await roundTrips(() =>
        engine.run(
          request,
          async () => 'new',
          () => response,
        ),
      ),
    ).toEqual({
      client: 2,
      server: 2,
    });
    expect(
      await roundTrips(() =>
        engine.run(
          request,
          async () => 'again',
          () => response,
        ),
      ),
    ).toEqual({
      client: 1,
      server: 1,
    });
    const next = { storageKey: uniqueKey('rt'), fingerprint: 'fp' };
    expect(
      await roundTrips(() =>
        engine.run(
          next,
          async () => 'new',
          () => response,
        ),
      ),
    ).toEqual({
      client: 2,
      server: 2,
    });
    expect(sent.slice(-2)).toEqual(['evalsha', 'evalsha']);
  });

  it('costs 1 for a conflict (in flight) and 1 for a mismatch', async () => {
    const engine = new IdempotencyEngine({ store });
    const request = { storageKey: uniqueKey('rt'), fingerprint: 'fp' };
    let finish: () => void = () => {};
    const first = engine.run(
      request,
      () =>
        new Promise<void>((resolve) => {
          finish = resolve;
        }),
      () => response,
    );
    await expect.poll(async () => (await store.get(request.storageKey))?.state).toBe('in_flight');
    const conflict = await roundTrips(() =>
      engine
        .run(
          request,
          async () => 'twice',
          () => response,
        )
        .catch((error: unknown) => {
          if (!isIdempotencyError(error, 'in_flight')) throw error;
        }),
    );
    expect(conflict).toEqual({ client: 1, server: 1 });
    finish();
    await first;
    const mismatch = await roundTrips(() =>
      engine
        .run(
          { ...request, fingerprint: 'other' },
          async () => 'other',
          () => response,
        )
        .catch((error: unknown) => {
          if (!isIdempotencyError(error, 'key_mismatch')) throw error;
        }),
    );
    expect(mismatch).toEqual({ client: 1, server: 1 });
  });

  it('costs the same for jobs wrapped with idempotent()', async () => {
    let runs = 0;
    const job = idempotent(async (id: string) => ({ id, run: ++runs }), { store, key: (id) => id });
    const id = uniqueKey('job');
    expect(await roundTrips(() => job(id))).toEqual({ client: 2, server: 2 });
    expect(await roundTrips(() => job(id))).toEqual({ client: 1, server: 1 });
    expect(runs).toBe(1);
  });
});

describe('the script cache', () => {
  const sha = (lua: string) => createHash('sha1').update(lua).digest('hex');
  const cached = async () =>
    (await admin.script('EXISTS', ...Object.values(SCRIPTS).map(({ lua }) => sha(lua)))) as number[];

  it('survives SCRIPT FLUSH: each script is sent again once, then called by SHA', async () => {
    const engine = new IdempotencyEngine({ store });
    await engine.run(
      { storageKey: uniqueKey('flush'), fingerprint: 'fp' },
      async () => 1,
      () => response,
    );
    await admin.script('FLUSH');
    expect(await cached()).toEqual([0, 0, 0, 0, 0]);

    const request = { storageKey: uniqueKey('flush'), fingerprint: 'fp' };
    // EVALSHA answered NOSCRIPT, then EVAL with the source: one extra round trip per script, once.
    expect(
      await roundTrips(() =>
        engine.run(
          request,
          async () => 'after flush',
          () => response,
        ),
      ),
    ).toEqual({
      client: 4,
      server: 4,
    });
    expect(sent.slice(-4)).toEqual(['evalsha', 'evalsha', 'evalsha', 'evalsha']);
    const [acquire, complete] = await cached();
    expect([acquire, complete]).toEqual([1, 1]);

    const replay = await roundTrips(async () => {
      expect(
        (
          await engine.run(
            request,
            async () => 'no',
            () => response,
          )
        ).replayed,
      ).toBe(true);
    });
    expect(replay).toEqual({ client: 1, server: 1 });

    await admin.script('FLUSH');
    const claim = { fingerprint: 'fp', token: crypto.randomUUID(), leaseMs: 5_000, ttlMs: 5_000 };
    const released = uniqueKey('flush');
    expect(await store.acquire(released, claim)).toEqual({ acquired: true });
    expect(await store.extend(released, claim.token, 5_000)).toBe(true);
    expect(await store.release(released, claim.token, 5_000)).toBe(true);
    expect((await store.get(released))?.state).toBe('failed');
    expect(await store.acquire(released, { ...claim, token: 'next' })).toEqual({ acquired: true });
    expect(await store.complete(released, 'next', response, 5_000)).toBe(true);
    expect(await cached()).toEqual([1, 1, 1, 1, 1]);
  });
});
