import { makeClaim, uniqueKey } from '@idem/store-test-suite';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type PostgresStore, postgresStore } from './index.js';
import { openTestDatabase, type TestDatabase } from './test-database.fixture.js';

let db: TestDatabase;
let tables = 0;
const nextTable = () => `sweep_${++tables}`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  db = await openTestDatabase('sweeper');
});
afterAll(async () => {
  await db?.close();
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** A store on a table of its own, with `expired` rows past their ttl and `live` rows still valid. */
async function seededStore(expired: number, live: number, table = nextTable()): Promise<PostgresStore> {
  const store = postgresStore({ pool: db.admin, schema: db.schema, table });
  await store.migrate();
  await Promise.all([
    ...Array.from({ length: expired }, () =>
      store.acquire(uniqueKey('old'), makeClaim('fp', { leaseMs: 1, ttlMs: 1 })),
    ),
    ...Array.from({ length: live }, () => store.acquire(uniqueKey('live'), makeClaim())),
  ]);
  await sleep(20);
  return store;
}

const rowCount = async (store: PostgresStore): Promise<number> =>
  (await db.admin.query(`SELECT count(*)::int AS n FROM ${store.table}`)).rows[0].n;

describe('sweep', () => {
  it('deletes only expired rows, at most `limit` per call', async () => {
    const store = await seededStore(25, 5);
    expect(await store.sweep({ limit: 10 })).toBe(10);
    expect(await store.sweep({ limit: 10 })).toBe(10);
    expect(await store.sweep({ limit: 10 })).toBe(5);
    expect(await store.sweep({ limit: 10 })).toBe(0);
    expect(await rowCount(store)).toBe(5);
  });

  it('lets several instances sweep at once: every expired row deleted exactly once', async () => {
    const table = nextTable();
    const seeded = await seededStore(300, 10, table);
    const sweepers = Array.from({ length: 3 }, () =>
      postgresStore({ pool: db.pool({ max: 1 }), schema: db.schema, table }),
    );
    const drain = async (store: PostgresStore) => {
      let total = 0;
      for (;;) {
        const deleted = await store.sweep({ limit: 40 });
        total += deleted;
        if (deleted === 0) return total;
      }
    };
    const totals = await Promise.all(sweepers.map(drain));
    expect(totals.reduce((sum, n) => sum + n, 0)).toBe(300);
    expect(await rowCount(seeded)).toBe(10);
  });

  it('skips a row another transaction holds instead of waiting for it', async () => {
    const store = await seededStore(3, 0);
    const locker = await db.admin.connect();
    try {
      await locker.query('BEGIN');
      await locker.query(`SELECT 1 FROM ${store.table} ORDER BY key LIMIT 1 FOR UPDATE`);
      // Resolving while the lock is held is the proof that it did not wait.
      expect(await store.sweep({ limit: 10 })).toBe(2);
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
    }
    expect(await store.sweep({ limit: 10 })).toBe(1);
  });

  it('refuses a limit that is not a positive integer', async () => {
    const store = postgresStore({ pool: db.admin, schema: db.schema });
    await expect(store.sweep({ limit: 0 })).rejects.toThrow(TypeError);
    await expect(store.sweep({ limit: 1.5 })).rejects.toThrow(TypeError);
  });
});

describe('startSweeper', () => {
  it('sweeps in bounded runs on an interval until stopped', async () => {
    const store = await seededStore(30, 2);
    const runs: number[] = [];
    const sweeper = store.startSweeper({
      intervalMs: 30,
      limit: 5,
      maxBatches: 2,
      onSweep: (n) => runs.push(n),
    });
    for (let waited = 0; (await rowCount(store)) > 2 && waited < 3_000; waited += 30) await sleep(30);
    await sweeper.stop();
    expect(await rowCount(store)).toBe(2);
    // 30 rows, at most 2 batches of 5 per run: 10, 10, 10, then empty runs.
    expect(runs.slice(0, 3)).toEqual([10, 10, 10]);
    const after = runs.length;
    await sleep(100);
    expect(runs.length).toBe(after);
    await sweeper.stop();
  });

  it('keeps running after a failed sweep, reporting it to onError', async () => {
    const store = postgresStore({ pool: db.admin, schema: db.schema, table: 'never_migrated' });
    const errors: unknown[] = [];
    const sweeper = store.startSweeper({ intervalMs: 20, onError: (error) => errors.push(error) });
    for (let waited = 0; errors.length < 2 && waited < 3_000; waited += 20) await sleep(20);
    await sweeper.stop();
    expect(errors.length).toBeGreaterThanOrEqual(2);
    expect((errors[0] as { code?: string }).code).toBe('42P01'); // undefined_table
  });

  it('does not keep the process alive: its timer is unref’d', async () => {
    const timers: ReturnType<typeof setTimeout>[] = [];
    const original = globalThis.setTimeout;
    vi.spyOn(globalThis, 'setTimeout').mockImplementation(((...args: Parameters<typeof setTimeout>) => {
      const timer = original(...args);
      timers.push(timer);
      return timer;
    }) as typeof setTimeout);
    const store = postgresStore({ pool: db.admin, schema: db.schema });
    const sweeper = store.startSweeper({ intervalMs: 60_000 });
    vi.restoreAllMocks();
    expect(timers).toHaveLength(1);
    expect(timers[0]!.hasRef()).toBe(false);
    await sweeper.stop();
  });

  it('refuses options that are not positive integers', () => {
    const store = postgresStore({ pool: db.admin, schema: db.schema });
    expect(() => store.startSweeper({ intervalMs: 0 })).toThrow(TypeError);
    expect(() => store.startSweeper({ maxBatches: -1 })).toThrow(TypeError);
  });
});
