import { readFile } from 'node:fs/promises';
import { isIdempotencyError, type StoredResponse } from '@idem/core';
import { makeClaim, makeResponse, uniqueKey } from '@idem/store-test-suite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrationSql, postgresStore, quoteIdentifier } from './index.js';
import { openTestDatabase, type TestDatabase } from './test-database.fixture.js';

let db: TestDatabase;
beforeAll(async () => {
  db = await openTestDatabase('schema');
});
afterAll(async () => {
  await db?.close();
});

describe('migration', () => {
  it('ships schema.sql as exactly the SQL migrate() runs with the default names', async () => {
    const shipped = await readFile(new URL('../schema.sql', import.meta.url), 'utf8');
    expect(shipped).toBe(migrationSql());
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'));
    expect(pkg.files).toContain('schema.sql');
  });

  it('is idempotent and safe to run from several instances at once', async () => {
    const schema = `${db.schema}_concurrent`;
    const pool = db.pool({ max: 6 });
    try {
      const stores = Array.from({ length: 6 }, () => postgresStore({ pool, schema }));
      await Promise.all(stores.map((store) => store.migrate()));
      await Promise.all(stores.map((store) => store.migrate()));
      const { rows } = await db.admin.query(
        `SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'idem_records' ORDER BY 1`,
        [schema],
      );
      expect(rows.map((row) => row.indexname)).toEqual(['idem_records_expires_at_idx', 'idem_records_pkey']);
      const store = stores[0]!;
      const claim = makeClaim();
      const key = uniqueKey('migrated');
      expect(await store.acquire(key, claim)).toEqual({ acquired: true });
    } finally {
      await db.admin.query(`DROP SCHEMA IF EXISTS ${quoteIdentifier(schema)} CASCADE`);
    }
  });

  it('quotes table and schema names, whatever characters they hold', async () => {
    const table = `Odd "table"; DROP TABLE x; --`;
    const schema = `${db.schema} Mixed "Case"`;
    const store = postgresStore({ pool: db.admin, table, schema });
    try {
      expect(store.table).toBe(`"${db.schema} Mixed ""Case"""."Odd ""table""; DROP TABLE x; --"`);
      await store.migrate();
      const key = uniqueKey('quoted');
      const claim = makeClaim();
      expect(await store.acquire(key, claim)).toEqual({ acquired: true });
      expect(await store.complete(key, claim.token, makeResponse(), 60_000)).toBe(true);
      expect((await store.get(key))?.response).toEqual(makeResponse());
      const { rows } = await db.admin.query(
        'SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = $1',
        [schema],
      );
      expect(rows[0].n).toBe(1);
    } finally {
      await db.admin.query(`DROP SCHEMA IF EXISTS ${quoteIdentifier(schema)} CASCADE`);
    }
  });

  it('refuses names PostgreSQL would truncate or cannot hold', () => {
    expect(() => postgresStore({ pool: db.admin, table: '' })).toThrow(TypeError);
    expect(() => postgresStore({ pool: db.admin, table: 'a\0b' })).toThrow(TypeError);
    expect(() => postgresStore({ pool: db.admin, table: 'x'.repeat(49) })).toThrow(
      /^\[idem\] \[postgres\] table name must be at most 48 bytes/,
    );
    expect(() => postgresStore({ pool: db.admin, schema: 's'.repeat(64) })).toThrow(
      /^\[idem\] \[postgres\] schema name must be at most 63 bytes/,
    );
    expect(() => postgresStore({ pool: db.admin, table: 'x'.repeat(48) })).not.toThrow();
  });
});

describe('migration by a role that may not create', () => {
  // An application role as a DBA sets one up: it may log in and use the table, nothing more (no
  // CREATE on the database or the schema, not the owner of the table).
  let role: string;
  let roleUrl: string;
  beforeAll(async () => {
    role = `idem_test_role_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
    const password = Math.random().toString(36).slice(2);
    await db.admin.query(`CREATE ROLE ${quoteIdentifier(role)} LOGIN PASSWORD '${password}'`);
    const url = new URL(db.url);
    url.username = role;
    url.password = password;
    roleUrl = url.toString();
  });
  afterAll(async () => {
    if (!role) return;
    await db.admin.query(`DROP OWNED BY ${quoteIdentifier(role)} CASCADE`);
    await db.admin.query(`DROP ROLE ${quoteIdentifier(role)}`);
  });

  /** A fresh schema holding the migrated table, usable by the role (USAGE, SELECT/INSERT/UPDATE/DELETE). */
  async function migratedFor(suffix: string, table = 'idem_records'): Promise<string> {
    const schema = `${db.schema}_${suffix}`;
    const owner = postgresStore({ pool: db.admin, schema, table });
    await owner.migrate();
    await db.admin.query(`GRANT USAGE ON SCHEMA ${quoteIdentifier(schema)} TO ${quoteIdentifier(role)}`);
    await db.admin.query(
      `GRANT SELECT, INSERT, UPDATE, DELETE ON ${owner.table} TO ${quoteIdentifier(role)}`,
    );
    return schema;
  }
  const dropSchema = (schema: string) =>
    db.admin.query(`DROP SCHEMA IF EXISTS ${quoteIdentifier(schema)} CASCADE`);

  it('succeeds when the schema, the table and its index are already in place', async () => {
    const schema = await migratedFor('restricted');
    try {
      const store = postgresStore({ pool: db.pool({ connectionString: roleUrl }), schema });
      await expect(store.migrate()).resolves.toBeUndefined();
      await expect(store.migrate()).resolves.toBeUndefined();
      const key = uniqueKey('restricted');
      const claim = makeClaim();
      expect(await store.acquire(key, claim)).toEqual({ acquired: true });
      expect(await store.complete(key, claim.token, makeResponse(), 60_000)).toBe(true);
    } finally {
      await dropSchema(schema);
    }
  });

  it('succeeds with an unqualified table found through search_path', async () => {
    const schema = await migratedFor('restricted_path', 'Path Table');
    try {
      const pool = db.pool({
        connectionString: roleUrl,
        options: `-c search_path=${quoteIdentifier(schema)}`,
      });
      const store = postgresStore({ pool, table: 'Path Table' });
      await expect(store.migrate()).resolves.toBeUndefined();
      const key = uniqueKey('restricted-path');
      expect(await store.acquire(key, makeClaim())).toEqual({ acquired: true });
    } finally {
      await dropSchema(schema);
    }
  });

  it('still fails when something is missing that the role may not create', async () => {
    const schema = await migratedFor('restricted_no_index');
    try {
      await db.admin.query(`DROP INDEX ${quoteIdentifier(schema)}."idem_records_expires_at_idx"`);
      const store = postgresStore({ pool: db.pool({ connectionString: roleUrl }), schema });
      await expect(store.migrate()).rejects.toMatchObject({ code: '42501' }); // insufficient_privilege
    } finally {
      await dropSchema(schema);
    }
  });

  it('creates the table in an existing schema where the role may create, without CREATE on the database', async () => {
    const schema = `${db.schema}_role_creates`;
    await db.admin.query(`CREATE SCHEMA ${quoteIdentifier(schema)}`);
    try {
      await db.admin.query(
        `GRANT USAGE, CREATE ON SCHEMA ${quoteIdentifier(schema)} TO ${quoteIdentifier(role)}`,
      );
      const store = postgresStore({ pool: db.pool({ connectionString: roleUrl }), schema });
      await store.migrate();
      await store.migrate();
      const { rows } = await db.admin.query(
        'SELECT indexname FROM pg_indexes WHERE schemaname = $1 ORDER BY 1',
        [schema],
      );
      expect(rows.map((row) => row.indexname)).toEqual(['idem_records_expires_at_idx', 'idem_records_pkey']);
    } finally {
      await dropSchema(schema);
    }
  });
});

describe('stored form', () => {
  let store: ReturnType<typeof postgresStore>;
  beforeAll(async () => {
    store = postgresStore({ pool: db.admin, schema: db.schema });
    await store.migrate();
  });

  it('keeps headers as a jsonb array of pairs, the body as bytea and times from the database clock', async () => {
    const key = uniqueKey('raw');
    const claim = makeClaim();
    await store.acquire(key, claim);
    const response: StoredResponse = {
      status: 200,
      headers: [
        ['x-a', '1'],
        ['x-a', '2'],
      ],
      body: new Uint8Array([0, 255, 10]),
      omitted: 'too_large',
    };
    await store.complete(key, claim.token, response, 60_000);
    const { rows } = await db.admin.query(
      `SELECT headers, body, omitted, status, pg_typeof(headers)::text AS headers_type,
              pg_typeof(body)::text AS body_type,
              extract(epoch FROM expires_at - clock_timestamp())::float8 AS remaining_s
       FROM ${store.table} WHERE key = $1`,
      [key],
    );
    expect(rows[0]).toMatchObject({
      headers: [
        ['x-a', '1'],
        ['x-a', '2'],
      ],
      headers_type: 'jsonb',
      body_type: 'bytea',
      omitted: 'too_large',
      status: 200,
    });
    expect([...rows[0].body]).toEqual([0, 255, 10]);
    expect(rows[0].remaining_s).toBeGreaterThan(55);
    expect(rows[0].remaining_s).toBeLessThanOrEqual(60);
  });

  it('reports a row it cannot decode as record_corrupt', async () => {
    const key = uniqueKey('corrupt');
    const claim = makeClaim();
    await store.acquire(key, claim);
    await store.complete(key, claim.token, makeResponse(), 60_000);
    await db.admin.query(`UPDATE ${store.table} SET headers = '{"not": "pairs"}' WHERE key = $1`, [key]);
    const error = await store.get(key).catch((caught: unknown) => caught);
    expect(isIdempotencyError(error, 'record_corrupt')).toBe(true);
    expect((error as Error).message).toContain('[postgres]');
    // The blocking record of a refused claim is decoded the same way.
    const blocked = await store.acquire(key, makeClaim()).catch((caught: unknown) => caught);
    expect(isIdempotencyError(blocked, 'record_corrupt')).toBe(true);
  });

  it('treats an expired record as absent for every write, not only for reads', async () => {
    const key = uniqueKey('expired');
    const claim = makeClaim('fp-a', { leaseMs: 100, ttlMs: 100 });
    await store.acquire(key, claim);
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(await store.extend(key, claim.token, 60_000)).toBe(false);
    expect(await store.release(key, claim.token, 60_000)).toBe(false);
    expect(await store.complete(key, claim.token, makeResponse(), 60_000)).toBe(false);
    // Still in the table until swept, yet a claim with any fingerprint starts afresh.
    const { rows } = await db.admin.query(`SELECT count(*)::int AS n FROM ${store.table} WHERE key = $1`, [
      key,
    ]);
    expect(rows[0].n).toBe(1);
    const fresh = makeClaim('fp-other');
    expect(await store.acquire(key, fresh)).toEqual({ acquired: true });
    expect(await store.get(key)).toMatchObject({
      state: 'in_flight',
      fingerprint: 'fp-other',
      response: null,
    });
  });
});
