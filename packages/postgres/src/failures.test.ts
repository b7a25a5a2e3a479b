import { IdempotencyEngine, isIdempotencyError, type StoredResponse } from '@idem/core';
import { makeClaim, makeResponse, uniqueKey } from '@idem/store-test-suite';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type PostgresStore, postgresStore } from './index.js';
import { TcpForwarder } from './tcp-forwarder.fixture.js';
import { openTestDatabase, type TestDatabase } from './test-database.fixture.js';

// The shared PostgreSQL is never stopped: connections are cut or swallowed by a forwarder between
// the pool and the server, terminated from another session, or held up by a row lock.
let db: TestDatabase;
let forwarder: TcpForwarder;

const response: StoredResponse = makeResponse();
/** An engine that would wait 20 s for the store: an error before that comes from the store itself. */
const patientEngine = (store: PostgresStore) =>
  new IdempotencyEngine({ store, storeTimeoutMs: 20_000, heartbeat: false });
const runOnce = (engine: IdempotencyEngine, key = uniqueKey('run')) =>
  engine.run(
    { storageKey: key, fingerprint: 'fp' },
    async () => 'ran',
    () => response,
  );
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const failureOf = (promise: Promise<unknown>) =>
  promise.then(
    () => {
      throw new Error('expected a failure');
    },
    (error: unknown) => error,
  );

beforeAll(async () => {
  db = await openTestDatabase('failures');
  await postgresStore({ pool: db.admin, schema: db.schema }).migrate();
  const url = new URL(db.url);
  forwarder = await TcpForwarder.start({ host: url.hostname, port: Number(url.port || 5432) });
});
afterAll(async () => {
  await forwarder?.close();
  await db?.close();
});

describe('connection loss', () => {
  it('fails at once when the connections are cut, and recovers when the server is back', async () => {
    const pool = db.pool({
      connectionString: forwarder.rewrite(db.url),
      max: 2,
      connectionTimeoutMillis: 1_000,
    });
    const store = postgresStore({ pool, schema: db.schema });
    const engine = patientEngine(store);
    await expect(runOnce(engine)).resolves.toMatchObject({ replayed: false });

    forwarder.cut();
    const error = await failureOf(runOnce(engine));
    expect(isIdempotencyError(error, 'store_unavailable')).toBe(true);
    // The pg error itself, not the engine's timeout: the store failed fast.
    expect((error as Error).message).toMatch(/acquire failed/);
    expect((error as Error).cause).toBeInstanceOf(Error);
    await expect(store.get(uniqueKey('down'))).rejects.toThrow();

    forwarder.restore();
    await expect(runOnce(engine)).resolves.toMatchObject({ replayed: false, value: 'ran' });
  });

  it('gives up on a silent network after queryTimeoutMs, and recovers', async () => {
    const pool = db.pool({
      connectionString: forwarder.rewrite(db.url),
      max: 2,
      connectionTimeoutMillis: 500,
    });
    const store = postgresStore({ pool, schema: db.schema, queryTimeoutMs: 300 });
    const engine = patientEngine(store);
    const key = uniqueKey('silent');
    await store.acquire(key, makeClaim());

    forwarder.blackhole();
    await expect(store.get(key)).rejects.toThrow(/Query read timeout|timeout/i);
    const error = await failureOf(runOnce(engine));
    expect(isIdempotencyError(error, 'store_unavailable')).toBe(true);
    expect(String(((error as Error).cause as Error).message)).toMatch(/timeout/i);

    forwarder.restore();
    expect((await store.get(key))?.state).toBe('in_flight');
    await expect(runOnce(engine)).resolves.toMatchObject({ replayed: false });
    // Hung connections were dropped, not returned to the pool.
    expect(pool.totalCount).toBeLessThanOrEqual(2);
  });

  it("keeps the pool's queue within the engine's maxTimedOutCalls while the network is silent, and recovers", async () => {
    // pg's default connectionTimeoutMillis (0): a connection attempt nobody answers waits forever, and
    // every query behind it waits in the pool's queue.
    const pool = db.pool({ connectionString: forwarder.rewrite(db.url), max: 2 });
    const store = postgresStore({ pool, schema: db.schema });
    const engine = new IdempotencyEngine({
      store,
      storeTimeoutMs: 30,
      maxTimedOutCalls: 5,
      heartbeat: false,
    });
    forwarder.blackhole();
    try {
      const messages: string[] = [];
      for (let i = 0; i < 40; i++) {
        const error = await failureOf(runOnce(engine));
        expect(isIdempotencyError(error, 'store_unavailable')).toBe(true);
        messages.push((error as Error).message);
      }
      expect(messages.filter((message) => /acquire timed out after 30 ms/.test(message))).toHaveLength(5);
      expect(
        messages.filter((message) => /acquire not sent: 5 earlier calls timed out/.test(message)),
      ).toHaveLength(35);
      // Two connection attempts, three queries waiting for them: the five the engine gave up on.
      expect(pool.totalCount).toBe(2);
      expect(pool.waitingCount).toBe(3);
    } finally {
      forwarder.restore();
    }
    // The swallowed connections are reset; the pool connects again and runs what waited (the engine
    // gives those late claims back), and calls are sent again.
    await vi.waitFor(() => expect(pool.waitingCount).toBe(0), { timeout: 5_000, interval: 10 });
    await vi.waitFor(
      () => expect(runOnce(engine)).resolves.toMatchObject({ replayed: false, value: 'ran' }),
      {
        timeout: 5_000,
        interval: 20,
      },
    );
  });

  it('recovers after the server terminates every connection of the pool', async () => {
    const applicationName = `idem-terminate-${Date.now()}`;
    const pool = db.pool({ application_name: applicationName, max: 3 });
    const store = postgresStore({ pool, schema: db.schema });
    const engine = patientEngine(store);
    await Promise.all([runOnce(engine), runOnce(engine), runOnce(engine)]);

    const { rows } = await db.admin.query(
      'SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = $1',
      [applicationName],
    );
    expect(rows[0].n).toBeGreaterThan(0);
    // A connection may learn of its end only when it is next used: that call fails, the next works.
    const outcomes: string[] = [];
    for (let attempt = 0; attempt < 5 && outcomes.at(-1) !== 'ok'; attempt++) {
      try {
        await runOnce(engine);
        outcomes.push('ok');
      } catch (error) {
        expect(isIdempotencyError(error, 'store_unavailable')).toBe(true);
        outcomes.push('store_unavailable');
      }
    }
    expect(outcomes.at(-1)).toBe('ok');
    expect(outcomes.length).toBeLessThanOrEqual(4);
  });
});

describe('statement timeout', () => {
  it('a statement stuck behind a row lock fails with the server statement_timeout', async () => {
    const pool = db.pool({ statement_timeout: 200, max: 2 });
    const store = postgresStore({ pool, schema: db.schema });
    const key = uniqueKey('locked');
    const claim = makeClaim();
    await store.acquire(key, claim);

    await db.whileRowLocked(store.table, key, async () => {
      const error = await failureOf(store.complete(key, claim.token, response, 60_000));
      expect((error as { code?: string }).code).toBe('57014'); // query_canceled
    });
    expect(await store.complete(key, claim.token, response, 60_000)).toBe(true);

    // A released record: the engine's claim takes it over, so it writes and waits for the row lock
    // (a claim the record refuses reads the row without waiting).
    const released = uniqueKey('locked-released');
    const first = makeClaim('fp');
    await store.acquire(released, first);
    expect(await store.release(released, first.token, 60_000)).toBe(true);
    await db.whileRowLocked(store.table, released, async () => {
      const fromEngine = await failureOf(runOnce(patientEngine(store), released));
      expect(isIdempotencyError(fromEngine, 'store_unavailable')).toBe(true);
      expect(((fromEngine as Error).cause as { code?: string }).code).toBe('57014');
    });
    await expect(runOnce(patientEngine(store), released)).resolves.toMatchObject({ value: 'ran' });
  });

  it('a client-side queryTimeoutMs bounds the wait without server settings', async () => {
    const pool = db.pool({ max: 2 });
    const store = postgresStore({ pool, schema: db.schema, queryTimeoutMs: 200 });
    const key = uniqueKey('locked-client');
    const claim = makeClaim();
    await store.acquire(key, claim);
    await db.whileRowLocked(store.table, key, async () => {
      await expect(store.extend(key, claim.token, 60_000)).rejects.toThrow(/timeout/i);
    });
    expect(await store.extend(key, claim.token, 60_000)).toBe(true);
  });

  it('the wait for a pooled connection is bounded by connectionTimeoutMillis, not queryTimeoutMs', async () => {
    /** A store on a pool of one connection, which is busy (a silent network looks the same from here). */
    const busyStore = async (config: pg.PoolConfig) => {
      const pool = db.pool({ max: 1, ...config });
      return {
        store: postgresStore({ pool, schema: db.schema, queryTimeoutMs: 100 }),
        busy: await pool.connect(),
      };
    };

    // pg's default connectionTimeoutMillis, 0: the call waits for as long as the connection stays busy.
    const unbounded = await busyStore({});
    const waiting = unbounded.store.get(uniqueKey('no-connection'));
    const outcome = await Promise.race([
      waiting.then(() => 'settled'),
      sleep(600).then(() => 'still waiting'),
    ]);
    expect(outcome).toBe('still waiting');
    unbounded.busy.release();
    await expect(waiting).resolves.toBeNull();

    const bounded = await busyStore({ connectionTimeoutMillis: 200 });
    await expect(bounded.store.get(uniqueKey('no-connection'))).rejects.toThrow(
      /timeout exceeded when trying to connect/,
    );
    bounded.busy.release();
  });
});
