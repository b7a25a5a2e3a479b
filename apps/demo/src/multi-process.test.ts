import { postgresUrl, redisUrl } from '@idem/test-services';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runStorm } from './burst.js';
import {
  type DemoProcess,
  ordersFor,
  postOrder,
  runScript,
  spawnDemo,
  uniqueKey,
} from './demo-process.fixture.js';

// Two demo processes (two frameworks) on one backend; every key's requests are split across both.
const SHARED = [
  {
    store: 'redis',
    frameworks: ['hono', 'fastify'],
    env: async () => ({ IDEM_REDIS_URL: await redisUrl() }),
  },
  {
    store: 'postgres',
    frameworks: ['express', 'hono'],
    env: async () => ({ IDEM_PG_URL: await postgresUrl() }),
  },
] as const;

describe.each(SHARED)('two demo processes sharing $store', ({ store, frameworks, env }) => {
  let demos: DemoProcess[] = [];
  beforeAll(async () => {
    const vars = await env();
    demos = await Promise.all(
      frameworks.map((framework) => spawnDemo(['--framework', framework, '--store', store], vars)),
    );
  }, 60_000);
  afterAll(async () => {
    await Promise.all(demos.map((demo) => demo.stop()));
  });

  it('storm split across both: exactly one execution per key', async () => {
    const result = await runStorm({
      urls: demos.map((demo) => demo.url),
      keys: 10,
      concurrency: 10,
      retries: 2,
    });
    expect(result.keys.map((key) => key.executions)).toEqual(Array(10).fill(1));
    expect(result.totals).toMatchObject({ requests: 120, executions: 10, executed: 10, error: 0 });
    expect(result.ok).toBe(true);
    // Both processes answered some of every key's requests.
    for (const key of result.keys) expect(new Set(key.responses.map((r) => r.url)).size).toBe(2);
  });

  it('shares orders: a retry on the other process is a replay of the same order', async () => {
    const key = uniqueKey('shared');
    const [a, b] = demos as [DemoProcess, DemoProcess];
    const created = await postOrder(a.url, key, { item: 'shared' });
    expect(created.status).toBe(201);
    const replay = await postOrder(b.url, key, { item: 'shared' });
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    const order = await created.json();
    expect(await replay.json()).toEqual(order);
    for (const demo of demos)
      expect((await ordersFor(demo.url, key)).orders.map((o) => o.id)).toEqual([order.id]);
  });

  it('pnpm demo:storm across both URLs prints OK and exits 0', async () => {
    const storm = runScript('storm.ts', [...demos.flatMap((demo) => ['--url', demo.url]), '--keys', '4']);
    expect(await storm.exited).toEqual({ code: 0, signal: null });
    expect(storm.output()).toMatch(/^total\s+48\s+4\s+4\s/m);
    expect(storm.output()).toContain('OK: exactly one execution per key (4 of 4 keys');
  }, 30_000);
});

describe('two demo processes on the memory store (not shared)', () => {
  let demos: DemoProcess[] = [];
  beforeAll(async () => {
    demos = await Promise.all([spawnDemo([]), spawnDemo(['--framework', 'express'])]);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(demos.map((demo) => demo.stop()));
  });

  it('makes the storm fail: each process executes every key once, and the exit code says so', async () => {
    const storm = runScript('storm.ts', ['--url', demos.map((demo) => demo.url).join(','), '--keys', '3']);
    expect(await storm.exited).toEqual({ code: 1, signal: null });
    expect(storm.output()).toMatch(/^total\s+36\s+6\s/m);
    expect(storm.output()).toContain('FAILED: 3 of 3 keys');
    expect(storm.output()).toContain('3 keys executed 2x');
  }, 30_000);
});
