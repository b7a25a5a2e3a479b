import { testHttpBinding } from '@idem/http-test-suite';
import { postgresStore } from '@idem/postgres';
import { redisStore } from '@idem/redis';
import { postgresUrl, redisUrl } from '@idem/test-services';
import { Redis } from 'ioredis';
import pg from 'pg';
import { startSuiteServer } from './suite-routes.js';

// The suite's core cases (replays, concurrency, wait, 409, 422, release, scopes, unstored responses)
// against the real backends, through the same Fastify app as the memory run.

const redis = {
  store: async () => {
    const client = new Redis(await redisUrl(), { maxRetriesPerRequest: 0 });
    return Object.assign(redisStore({ client, prefix: 'idem-fastify-test:' }), { client });
  },
  teardown: async (store: unknown) => {
    await (store as { client: Redis }).client.quit();
  },
};

testHttpBinding({ name: 'fastify + redis', only: 'core', start: startSuiteServer, ...redis });

testHttpBinding({
  name: "fastify, decideIn: 'preParsing' + redis",
  only: 'core',
  start: (options, app) => startSuiteServer(options, app, 'preParsing'),
  ...redis,
});

testHttpBinding({
  name: 'fastify + postgres',
  only: 'core',
  start: startSuiteServer,
  store: async () => {
    const pool = new pg.Pool({ connectionString: await postgresUrl(), max: 10 });
    pool.on('error', () => {});
    const store = postgresStore({ pool, table: 'idem_fastify_test' });
    await store.migrate();
    return Object.assign(store, { pool });
  },
  teardown: async (store) => {
    await (store as unknown as { pool: pg.Pool }).pool.end();
  },
});
