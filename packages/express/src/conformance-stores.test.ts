import { testHttpBinding } from '@idem/http-test-suite';
import { postgresStore } from '@idem/postgres';
import { redisStore } from '@idem/redis';
import { postgresUrl, redisUrl } from '@idem/test-services';
import express from 'express';
import express4 from 'express4';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll } from 'vitest';
import { startConformanceApp } from './conformance-app.fixture.js';

// The suite's core cases (those that exercise the store through HTTP) on the real backends.
const redis = new Redis(await redisUrl(), { maxRetriesPerRequest: 0 });
// A schema of this run's own, so that concurrent test runs never share a table.
const schema = `idem_express_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
const pool = new pg.Pool({ connectionString: await postgresUrl(), max: 10 });
pool.on('error', () => {});
afterAll(async () => {
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await pool.end();
  await redis.quit();
});

for (const [name, framework] of [
  ['express 5', express],
  ['express 4', express4],
] as const) {
  testHttpBinding({
    name: `${name} + redis`,
    only: 'core',
    start: startConformanceApp(framework, 'parsers after idem'),
    store: () => redisStore({ client: redis, prefix: `idem-express-test:${name.replace(' ', '')}:` }),
  });
}

testHttpBinding({
  name: 'express 5 + postgres',
  only: 'core',
  start: startConformanceApp(express, 'parsers after idem'),
  store: async () => {
    const store = postgresStore({ pool, schema });
    await store.migrate();
    return store;
  },
});
