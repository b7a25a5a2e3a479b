import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FRAMEWORK_NAMES, type RunningDemo, startDemo } from './app.js';
import { runStorm } from './burst.js';
import { ordersFor, postOrder, uniqueKey } from './demo-process.fixture.js';

const SLOW_MS = 600;

describe.each(FRAMEWORK_NAMES)('%s on memory', (framework) => {
  let demo: RunningDemo;
  const errors: unknown[] = [];
  beforeAll(async () => {
    demo = await startDemo({ framework, port: 0, slowMs: SLOW_MS, onError: (error) => errors.push(error) });
  });
  afterAll(async () => {
    await demo?.close();
    expect(errors).toEqual([]);
  });

  it('replays a retry: same status and body, Idempotent-Replayed, no Set-Cookie, one order', async () => {
    const key = uniqueKey('replay');
    const first = await postOrder(demo.url, key, { item: 'coffee', quantity: 2 });
    const firstBody = await first.text();
    expect(first.status).toBe(201);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const order = JSON.parse(firstBody) as { id: string; key: string; item: string };
    expect(order).toMatchObject({ key, item: 'coffee', quantity: 2, attempt: 1 });
    expect(first.headers.get('set-cookie')).toMatch(new RegExp(`^last_order=${order.id};`));
    expect(first.headers.get('location')).toBe(`/orders/${order.id}`);

    const retry = await postOrder(demo.url, key, { quantity: 2, item: 'coffee' }); // same JSON, keys reordered
    expect(retry.status).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(retry.headers.get('set-cookie')).toBeNull();
    expect(retry.headers.get('location')).toBe(`/orders/${order.id}`);
    expect(await retry.text()).toBe(firstBody);

    const listed = await ordersFor(demo.url, key);
    expect(listed).toMatchObject({ executions: 1, attempts: 1 });
    expect(listed.orders.map((o) => o.id)).toEqual([order.id]);
    expect(await (await fetch(`${demo.url}/orders/${order.id}`)).json()).toEqual(order);
    const all = (await (await fetch(`${demo.url}/orders`)).json()) as { orders: Array<{ id: string }> };
    expect(all.orders.map((o) => o.id)).toContain(order.id);
  });

  it('answers 409 to a request that meets the key in flight (slow handler)', async () => {
    const key = uniqueKey('slow');
    const payload = { item: 'tea', simulate: 'slow' };
    const started = Date.now();
    const first = postOrder(demo.url, key, payload);
    await until(async () => (await ordersFor(demo.url, key)).attempts === 1);
    const concurrent = await postOrder(demo.url, key, payload);
    expect(concurrent.status).toBe(409);
    expect(concurrent.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(concurrent.headers.get('content-type')).toContain('application/problem+json');
    const created = await first;
    expect(created.status).toBe(201);
    expect(Date.now() - started).toBeGreaterThanOrEqual(SLOW_MS - 50);
    const retry = await postOrder(demo.url, key, payload);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(await retry.json()).toEqual(await created.json());
    expect(await ordersFor(demo.url, key)).toMatchObject({ executions: 1, attempts: 1 });
  });

  it('runs the handler again after a 500 (not stored), then replays the success', async () => {
    const key = uniqueKey('error');
    const payload = { item: 'flaky', simulate: 'error' };
    const failed = await postOrder(demo.url, key, payload);
    expect(failed.status).toBe(500);
    expect(failed.headers.get('set-cookie')).toBeNull();
    expect(await failed.json()).toMatchObject({ status: 500, title: 'Simulated failure' });
    expect(await ordersFor(demo.url, key)).toMatchObject({ executions: 0, attempts: 1 });

    const again = await postOrder(demo.url, key, payload);
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBeNull();
    expect(again.headers.get('set-cookie')).toMatch(/^last_order=/);
    const order = await again.json();
    expect(order).toMatchObject({ key, attempt: 2 });

    const replay = await postOrder(demo.url, key, payload);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(await replay.json()).toEqual(order);
    expect(await ordersFor(demo.url, key)).toMatchObject({ executions: 1, attempts: 2 });
  });

  it('refuses a missing key, a reused key with another payload, and bad bodies', async () => {
    const missing = await postOrder(demo.url, null, { item: 'x' });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({ code: 'key_missing' });

    const key = uniqueKey('mismatch');
    expect((await postOrder(demo.url, key, { item: 'x' })).status).toBe(201);
    const other = await postOrder(demo.url, key, { item: 'y' });
    expect(other.status).toBe(422);
    expect(await other.json()).toMatchObject({ code: 'key_mismatch' });

    const malformed = await postOrder(demo.url, uniqueKey('bad'), '{"item":');
    expect(malformed.status).toBe(400);
    expect(await malformed.json()).toMatchObject({
      title: 'Invalid order',
      detail: 'the body is not valid JSON',
    });
    const empty = await postOrder(demo.url, uniqueKey('empty'), '');
    expect(empty.status).toBe(400);
    expect((await empty.json()).detail).toMatch(/JSON object/);
    const invalid = await postOrder(demo.url, uniqueKey('invalid'), { item: 'x', simulate: 'explode' });
    expect(invalid.status).toBe(400);
    expect((await invalid.json()).detail).toMatch(/simulate/);

    // Over 1 MiB: idem's 413 on every framework (Fastify's own body limit answers first there).
    const huge = await postOrder(demo.url, uniqueKey('huge'), {
      item: 'x',
      note: 'x'.repeat(2 * 1024 * 1024),
    });
    expect(huge.status).toBe(413);
    expect(await huge.json()).toMatchObject({ code: 'request_too_large' });

    expect((await fetch(`${demo.url}/orders/ord_missing`)).status).toBe(404);
    expect((await fetch(`${demo.url}/nowhere`)).status).toBe(404);
  });

  it('answers 405 with Allow to a known path asked with another method', async () => {
    for (const [method, path, allow] of [
      ['PUT', '/orders', 'GET, HEAD, POST'],
      ['DELETE', '/orders/ord_1', 'GET, HEAD'],
      ['POST', '/', 'GET, HEAD'],
    ] as const) {
      const response = await fetch(`${demo.url}${path}`, { method });
      expect(response.status, `${method} ${path}`).toBe(405);
      expect(response.headers.get('allow')).toBe(allow);
      expect(await response.json()).toMatchObject({
        status: 405,
        detail: `${path} takes ${allow}, not ${method}`,
      });
    }
    // What Allow lists is answered.
    expect((await fetch(`${demo.url}/orders`, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(`${demo.url}/`, { method: 'HEAD' })).status).toBe(200);
  });

  it('serves the page, naming its framework and store', async () => {
    const response = await fetch(`${demo.url}/`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await response.text();
    expect(html).toContain(`"framework":"${framework}"`);
    expect(html).toContain('"store":"memory"');
    expect(html).not.toContain('/*DEMO_INFO*/');
  });

  it('executes exactly once per key in a storm', async () => {
    const result = await runStorm({ urls: [demo.url], keys: 6, concurrency: 8, retries: 2 });
    expect(result.keys.map((key) => key.executions)).toEqual([1, 1, 1, 1, 1, 1]);
    expect(result.totals).toMatchObject({ requests: 60, executions: 6, executed: 6, error: 0, failed: 0 });
    expect(result.totals.replayed + result.totals.in_flight).toBe(54);
    expect(result.ok).toBe(true);
  });
});

describe('the storm without a demo to reach', () => {
  it('says which URL it could not reach', async () => {
    const nobody = await startDemo({ framework: 'hono', port: 0 });
    const url = nobody.url;
    await nobody.close();
    await expect(runStorm({ urls: [url], keys: 1, concurrency: 1, retries: 0 })).rejects.toThrow(
      `GET ${url}/orders?key=`,
    );
  });
});

async function until(condition: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
