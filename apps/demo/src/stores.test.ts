process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';

import { dynamodbEndpoint, postgresUrl, redisUrl } from '@idem/test-services';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FrameworkName, type RunningDemo, STORE_NAMES, type StoreName, startDemo } from './app.js';
import { runStorm } from './burst.js';
import { openStore } from './stores.js';

/** Where each store's server is, for the test run. */
async function storeEnv(store: StoreName): Promise<Record<string, string>> {
  switch (store) {
    case 'memory':
      return {};
    case 'redis':
      return { IDEM_REDIS_URL: await redisUrl() };
    case 'postgres':
      return { IDEM_PG_URL: await postgresUrl() };
    case 'dynamodb':
      return { IDEM_DYNAMODB_ENDPOINT: await dynamodbEndpoint(), IDEM_DYNAMODB_TABLE: 'idem_demo_test' };
  }
}

// Each store under another framework, so that every binding meets a remote store too.
const FRAMEWORK_OF: Record<StoreName, FrameworkName> = {
  memory: 'hono',
  redis: 'express',
  postgres: 'fastify',
  dynamodb: 'hono',
};

describe.each(STORE_NAMES)('storm on %s', (store) => {
  let demo: RunningDemo;
  beforeAll(async () => {
    demo = await startDemo({
      framework: FRAMEWORK_OF[store],
      store,
      env: await storeEnv(store),
      port: 0,
      slowMs: 300,
      // A JVM that just started (DynamoDB Local) on a busy 2-core runner can take longer than idem's
      // default 3 s store timeout; a 503 then would say nothing about the demo.
      idempotency: { storeTimeoutMs: 15_000 },
    });
  }, 90_000);
  afterAll(async () => {
    await demo?.close();
  });

  it('executes exactly once per key', async () => {
    const result = await runStorm({ urls: [demo.url], keys: 8, concurrency: 10, retries: 2 });
    expect(result.keys.map((key) => key.executions)).toEqual(Array(8).fill(1));
    expect(result.totals).toMatchObject({ requests: 96, executions: 8, executed: 8, error: 0, failed: 0 });
    expect(result.ok).toBe(true);
  });

  it('answers 409 while a slow handler runs, and still executes once per key', async () => {
    const result = await runStorm({ urls: [demo.url], keys: 4, concurrency: 6, retries: 1, payload: 'slow' });
    expect(result.keys.map((key) => key.executions)).toEqual([1, 1, 1, 1]);
    // All of a burst arrives within the 300 ms the first request takes; the retry comes after it.
    expect(result.totals).toMatchObject({ executed: 4, in_flight: 20, replayed: 4, error: 0 });
    expect(result.ok).toBe(true);
  });

  it('runs a failed first run again, and keeps one order per key', async () => {
    const result = await runStorm({
      urls: [demo.url],
      keys: 4,
      concurrency: 4,
      retries: 2,
      payload: 'error',
    });
    expect(result.keys.map((key) => key.executions)).toEqual([1, 1, 1, 1]);
    expect(result.totals).toMatchObject({ executed: 4, failed: 4, error: 0 });
    expect(result.ok).toBe(true);
  });
});

describe('a store the demo cannot use', () => {
  it('says to start one when nothing answers', async () => {
    await expect(openStore('redis', { IDEM_REDIS_URL: 'redis://127.0.0.1:1' })).rejects.toThrow(
      /^\[demo\] cannot use Redis at redis:\/\/127\.0\.0\.1:1: .*Start one .*or set IDEM_REDIS_URL to yours\.$/,
    );
  });

  it('says to fix the URL when the server answered (a database that does not exist)', async () => {
    const url = new URL(await postgresUrl());
    url.pathname = '/idem_demo_no_such_database';
    const failure = openStore('postgres', { IDEM_PG_URL: url.toString() });
    await expect(failure).rejects.toThrow(
      /does not exist\. The server answered: set IDEM_PG_URL to a URL it accepts/,
    );
    await expect(failure).rejects.not.toThrow(/Start one/);
  });
});
