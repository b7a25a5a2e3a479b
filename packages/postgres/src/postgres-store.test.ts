import { testStore } from '@idem/store-test-suite';
import { afterAll, beforeAll } from 'vitest';
import { postgresStore } from './index.js';
import { openTestDatabase, type TestDatabase } from './test-database.fixture.js';

let db: TestDatabase;
beforeAll(async () => {
  db = await openTestDatabase('conformance');
});
afterAll(async () => {
  await db?.close();
});

// Both ways of sending statements: prepared (the default) and unnamed (for poolers that do not track them).
for (const preparedStatements of [true, false]) {
  testStore({
    name: preparedStatements ? 'postgres' : 'postgres (unnamed statements)',
    createStore: async () => {
      const store = postgresStore({ pool: db.pool({ max: 10 }), schema: db.schema, preparedStatements });
      await store.migrate();
      return store;
    },
    // The expiry column as PostgreSQL holds it, measured on the database's own clock.
    readRaw: async (store, key) => {
      const { rows } = await db.admin.query<{ expires_in_ms: number }>(
        `SELECT (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::float8 AS expires_in_ms
         FROM ${(store as ReturnType<typeof postgresStore>).table} WHERE key = $1`,
        [key],
      );
      const row = rows[0];
      return row ? { expiresInMs: row.expires_in_ms } : null;
    },
    // Headers that are not pairs: valid JSON, not a record.
    corruptRecord: async (store, key) => {
      await db.admin.query(
        `UPDATE ${(store as ReturnType<typeof postgresStore>).table} SET headers = '{"not": "pairs"}' WHERE key = $1`,
        [key],
      );
    },
  });
}
