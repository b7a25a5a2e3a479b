import { IdempotencyEngine, isIdempotencyError, type StoredResponse } from '@idem/core';
import { makeResponse, uniqueKey } from '@idem/store-test-suite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PostgresStore, postgresStore } from './index.js';
import { openTestDatabase, type TestDatabase } from './test-database.fixture.js';

let db: TestDatabase;
let store: PostgresStore;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const response: StoredResponse = makeResponse();

beforeAll(async () => {
  db = await openTestDatabase('engine');
  store = postgresStore({ pool: db.pool({ max: 10 }), schema: db.schema });
  await store.migrate();
});
afterAll(async () => {
  await db?.close();
});

describe('IdempotencyEngine on postgres', () => {
  it('runs the work exactly once for 50 concurrent requests with one key', async () => {
    const engine = new IdempotencyEngine({ store });
    const key = uniqueKey('fifty');
    const counted = slowWork();
    const request = () => engine.run({ storageKey: key, fingerprint: 'fp' }, counted.work, () => response);
    const results = await Promise.allSettled(Array.from({ length: 50 }, request));
    expect(counted.executions).toBe(1);
    const executed = results.filter((result) => result.status === 'fulfilled' && !result.value.replayed);
    expect(executed).toHaveLength(1);
    expect(executed[0]).toMatchObject({ value: { replayed: false, value: 'created' } });
    // The others found it running (in_flight) or, when the pool made them wait that long, finished.
    for (const result of results) {
      if (result.status === 'rejected') expect(isIdempotencyError(result.reason, 'in_flight')).toBe(true);
      else if (result.value.replayed) expect(result.value.response).toEqual(response);
    }
    await expect(request()).resolves.toMatchObject({ replayed: true, response });
    expect(counted.executions).toBe(1);
  });

  it('with wait on, the 49 others get the one result replayed', async () => {
    const engine = new IdempotencyEngine({ store, wait: { timeoutMs: 5_000, pollMs: 20 } });
    const key = uniqueKey('fifty-wait');
    const counted = slowWork();
    const results = await Promise.all(
      Array.from({ length: 50 }, () =>
        engine.run({ storageKey: key, fingerprint: 'fp' }, counted.work, () => response),
      ),
    );
    expect(counted.executions).toBe(1);
    expect(results.filter((result) => !result.replayed)).toHaveLength(1);
    expect(results.filter((result) => result.replayed)).toHaveLength(49);
  });
});

/** Work that takes 100 ms and counts how often it ran. */
function slowWork() {
  const counted = {
    executions: 0,
    work: async () => {
      counted.executions++;
      await sleep(100);
      return 'created';
    },
  };
  return counted;
}
