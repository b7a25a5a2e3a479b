import { postgresUrl } from '@idem/test-services';
import pg from 'pg';
import { quoteIdentifier } from './schema.js';

/** A fresh schema in the test database, and pools that are cleaned up with it. */
export interface TestDatabase {
  /** The database URL (from `@idem/test-services`). */
  readonly url: string;
  /** The schema of this test file, unique per run, dropped by `close()`. */
  readonly schema: string;
  /** A pool for raw reads and setup, never broken on purpose by a test. */
  readonly admin: pg.Pool;
  /** A new pool (ended by `close()`), with an `error` listener as pg asks. */
  pool(config?: pg.PoolConfig): pg.Pool;
  /** Run `check` while another connection holds the row lock of `key` in `table` (a transaction left open). */
  whileRowLocked(table: string, key: string, check: () => Promise<void>): Promise<void>;
  /** End every pool, then drop the schema. */
  close(): Promise<void>;
}

/**
 * Open the test database with a schema of its own, so that test files of this package and of others
 * running at the same time never share a table.
 */
export async function openTestDatabase(label: string): Promise<TestDatabase> {
  const url = await postgresUrl();
  const schema = `idem_test_${label}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const pools: pg.Pool[] = [];
  const pool = (config: pg.PoolConfig = {}) => {
    const created = new pg.Pool({ connectionString: url, max: 4, ...config });
    // Broken idle connections are reported here (and dropped by the pool); some tests break them.
    created.on('error', () => {});
    pools.push(created);
    return created;
  };
  const admin = pool();
  await admin.query(`CREATE SCHEMA ${quoteIdentifier(schema)}`);
  return {
    url,
    schema,
    admin,
    pool,
    whileRowLocked: async (table, key, check) => {
      const locker = await admin.connect();
      try {
        await locker.query('BEGIN');
        await locker.query(`SELECT 1 FROM ${table} WHERE key = $1 FOR UPDATE`, [key]);
        await check();
      } finally {
        await locker.query('ROLLBACK');
        locker.release();
      }
    },
    close: async () => {
      for (const created of pools.splice(1)) await created.end().catch(() => {});
      await admin.query(`DROP SCHEMA IF EXISTS ${quoteIdentifier(schema)} CASCADE`);
      await admin.end();
    },
  };
}
