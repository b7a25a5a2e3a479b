import { IdempotencyEngine, IdempotencyError, isIdempotencyError, problemFor, type Store } from '@idem/core';
import { makeClaim, makeResponse, uniqueKey } from '@idem/store-test-suite';
import { RedisServerProcess, SilentServer } from '@idem/test-services';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { redisStore } from './index.js';

// A private redis-server, killed and restarted on the same port: the shared one is never stopped.
let server: RedisServerProcess;
let client: Redis;
let store: Store;

/** Resolves inside the client's `status` event once it is in `status`, running `then` synchronously there. */
function whenStatus<T>(redis: Redis, status: Redis['status'], then: () => T): Promise<T> {
  if (redis.status === status) return Promise.resolve(then());
  return new Promise<T>((resolve) => {
    const listener = () => {
      if (redis.status !== status) return;
      redis.off(status, listener);
      resolve(then());
    };
    redis.on(status, listener);
  });
}

const work = async () => 'done';
const settle = () => makeResponse();
// Long enough that a queued command would visibly hang instead of failing fast.
const engineOptions = { storeTimeoutMs: 60_000 };

/** What an engine run ends with, when it fails: its error. */
async function failureOf(promise: Promise<unknown>): Promise<IdempotencyError> {
  const error = await promise.then(
    () => new Error('expected the run to fail'),
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(IdempotencyError);
  return error as IdempotencyError;
}

beforeAll(async () => {
  server = await RedisServerProcess.start({ args: ['--enable-debug-command', 'yes'] });
  // The recommended settings; reconnection uses ioredis' default retryStrategy.
  client = new Redis(server.url, { maxRetriesPerRequest: 0 });
  client.on('error', () => {});
  store = redisStore({ client });
  await client.ping();
});

afterAll(async () => {
  client?.disconnect();
  await server?.stop();
});

describe('when Redis goes away and comes back', () => {
  const lostKey = uniqueKey('lost');
  let lostRun: Promise<IdempotencyError>;
  let ran = 0;

  it('fails a command in flight at the crash at once, without re-sending it later', async () => {
    const engine = new IdempotencyEngine({ store, ...engineOptions });
    const warm = uniqueKey('warm');
    expect((await engine.run({ storageKey: warm, fingerprint: 'fp' }, work, settle)).replayed).toBe(false);

    // DEBUG SLEEP holds the server, so the claim behind it is sent but never answered.
    client.call('DEBUG', 'SLEEP', '30').catch(() => {});
    lostRun = failureOf(
      engine.run(
        { storageKey: lostKey, fingerprint: 'fp' },
        async () => {
          ran++;
          return 'lost';
        },
        settle,
      ),
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    await server.kill();
    const error = await lostRun;
    expect(error.code).toBe('store_unavailable');
    expect(error.message).not.toMatch(/timed out/);
    expect(ran).toBe(0);
  });

  it('fails every operation at once while the connection is down, whatever the client settings', async () => {
    const defaults = new Redis(server.url);
    defaults.on('error', () => {});
    const stores = [store, redisStore({ client: defaults })];
    try {
      for (const [i, redis] of [client, defaults].entries()) {
        const down = stores[i]!;
        const key = uniqueKey('down');
        const failures = await whenStatus(redis, 'reconnecting', () =>
          Promise.allSettled([
            down.acquire(key, makeClaim()),
            down.complete(key, 'token', makeResponse(), 1_000),
            down.release(key, 'token', 1_000),
            down.extend(key, 'token', 1_000),
            down.get(key),
            down.delete(key),
          ]),
        );
        for (const failure of failures) {
          expect(failure.status).toBe('rejected');
          const { reason } = failure as PromiseRejectedResult;
          expect(isIdempotencyError(reason, 'store_unavailable')).toBe(true);
          expect(reason.message).toMatch(
            /\[redis\] the Redis connection is down \(client status "reconnecting"\)/,
          );
        }
        const engine = new IdempotencyEngine({ store: down, ...engineOptions });
        const error = await whenStatus(redis, 'reconnecting', () =>
          failureOf(engine.run({ storageKey: key, fingerprint: 'fp' }, work, settle)),
        );
        expect(error.code).toBe('store_unavailable');
        expect(problemFor(error).status).toBe(503);
      }
    } finally {
      defaults.disconnect();
    }
  });

  it('fails a command sent while the client is reconnecting as soon as that attempt fails', async () => {
    const engine = new IdempotencyEngine({ store, ...engineOptions });
    // The claim is queued in the client's offline queue while it connects, and fails with that attempt.
    const error = await whenStatus(client, 'connecting', () =>
      failureOf(engine.run({ storageKey: uniqueKey('connecting'), fingerprint: 'fp' }, work, settle)),
    );
    expect(error.code).toBe('store_unavailable');
    expect(error.message).toMatch(/acquire failed/);
  });

  it('works again once Redis is back, without a new client', async () => {
    await server.restart();
    await whenStatus(client, 'ready', () => undefined);
    // The restarted server has an empty script cache: the scripts are sent again on their own.
    const engine = new IdempotencyEngine({ store, ...engineOptions });
    const key = uniqueKey('back');
    const first = await engine.run({ storageKey: key, fingerprint: 'fp' }, work, settle);
    expect(first.replayed).toBe(false);
    const second = await engine.run({ storageKey: key, fingerprint: 'fp' }, work, settle);
    expect(second.replayed).toBe(true);
    const claim = makeClaim();
    const other = uniqueKey('back');
    expect(await store.acquire(other, claim)).toEqual({ acquired: true });
    expect(await store.extend(other, claim.token, 5_000)).toBe(true);
    expect(await store.release(other, claim.token, 5_000)).toBe(true);
    expect((await store.get(other))?.state).toBe('failed');
    // The claim lost in the crash was not re-sent behind the application's back after reconnecting.
    expect(await store.get(lostKey)).toBeNull();
  });
});

describe('when Redis accepts connections and never answers', () => {
  it("keeps ioredis' offline queue within the engine's maxTimedOutCalls, and counts the calls out when they fail", async () => {
    // Accepts and reads, never writes: the client's ready check goes unanswered and it stays in `connect`,
    // queueing every command (a hung server, or a proxy in front of a dead one).
    const silent = await SilentServer.start();
    const hung = new Redis({ host: '127.0.0.1', port: silent.port, maxRetriesPerRequest: 0 });
    hung.on('error', () => {});
    /** The store's commands waiting in the client's offline queue (not the client's own ready check). */
    const queued = () =>
      (hung as unknown as { offlineQueue: { toArray(): Array<{ command: { name: string } }> } }).offlineQueue
        .toArray()
        .filter(({ command }) => command.name !== 'info').length;
    try {
      await vi.waitFor(() => expect(hung.status).toBe('connect'), { timeout: 5_000, interval: 10 });
      const engine = new IdempotencyEngine({
        store: redisStore({ client: hung }),
        storeTimeoutMs: 30,
        maxTimedOutCalls: 5,
      });
      const run = () =>
        failureOf(engine.run({ storageKey: uniqueKey('silent'), fingerprint: 'fp' }, work, settle));
      const messages: string[] = [];
      for (let i = 0; i < 40; i++) {
        const error = await run();
        expect(error.code).toBe('store_unavailable');
        messages.push(error.message);
      }
      expect(messages.filter((message) => /acquire timed out after 30 ms/.test(message))).toHaveLength(5);
      expect(
        messages.filter((message) => /acquire not sent: 5 earlier calls timed out/.test(message)),
      ).toHaveLength(35);
      // Without the bound each of the 40 would wait there for as long as the server hangs.
      expect(queued()).toBe(5);

      // The server drops the connection: the client fails what it queued, and calls reach the store
      // again (which may find the client connecting again, to the same silent server).
      silent.dropConnections();
      await vi.waitFor(() => expect(queued()).toBe(0), { timeout: 5_000, interval: 10 });
      const error = await run();
      expect(error.code).toBe('store_unavailable');
      expect(error.message).not.toMatch(/not sent/);
    } finally {
      hung.disconnect();
      await silent.close();
    }
  });
});
