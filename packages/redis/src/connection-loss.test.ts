import { IdempotencyEngine, IdempotencyError, isIdempotencyError, problemFor, type Store } from '@idem/core';
import { makeClaim, makeResponse, uniqueKey } from '@idem/store-test-suite';
import { RedisServerProcess } from '@idem/test-services';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
