/**
 * Median time per call of the store's acquire and complete against a local PostgreSQL, one call at a
 * time over one connection (client-measured: network round trip + parse/plan + execution).
 *
 *   npx tsx bench/acquire-complete.ts            # 5000 calls each (after 500 warm-up calls)
 *   BENCH_CALLS=20000 npx tsx bench/acquire-complete.ts
 *
 * Runs twice, alternating: with prepared statements (the default) and with `preparedStatements: false`.
 * Then replays of one key from 8 connections at once (calls per second): a claim the record refuses
 * writes nothing and takes no lock, so these run side by side.
 *
 * Uses IDEM_PG_URL or postgres://postgres@127.0.0.1:5432/test, in a schema of its own that it drops.
 */
import { performance } from 'node:perf_hooks';
import type { StoredResponse } from '@idem/core';
import { postgresUrl } from '@idem/test-services';
import pg from 'pg';
import { postgresStore, quoteIdentifier } from '../src/index.js';

const calls = Number(process.env['BENCH_CALLS'] ?? 5_000);
const warmup = 500;
const response: StoredResponse = {
  status: 201,
  headers: [
    ['content-type', 'application/json'],
    ['location', '/orders/123'],
    ['x-request-id', 'f3a9c2d1'],
  ],
  body: new TextEncoder().encode(JSON.stringify({ id: 123, status: 'created', items: [1, 2, 3] })),
};

function summary(name: string, samples: number[]): string {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const us = (ms: number) => `${(ms * 1000).toFixed(0).padStart(5)} µs`;
  return `${name.padEnd(22)} n=${samples.length}  median ${us(at(0.5))}  p90 ${us(at(0.9))}  p99 ${us(at(0.99))}`;
}

async function time(samples: number[], fn: () => Promise<unknown>): Promise<void> {
  const start = performance.now();
  await fn();
  samples.push(performance.now() - start);
}

const url = await postgresUrl();
const pool = new pg.Pool({ connectionString: url, max: 1 });
pool.on('error', () => {});
const connections = 8;
const sharedPool = new pg.Pool({ connectionString: url, max: connections });
sharedPool.on('error', () => {});
const schema = `idem_bench_${Date.now().toString(36)}`;
const stores = {
  prepared: postgresStore({ pool, schema }),
  unnamed: postgresStore({ pool, schema, preparedStatements: false }),
};
const sharedStores = {
  prepared: postgresStore({ pool: sharedPool, schema }),
  unnamed: postgresStore({ pool: sharedPool, schema, preparedStatements: false }),
};
const claim = () => ({ fingerprint: 'fp', token: crypto.randomUUID(), leaseMs: 15_000, ttlMs: 86_400_000 });

/** Replays of one key from `connections` connections at once, `count` in all: calls per second. */
async function concurrentReplays(mode: keyof typeof stores, count: number): Promise<number> {
  const store = sharedStores[mode];
  const key = `idem:shared:${crypto.randomUUID()}`;
  const first = claim();
  await store.acquire(key, first);
  await store.complete(key, first.token, response, 86_400_000);
  let started = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (started++ < count) await store.acquire(key, claim());
    }),
  );
  return count / ((performance.now() - start) / 1000);
}
try {
  await stores.prepared.migrate();
  const version = (await pool.query('SHOW server_version')).rows[0].server_version;
  const run = async (mode: keyof typeof stores, label: string, count: number, record: boolean) => {
    const store = stores[mode];
    const acquire: number[] = [];
    const complete: number[] = [];
    const replay: number[] = [];
    const keys = Array.from({ length: count }, (_, i) => `idem:${label}:${i}:${crypto.randomUUID()}`);
    const claims = keys.map(claim);
    for (const [i, key] of keys.entries()) await time(acquire, () => store.acquire(key, claims[i]!));
    for (const [i, key] of keys.entries()) {
      await time(complete, () => store.complete(key, claims[i]!.token, response, 86_400_000));
    }
    for (const key of keys) {
      await time(replay, () => store.acquire(key, claim()));
    }
    if (record) {
      console.log(
        `${mode} statements: PostgreSQL ${version}, one connection, sequential calls, ${calls} calls each`,
      );
      console.log(summary('acquire (new key)', acquire));
      console.log(summary('complete', complete));
      console.log(summary('acquire (replay)', replay));
    }
  };
  for (const mode of ['prepared', 'unnamed', 'prepared', 'unnamed'] as const) {
    await run(mode, 'warmup', warmup, false);
    await run(mode, 'measure', calls, true);
  }
  for (const mode of ['prepared', 'unnamed', 'prepared', 'unnamed'] as const) {
    await concurrentReplays(mode, warmup);
    const rate = await concurrentReplays(mode, calls);
    console.log(
      `${mode} statements: replays of one key from ${connections} connections at once: ${rate.toFixed(0)} calls/s`,
    );
  }
} finally {
  await pool.query(`DROP SCHEMA IF EXISTS ${quoteIdentifier(schema)} CASCADE`);
  await pool.end();
  await sharedPool.end();
}
