import { randomUUID } from 'node:crypto';
import type { Claim } from '@idem/core';
import { postgresStore } from '@idem/postgres';
import { redisStore } from '@idem/redis';
import { postgresUrl, RedisServerProcess } from '@idem/test-services';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openServerCounter, type ServerCounter } from './server-counters.js';

const claim = (): Claim => ({ fingerprint: 'fp', token: randomUUID(), leaseMs: 5_000, ttlMs: 60_000 });

// The counters are server-wide: each test has a server (Redis) or a database (PostgreSQL) of its own,
// so that the other tests running meanwhile do not count.
describe('the Redis counter', () => {
  let server: RedisServerProcess;
  let client: Redis;
  let counter: ServerCounter;
  beforeAll(async () => {
    server = await RedisServerProcess.start();
    client = new Redis(server.url);
    counter = (await openServerCounter('redis', { IDEM_REDIS_URL: server.url }))!;
  });
  afterAll(async () => {
    await counter?.close();
    client?.disconnect();
    await server?.stop();
  });

  it('counts one per store operation; not the commands its scripts run, nor its own reads', async () => {
    const store = redisStore({ client });
    const key = `bench-counter:${randomUUID()}`;
    const start = await counter.read();
    await store.acquire(key, claim()); // the first call on a connection sends the script: EVAL
    expect((await counter.read()) - start).toBe(1);
    const before = await counter.read();
    await store.acquire(key, claim()); // the record blocks it: one EVALSHA
    await store.get(key);
    await store.delete(key);
    expect((await counter.read()) - before).toBe(3);
  });
});

describe('the PostgreSQL counter', () => {
  const database = `idem_bench_counter_${randomUUID().slice(0, 8)}`;
  let admin: pg.Client;
  let pool: pg.Pool;
  let counter: ServerCounter;
  beforeAll(async () => {
    const url = new URL(await postgresUrl());
    admin = new pg.Client({ connectionString: url.toString() });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${database}`);
    url.pathname = `/${database}`;
    // One connection, opened before counting and kept open: a backend's start is a transaction too.
    pool = new pg.Pool({ connectionString: url.toString(), max: 1, idleTimeoutMillis: 0 });
    counter = (await openServerCounter('postgres', { IDEM_PG_URL: url.toString() }))!;
  });
  afterAll(async () => {
    await counter?.close();
    await pool?.end();
    if (!admin) return;
    // pool.end() resolves before its connections have closed: dropping the database WITH (FORCE) while
    // one is still saying goodbye kills it, and its client reports the FATAL as an unhandled error.
    for (let attempt = 0; attempt < 100; attempt++) {
      const { rows } = await admin.query<{ backends: number }>(
        'SELECT count(*)::int AS backends FROM pg_stat_activity WHERE datname = $1',
        [database],
      );
      if (rows[0]!.backends === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.end();
  });

  it('counts one per store operation, and not its own reads', async () => {
    const store = postgresStore({ pool });
    await store.migrate();
    const key = `bench-counter:${randomUUID()}`;
    const before = await counter.read();
    await store.acquire(key, claim());
    await store.acquire(key, claim()); // the record blocks it
    await store.get(key);
    await store.delete(key);
    expect((await counter.read()) - before).toBe(4);
    expect((await counter.read()) - before).toBe(4);
  }, 60_000);
});

it('has no counter for the memory store or DynamoDB Local', async () => {
  const env = { IDEM_REDIS_URL: 'redis://127.0.0.1:1', IDEM_PG_URL: 'postgres://127.0.0.1:1/x' };
  expect(await openServerCounter('memory', env)).toBeNull();
  expect(await openServerCounter('dynamodb', env)).toBeNull();
});
