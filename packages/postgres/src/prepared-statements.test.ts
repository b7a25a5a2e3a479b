import type { StoredResponse } from '@idem/core';
import { makeClaim, uniqueKey } from '@idem/store-test-suite';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PostgresStore, postgresStore } from './index.js';
import { openTestDatabase, type TestDatabase } from './test-database.fixture.js';

let db: TestDatabase;

beforeAll(async () => {
  db = await openTestDatabase('prepared');
});
afterAll(async () => {
  await db?.close();
});

const response: StoredResponse = {
  status: 201,
  headers: [['content-type', 'application/json']],
  body: new TextEncoder().encode('{"ok":true}'),
};

/** Every store operation once, and the claim again (a replay), on `store`. */
async function exercise(store: PostgresStore): Promise<void> {
  const key = uniqueKey('prepared');
  const claim = makeClaim('fp-a');
  expect(await store.acquire(key, claim)).toEqual({ acquired: true });
  expect(await store.extend(key, claim.token, 60_000)).toBe(true);
  expect(await store.complete(key, claim.token, response, 60_000)).toBe(true);
  const replay = await store.acquire(key, makeClaim('fp-a'));
  expect(replay.acquired).toBe(false);
  expect((await store.get(key))?.state).toBe('completed');
  const other = uniqueKey('prepared');
  const otherClaim = makeClaim('fp-b');
  await store.acquire(other, otherClaim);
  expect(await store.release(other, otherClaim.token, 60_000)).toBe(true);
  await store.delete(other);
  await store.sweep({ limit: 10 });
}

/** The prepared statements of the session behind `pool` (a pool of one connection). */
async function prepared(pool: pg.Pool): Promise<Array<{ name: string; statement: string }>> {
  const { rows } = await pool.query<{ name: string; statement: string }>(
    'SELECT name, statement FROM pg_prepared_statements ORDER BY name',
  );
  return rows;
}

describe('prepared statements', () => {
  it('by default, each statement is prepared once per connection and reused', async () => {
    const pool = db.pool({ max: 1 });
    const store = postgresStore({ pool, schema: db.schema, table: 'prepared_default' });
    await store.migrate();
    await exercise(store);
    await exercise(store);
    const rows = await prepared(pool);
    const names = rows.map((row) => row.name);
    for (const statement of ['acquire', 'complete', 'release', 'extend', 'get', 'delete', 'sweep']) {
      expect(names.filter((name) => name.startsWith(`idem_${statement}_`))).toHaveLength(1);
    }
    expect(names).toHaveLength(7);
    // The statements prepared are the store's own, on its own table.
    for (const row of rows) expect(row.statement).toContain(store.table);
  });

  it('with preparedStatements: false, nothing outlives a statement (for poolers that do not track them)', async () => {
    const pool = db.pool({ max: 1 });
    const store = postgresStore({
      pool,
      schema: db.schema,
      table: 'prepared_off',
      preparedStatements: false,
    });
    await store.migrate();
    await exercise(store);
    expect(await prepared(pool)).toEqual([]);
  });

  it('stores on two tables share a connection: each prepares its own statements', async () => {
    const pool = db.pool({ max: 1 });
    const first = postgresStore({ pool, schema: db.schema, table: 'prepared_first' });
    const second = postgresStore({ pool, schema: db.schema, table: 'prepared_second' });
    await first.migrate();
    await second.migrate();
    await exercise(first);
    await exercise(second);
    const rows = await prepared(pool);
    expect(rows).toHaveLength(14);
    expect(rows.filter((row) => row.statement.includes(first.table))).toHaveLength(7);
    expect(rows.filter((row) => row.statement.includes(second.table))).toHaveLength(7);
    // A key written through one store is not seen through the other.
    const key = uniqueKey('prepared');
    await first.acquire(key, makeClaim('fp-a'));
    expect(await second.get(key)).toBeNull();
    expect((await first.get(key))?.state).toBe('in_flight');
  });

  it('a statement first prepared inside a transaction that rolls back is still there afterwards', async () => {
    const pool = db.pool({ max: 1 });
    const client = await pool.connect();
    try {
      const store = postgresStore({ pool: client, schema: db.schema, table: 'prepared_rollback' });
      await store.migrate();
      await client.query('BEGIN');
      // The first `get` on this connection parses and prepares it inside the transaction...
      expect(await store.get(uniqueKey('prepared'))).toBeNull();
      await client.query('ROLLBACK');
      // ... and pg, which remembers it as prepared, then only binds it: it must still exist.
      const key = uniqueKey('prepared');
      await store.acquire(key, makeClaim('fp-a'));
      expect((await store.get(key))?.state).toBe('in_flight');
      const { rows } = await client.query<{ name: string }>('SELECT name FROM pg_prepared_statements');
      expect(rows.map((row) => row.name).sort()).toEqual([
        expect.stringMatching(/^idem_acquire_[0-9a-f]{16}$/),
        expect.stringMatching(/^idem_get_[0-9a-f]{16}$/),
      ]);
    } finally {
      client.release();
    }
  });
});
