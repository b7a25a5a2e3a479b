import { IdempotencyEngine, type StoredResponse } from '@idem/core';
import { makeClaim, makeResponse, uniqueKey } from '@idem/store-test-suite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PostgresStore, postgresStore } from './index.js';
import { openTestDatabase, type TestDatabase } from './test-database.fixture.js';

// A claim the record refuses (a replay, a conflict, a mismatch) is answered from the row as the
// statement's snapshot has it, without writing: retries of one key neither queue behind each other's
// row lock nor each flush a commit.
let db: TestDatabase;
let store: PostgresStore;
let engine: IdempotencyEngine;

const response: StoredResponse = makeResponse();

beforeAll(async () => {
  db = await openTestDatabase('refused_claims');
  // queryTimeoutMs: a claim that did wait on the row lock fails the test instead of hanging it.
  store = postgresStore({ pool: db.pool({ max: 8 }), schema: db.schema, queryTimeoutMs: 2_000 });
  await store.migrate();
  engine = new IdempotencyEngine({ store, heartbeat: false });
});
afterAll(async () => {
  await db?.close();
});

/** The transaction that wrote the row's current version, and the version's place in the table. */
const rowVersion = async (key: string) =>
  (await db.admin.query(`SELECT xmin::text, ctid::text FROM ${store.table} WHERE key = $1`, [key])).rows[0];

describe('a refused claim', () => {
  it('leaves the row as it was: replays, conflicts and mismatches write nothing', async () => {
    const key = uniqueKey('replays');
    const claim = makeClaim('fp-a');
    await store.acquire(key, claim);
    const inFlight = await rowVersion(key);
    await expect(store.acquire(key, makeClaim('fp-a'))).resolves.toMatchObject({
      acquired: false,
      record: { state: 'in_flight', token: claim.token },
    });
    expect(await rowVersion(key)).toEqual(inFlight);

    expect(await store.complete(key, claim.token, response, 60_000)).toBe(true);
    const completed = await rowVersion(key);
    const replays = await Promise.all(
      Array.from({ length: 20 }, () => store.acquire(key, makeClaim('fp-a'))),
    );
    for (const replay of replays) {
      expect(replay).toMatchObject({ acquired: false, record: { state: 'completed', response } });
    }
    await expect(store.acquire(key, makeClaim('fp-b'))).resolves.toMatchObject({
      acquired: false,
      record: { state: 'completed', fingerprint: 'fp-a' },
    });
    expect(await rowVersion(key)).toEqual(completed);
  });

  it('does not wait for a transaction that holds the row lock', async () => {
    const key = uniqueKey('locked');
    await engine.run(
      { storageKey: key, fingerprint: 'fp-a' },
      async () => 'ran',
      () => response,
    );
    await db.whileRowLocked(store.table, key, async () => {
      await expect(
        engine.run(
          { storageKey: key, fingerprint: 'fp-a' },
          async () => 'ran again',
          () => response,
        ),
      ).resolves.toEqual({ replayed: true, response });
      await expect(store.acquire(key, makeClaim('fp-b'))).resolves.toMatchObject({
        acquired: false,
      });
    });
  });

  it('still takes over, on the row as it is now, a record the claim may take over', async () => {
    const key = uniqueKey('takeover');
    const first = makeClaim('fp-a');
    await store.acquire(key, first);
    expect(await store.release(key, first.token, 60_000)).toBe(true);
    const before = await rowVersion(key);
    // Concurrent takeovers of one failed record: the row lock makes exactly one of them win.
    const claims = Array.from({ length: 10 }, () => makeClaim('fp-a'));
    const results = await Promise.all(claims.map((claim) => store.acquire(key, claim)));
    const winners = claims.filter((_, index) => results[index]?.acquired);
    expect(winners).toHaveLength(1);
    expect(await store.get(key)).toMatchObject({ state: 'in_flight', token: winners[0]?.token });
    expect(await rowVersion(key)).not.toEqual(before);
  });
});
