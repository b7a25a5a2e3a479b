import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type DemoProcess,
  ordersFor,
  postOrder,
  runScript,
  spawnDemo,
  uniqueKey,
} from './demo-process.fixture.js';

const exec = promisify(execFile);

describe('tsx src/main.ts, as the README starts it', () => {
  let demo: DemoProcess;
  beforeAll(async () => {
    demo = await spawnDemo([]);
  }, 40_000);
  afterAll(async () => {
    await demo?.stop('SIGKILL');
  });

  it('prints where it listens, on hono and the memory store by default', () => {
    expect(demo.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(demo.output()).toContain('the orders API on hono, idempotency store: memory');
  });

  it('prints a curl that, pasted into a shell, shows a replay', async () => {
    const line = demo
      .output()
      .split('\n')
      .find((text) => text.trimStart().startsWith('for i in 1 2; do curl'));
    expect(line).toBeDefined();
    const { stdout } = await exec('sh', ['-c', line!], { timeout: 10_000 });
    const [first, second, ...rest] = stdout.split(/(?=^HTTP\/1\.1 )/m).map((part) => part.trim());
    expect(rest).toEqual([]);
    expect(first).toMatch(/^HTTP\/1\.1 201/);
    expect(first).toMatch(/^set-cookie: last_order=ord_/im);
    expect(first).not.toMatch(/^idempotent-replayed:/im);
    expect(second).toMatch(/^HTTP\/1\.1 201/);
    expect(second).toMatch(/^idempotent-replayed: true/im);
    expect(second).not.toMatch(/^set-cookie:/im);
    const body = (response: string | undefined) => response?.split(/\r?\n\r?\n/)[1];
    expect(body(first)).toMatch(/^\{"id":"ord_/);
    expect(body(second)).toBe(body(first));
    const key = /Idempotency-Key: ([^']+)'/.exec(line!)![1]!;
    expect((await ordersFor(demo.url, key)).executions).toBe(1);
  });

  it('finishes a running request, then exits 0, on SIGTERM', async () => {
    const key = uniqueKey('shutdown');
    const slow = postOrder(demo.url, key, { item: 'late', simulate: 'slow' });
    for (let i = 0; (await ordersFor(demo.url, key)).attempts === 0; i++) {
      if (i > 200) throw new Error('the slow order never started');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const exited = demo.stop('SIGTERM');
    const response = await slow;
    expect(response.status).toBe(201);
    expect(await exited).toEqual({ code: 0, signal: null });
    expect(demo.output()).toContain('demo: stopped');
    await expect(fetch(demo.url)).rejects.toThrow();
  });
});

describe('tsx src/main.ts options', () => {
  it('takes the framework from the environment and stops on SIGINT', async () => {
    const demo = await spawnDemo([], { IDEM_DEMO_FRAMEWORK: 'fastify' });
    try {
      expect(demo.output()).toContain('the orders API on fastify');
      expect((await postOrder(demo.url, uniqueKey('env'), { item: 'x' })).status).toBe(201);
    } finally {
      expect(await demo.stop('SIGINT')).toEqual({ code: 0, signal: null });
    }
  }, 40_000);

  it('refuses an unknown store with the usage and exit code 2', async () => {
    const script = runScript('main.ts', ['--store', 'mongo']);
    expect(await script.exited).toEqual({ code: 2, signal: null });
    expect(script.output()).toContain('unknown store "mongo"');
    expect(script.output()).toContain('Usage: pnpm demo');
  }, 40_000);
});
