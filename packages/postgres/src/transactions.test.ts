import {
  IdempotencyEngine,
  type IdempotencyEvent,
  isIdempotencyError,
  type Operation,
  type StoredResponse,
} from '@idem/core';
import { uniqueKey } from '@idem/store-test-suite';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PostgresStore, postgresStore } from './index.js';
import { openTestDatabase, type TestDatabase } from './test-database.fixture.js';

let db: TestDatabase;
let pool: pg.Pool;
let store: PostgresStore;
let orders: string;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const encoder = new TextEncoder();
const created = (key: string): StoredResponse => ({
  status: 201,
  headers: [['content-type', 'application/json']],
  body: encoder.encode(JSON.stringify({ order: key })),
});

beforeAll(async () => {
  db = await openTestDatabase('transactions');
  pool = db.pool({ max: 6 });
  store = postgresStore({ pool, schema: db.schema });
  await store.migrate();
  orders = `${db.schema}.orders`;
  // Checked at COMMIT: a handler that inserts the same key twice only fails when it commits, after
  // the record was already completed inside its transaction.
  await db.admin.query(
    `CREATE TABLE ${orders} (key text NOT NULL, CONSTRAINT one_order_per_key UNIQUE (key) DEFERRABLE INITIALLY DEFERRED)`,
  );
});
afterAll(async () => {
  await db?.close();
});

const countOrders = async (key: string): Promise<number> =>
  (await db.admin.query(`SELECT count(*)::int AS n FROM ${orders} WHERE key = $1`, [key])).rows[0].n;

async function insertOrder(client: pg.ClientBase, key: string, failAtCommit: boolean): Promise<void> {
  await client.query(`INSERT INTO ${orders} (key) VALUES ($1)`, [key]);
  if (failAtCommit) await client.query(`INSERT INTO ${orders} (key) VALUES ($1)`, [key]);
}

describe('completeInTransaction', () => {
  it('commits the work and the completed record together, or neither; a retry then runs once more', async () => {
    const events: IdempotencyEvent[] = [];
    const engine = new IdempotencyEngine({ store, onEvent: (event) => events.push(event) });
    const key = uniqueKey('tx');
    let executions = 0;
    const handle = () =>
      engine.run(
        { storageKey: key, fingerprint: 'fp-order' },
        (operation) =>
          store.completeInTransaction(
            operation,
            async (client) => {
              executions++;
              await insertOrder(client, key, executions === 1);
              return key;
            },
            created,
          ),
        created,
      );

    const failure = await handle().catch((error: unknown) => error);
    expect((failure as { code?: string }).code).toBe('23505');
    expect(executions).toBe(1);
    expect(await countOrders(key)).toBe(0);
    // Rolled back with the business rows: the engine released the record, it did not complete it.
    expect(await store.get(key)).toMatchObject({ state: 'failed', response: null });

    await expect(handle()).resolves.toMatchObject({ replayed: false, value: key });
    expect(executions).toBe(2);
    expect(await countOrders(key)).toBe(1);
    expect((await store.get(key))?.response).toEqual(created(key));

    await expect(handle()).resolves.toMatchObject({ replayed: true, response: created(key) });
    expect(executions).toBe(2);
    expect(events.filter((event) => event.type === 'lease_lost' || event.type === 'store_error')).toEqual([]);
  });

  it('rolls the work back when another holder took the record over meanwhile', async () => {
    const engine = new IdempotencyEngine({ store, leaseMs: 150, heartbeat: false });
    const key = uniqueKey('stale');
    let newHolder = '';
    const failure = await engine
      .run(
        { storageKey: key, fingerprint: 'fp-order' },
        (operation) =>
          store.completeInTransaction(
            operation,
            async (client) => {
              await insertOrder(client, key, false);
              // This holder stalls past its lease; a retry takes the record over.
              await sleep(300);
              const takeover = await store.acquire(key, {
                fingerprint: 'fp-order',
                token: 'new-holder',
                leaseMs: 60_000,
                ttlMs: 60_000,
              });
              newHolder = takeover.acquired ? 'new-holder' : '';
              return key;
            },
            created,
          ),
        created,
      )
      .catch((error: unknown) => error);
    expect(newHolder).toBe('new-holder');
    expect(isIdempotencyError(failure, 'in_flight')).toBe(true);
    expect(await countOrders(key)).toBe(0);
    expect(await store.get(key)).toMatchObject({ state: 'in_flight', token: 'new-holder' });
  });

  it('never completes in a transaction a statement of which failed, even when the work caught it', async () => {
    const engine = new IdempotencyEngine({ store });
    const key = uniqueKey('aborted');
    const failure = await engine
      .run(
        { storageKey: key, fingerprint: 'fp' },
        (operation) =>
          store.completeInTransaction(
            operation,
            async (client) => {
              await insertOrder(client, key, false);
              await client.query('SELECT 1 / 0').catch(() => {});
              return key;
            },
            created,
          ),
        created,
      )
      .catch((error: unknown) => error);
    expect((failure as { code?: string }).code).toBe('25P02'); // in_failed_sql_transaction
    expect(await countOrders(key)).toBe(0);
    expect(await store.get(key)).toMatchObject({ state: 'failed' });
  });

  it('reports a COMMIT that PostgreSQL turned into a ROLLBACK', async () => {
    const key = uniqueKey('commit-rollback');
    const unclaimed = { claimed: false, markCompleted: () => {} } as Operation;
    const work = async (client: pg.PoolClient) => {
      await insertOrder(client, key, false);
      await client.query('SELECT 1 / 0').catch(() => {});
    };
    await expect(store.completeInTransaction(unclaimed, work, () => created(key))).rejects.toThrow(
      /rolled back/,
    );
    expect(await countOrders(key)).toBe(0);
  });

  it('runs the work in a transaction without a record when fail-open ran it unclaimed', async () => {
    const key = uniqueKey('unclaimed');
    let marked = false;
    const operation: Operation = {
      storageKey: key,
      token: 'none',
      fingerprint: 'fp',
      store,
      ttlMs: 60_000,
      signal: new AbortController().signal,
      claimed: false,
      markCompleted: () => {
        marked = true;
      },
    };
    await expect(
      store.completeInTransaction(
        operation,
        (client) => insertOrder(client, key, false),
        () => created(key),
      ),
    ).resolves.toBeUndefined();
    expect(await countOrders(key)).toBe(1);
    expect(marked).toBe(false);
    expect(await store.get(key)).toBeNull();
  });

  it('needs a store built on a Pool', async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const onClient = postgresStore({ pool: client, schema: db.schema });
      const operation = { claimed: true } as Operation;
      await expect(
        onClient.completeInTransaction(
          operation,
          async () => 1,
          () => created('x'),
        ),
      ).rejects.toThrow(TypeError);
    } finally {
      await client.end();
    }
  });
});

describe('completeWithin (the caller owns the transaction)', () => {
  /** A handler that runs its own BEGIN ... COMMIT and completes the record inside it. */
  const ownTransaction =
    (key: string, failAtCommit: () => boolean, onRun: () => void) => async (operation: Operation) => {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        onRun();
        await insertOrder(client, key, failAtCommit());
        await store.completeWithin(client, operation, created(key));
        await client.query('COMMIT');
        return key;
      } catch (error) {
        await client.query('ROLLBACK');
        throw error;
      } finally {
        client.release();
      }
    };

  it('completes the record in the caller transaction, and the engine does not complete it again', async () => {
    const events: IdempotencyEvent[] = [];
    const engine = new IdempotencyEngine({ store, onEvent: (event) => events.push(event) });
    const key = uniqueKey('within');
    let executions = 0;
    const work = ownTransaction(
      key,
      () => false,
      () => executions++,
    );
    await expect(engine.run({ storageKey: key, fingerprint: 'fp' }, work, created)).resolves.toMatchObject({
      replayed: false,
    });
    expect(await countOrders(key)).toBe(1);
    expect((await store.get(key))?.response).toEqual(created(key));
    // A second complete by the engine would have been refused and reported as lease_lost.
    expect(events.map((event) => event.type)).toEqual(['execute']);
  });

  it('releases the record at once when the commit fails after completeWithin; a retry runs once more', async () => {
    const events: IdempotencyEvent[] = [];
    // A lease far longer than the test: a retry that runs now does so because the record was released.
    const engine = new IdempotencyEngine({
      store,
      leaseMs: 60_000,
      onEvent: (event) => events.push(event),
    });
    const key = uniqueKey('within-rollback');
    let executions = 0;
    const work = ownTransaction(
      key,
      () => executions === 1,
      () => executions++,
    );
    const handle = () => engine.run({ storageKey: key, fingerprint: 'fp' }, work, created);

    const failure = await handle().catch((error: unknown) => error);
    expect((failure as { code?: string }).code).toBe('23505');
    expect(await countOrders(key)).toBe(0);
    // The work had marked the operation completed, but its transaction rolled back: the engine still
    // released the record (fenced on in_flight + its token), and reported no lost lease.
    expect(await store.get(key)).toMatchObject({ state: 'failed', response: null });
    expect(events.map((event) => event.type)).toEqual(['execute']);

    await expect(handle()).resolves.toMatchObject({ replayed: false, value: key });
    expect(executions).toBe(2);
    expect(await countOrders(key)).toBe(1);
    expect(await handle()).toMatchObject({ replayed: true, response: created(key) });
    expect(executions).toBe(2);
  });

  it('leaves a completion that committed in place when the work throws after its commit', async () => {
    const events: IdempotencyEvent[] = [];
    const engine = new IdempotencyEngine({ store, onEvent: (event) => events.push(event) });
    const key = uniqueKey('within-committed');
    const committed = ownTransaction(
      key,
      () => false,
      () => {},
    );
    const failure = await engine
      .run(
        { storageKey: key, fingerprint: 'fp' },
        async (operation) => {
          await committed(operation);
          throw new Error('failed after the commit');
        },
        created,
      )
      .catch((error: unknown) => error);
    expect((failure as Error).message).toBe('failed after the commit');
    // The engine's release was refused (the record is completed, not in flight): the result stays.
    expect(await store.get(key)).toMatchObject({ state: 'completed', response: created(key) });
    expect(events.map((event) => event.type)).toEqual(['execute']);
    await expect(
      engine.run({ storageKey: key, fingerprint: 'fp' }, committed, created),
    ).resolves.toMatchObject({ replayed: true, response: created(key) });
  });

  it('throws in_flight (so the caller rolls back) when the record is no longer the operation’s', async () => {
    const key = uniqueKey('within-stale');
    await store.acquire(key, { fingerprint: 'fp', token: 'current', leaseMs: 60_000, ttlMs: 60_000 });
    const stale: Operation = {
      storageKey: key,
      token: 'stale',
      fingerprint: 'fp',
      store,
      ttlMs: 60_000,
      signal: new AbortController().signal,
      claimed: true,
      markCompleted: () => {
        throw new Error('must not be called');
      },
    };
    const work = ownTransaction(
      key,
      () => false,
      () => {},
    );
    const failure = await work(stale).catch((error: unknown) => error);
    expect(isIdempotencyError(failure, 'in_flight')).toBe(true);
    expect(await countOrders(key)).toBe(0);
    expect(await store.get(key)).toMatchObject({ state: 'in_flight', token: 'current' });
  });

  it('refuses a pool in place of the transaction client', async () => {
    await expect(
      store.completeWithin(pool as unknown as pg.ClientBase, { claimed: true } as Operation, created('x')),
    ).rejects.toThrow(/^\[idem\] \[postgres\] completeWithin .* not the pool/);
  });
});
