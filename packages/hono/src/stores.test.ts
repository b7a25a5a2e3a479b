import { testHttpBinding } from '@idem/http-test-suite';
import { postgresStore } from '@idem/postgres';
import { redisStore } from '@idem/redis';
import { postgresUrl, redisUrl } from '@idem/test-services';
import { Redis } from 'ioredis';
import pg from 'pg';
import { startHonoApp } from './conformance-app.js';

let redis: Redis | undefined;
testHttpBinding({
  name: 'hono + redis',
  only: 'core',
  start: startHonoApp,
  store: async () => {
    redis = new Redis(await redisUrl(), {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      lazyConnect: true,
    });
    await redis.connect();
    return redisStore({ client: redis, prefix: 'idem-test:hono:' });
  },
  teardown: async () => {
    await redis?.quit();
  },
});

let pool: pg.Pool | undefined;
testHttpBinding({
  name: 'hono + postgres',
  only: 'core',
  start: startHonoApp,
  store: async () => {
    pool = new pg.Pool({ connectionString: await postgresUrl(), max: 10 });
    pool.on('error', () => {});
    // A table of its own, so that other packages' tests never share rows with this run.
    const store = postgresStore({ pool, table: `idem_http_hono_${process.pid}` });
    await store.migrate();
    return store;
  },
  teardown: async (store) => {
    await pool?.query(`DROP TABLE IF EXISTS ${(store as ReturnType<typeof postgresStore>).table}`);
    await pool?.end();
  },
});
