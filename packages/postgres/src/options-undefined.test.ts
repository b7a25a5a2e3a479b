import { makeClaim, makeResponse, uniqueKey } from '@idem/store-test-suite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_TABLE,
  migrationSql,
  type PostgresStoreOptions,
  postgresStore,
  quoteIdentifier,
  type SweeperOptions,
  type SweepOptions,
  type TableOptions,
} from './index.js';
import { openTestDatabase, type TestDatabase } from './test-database.fixture.js';

// Under `exactOptionalPropertyTypes` (on in this repo), every optional option must accept an explicit
// `undefined`, meaning the default: `tsc` checks the types below, the tests that it is the default.

/** An option the caller left unset, typed the way user code has it (`config.table` of `table?: string`). */
const unset = <T>(): T | undefined => undefined;

let db: TestDatabase;
beforeAll(async () => {
  db = await openTestDatabase('options_undefined');
});
afterAll(async () => {
  await db?.close();
});

describe('options given as undefined mean the defaults', () => {
  it('postgresStore: the default table (unqualified), prepared statements; sweep and sweeper run', async () => {
    // One connection, so that the check of its prepared statements sees the store's.
    const pool = db.pool({ max: 1, options: `-c search_path=${quoteIdentifier(db.schema)}` });
    const options: PostgresStoreOptions = {
      pool,
      table: unset<string>(),
      schema: unset<string>(),
      queryTimeoutMs: unset<number>(),
      preparedStatements: unset<boolean>(),
    };
    const store = postgresStore(options);
    expect(store.table).toBe(quoteIdentifier(DEFAULT_TABLE));
    await store.migrate();
    const { rows: tables } = await db.admin.query<{ found: string | null }>(
      'SELECT to_regclass($1)::text AS found',
      [`${quoteIdentifier(db.schema)}.${quoteIdentifier(DEFAULT_TABLE)}`],
    );
    expect(tables[0]?.found).not.toBeNull();

    const key = uniqueKey('options-undefined');
    const claim = makeClaim();
    expect(await store.acquire(key, claim)).toEqual({ acquired: true });
    expect(await store.complete(key, claim.token, makeResponse(), 60_000)).toBe(true);
    expect((await store.get(key))?.state).toBe('completed');
    const { rows: prepared } = await pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM pg_prepared_statements',
    );
    expect(prepared[0]?.n).toBeGreaterThan(0);

    const sweep: SweepOptions = { limit: unset<number>() };
    expect(await store.sweep(sweep)).toBe(0);
    const sweeper: SweeperOptions = {
      intervalMs: unset<number>(),
      limit: unset<number>(),
      maxBatches: unset<number>(),
      onSweep: undefined,
      onError: undefined,
    };
    await store.startSweeper(sweeper).stop();
  });

  it('migrationSql: table and schema undefined give the default migration', () => {
    const table: TableOptions = { table: unset<string>(), schema: unset<string>() };
    expect(migrationSql(table)).toBe(migrationSql());
  });
});
