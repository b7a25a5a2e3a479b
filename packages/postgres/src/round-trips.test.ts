import { IdempotencyEngine, isIdempotencyError, type StoredResponse } from '@idem/core';
import { makeClaim, makeResponse, uniqueKey } from '@idem/store-test-suite';
import type pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type PostgresStore, postgresStore } from './index.js';
import { TcpForwarder } from './tcp-forwarder.fixture.js';
import { openTestDatabase, type TestDatabase } from './test-database.fixture.js';

// Round trips are counted on the wire, between the pool and PostgreSQL: every Sync or simple Query
// message the client sends is one exchange it waits for.
let db: TestDatabase;
let forwarder: TcpForwarder;
let pool: pg.Pool;
let store: PostgresStore;
let engine: IdempotencyEngine;

const response: StoredResponse = makeResponse();
const run = (storageKey: string, fingerprint = 'fp-a') =>
  engine.run(
    { storageKey, fingerprint },
    async () => 'done',
    () => response,
  );

beforeAll(async () => {
  db = await openTestDatabase('round_trips');
  const url = new URL(db.url);
  forwarder = await TcpForwarder.start({ host: url.hostname, port: Number(url.port || 5432) });
  // One connection, opened before counting, so that connecting never shows up in the counts.
  pool = db.pool({ connectionString: forwarder.rewrite(db.url), max: 1 });
  store = postgresStore({ pool, schema: db.schema });
  await store.migrate();
  engine = new IdempotencyEngine({ store, heartbeat: false });
});
afterAll(async () => {
  await forwarder?.close();
  await db?.close();
});
beforeEach(() => forwarder.resetCount());

describe('round trips per request through the engine', () => {
  it('a new request costs 2: acquire, complete', async () => {
    const key = uniqueKey('new');
    await expect(run(key)).resolves.toMatchObject({ replayed: false, value: 'done' });
    expect(forwarder.roundTrips).toBe(2);
    expect((await store.get(key))?.state).toBe('completed');
  });

  it('a replay costs 1: the refused acquire returns the stored response', async () => {
    const key = uniqueKey('replay');
    await run(key);
    forwarder.resetCount();
    const replay = await run(key);
    expect(replay).toMatchObject({ replayed: true });
    if (replay.replayed) expect(replay.response).toEqual(response);
    expect(forwarder.roundTrips).toBe(1);
  });

  it('a conflict and a mismatch cost 1 each', async () => {
    const key = uniqueKey('conflict');
    await store.acquire(key, makeClaim('fp-a'));
    forwarder.resetCount();
    const inFlight = await run(key).catch((error: unknown) => error);
    expect(isIdempotencyError(inFlight, 'in_flight')).toBe(true);
    expect(forwarder.roundTrips).toBe(1);
    forwarder.resetCount();
    const mismatch = await run(key, 'fp-b').catch((error: unknown) => error);
    expect(isIdempotencyError(mismatch, 'key_mismatch')).toBe(true);
    expect(forwarder.roundTrips).toBe(1);
  });

  it('a transactional completion adds only the acquire and one UPDATE to the work transaction', async () => {
    await db.admin.query(`CREATE TABLE ${db.schema}.notes (id text PRIMARY KEY)`);
    const key = uniqueKey('tx');
    forwarder.resetCount();
    await engine.run(
      { storageKey: key, fingerprint: 'fp-a' },
      (operation) =>
        store.completeInTransaction(
          operation,
          async (client) => {
            await client.query(`INSERT INTO ${db.schema}.notes (id) VALUES ($1)`, [key]);
            return 'noted';
          },
          () => response,
        ),
      () => response,
    );
    // acquire + BEGIN + INSERT + complete UPDATE + COMMIT; the engine does not complete again.
    expect(forwarder.roundTrips).toBe(5);
    expect((await store.get(key))?.state).toBe('completed');
  });
});

describe('a claim that meets a concurrent claim of its key', () => {
  it('costs 2 when the other commits after its snapshot: the second statement reads that record', async () => {
    const key = uniqueKey('race');
    // The other claim's row, inserted and not yet committed: the store's statement takes its snapshot
    // without it, then waits for it on the primary key.
    const other = await db.admin.connect();
    try {
      await other.query('BEGIN');
      await other.query(
        `INSERT INTO ${store.table} (key, state, fingerprint, token, lease_expires_at, expires_at)
         VALUES ($1, 'in_flight', 'fp-a', 'other-token', clock_timestamp() + interval '1 hour',
                 clock_timestamp() + interval '1 hour')`,
        [key],
      );
      forwarder.resetCount();
      const claimed = store.acquire(key, makeClaim('fp-a'));
      await waitForLockWait(store.table);
      await other.query('COMMIT');
      await expect(claimed).resolves.toMatchObject({
        acquired: false,
        record: { state: 'in_flight', token: 'other-token' },
      });
      expect(forwarder.roundTrips).toBe(2);
    } finally {
      await other.query('ROLLBACK').catch(() => {});
      other.release();
    }
  });
});

/** Until a statement on `table` waits for a lock (another transaction's row). */
async function waitForLockWait(table: string): Promise<void> {
  for (let tries = 0; tries < 200; tries++) {
    const { rows } = await db.admin.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND position($1 IN query) > 0`,
      [table],
    );
    if (rows[0].n > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`no statement on ${table} came to wait for a lock`);
}

describe('round trips per store operation', () => {
  it('each operation is one statement and one round trip', async () => {
    const key = uniqueKey('ops');
    const claim = makeClaim('fp-a');
    const counted = async (operation: () => Promise<unknown>) => {
      forwarder.resetCount();
      await operation();
      return forwarder.roundTrips;
    };
    expect(await counted(() => store.acquire(key, claim))).toBe(1);
    expect(await counted(() => store.acquire(key, makeClaim('fp-a')))).toBe(1);
    expect(await counted(() => store.extend(key, claim.token, 60_000))).toBe(1);
    expect(await counted(() => store.release(key, claim.token, 60_000))).toBe(1);
    const again = makeClaim('fp-a');
    expect(await counted(() => store.acquire(key, again))).toBe(1);
    expect(await counted(() => store.complete(key, again.token, response, 60_000))).toBe(1);
    expect(await counted(() => store.get(key))).toBe(1);
    expect(await counted(() => store.delete(key))).toBe(1);
    expect(await counted(() => store.sweep({ limit: 10 }))).toBe(1);
  });
});
