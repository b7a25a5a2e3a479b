import { startDemo } from '@idem/demo/app';
import { createIdempotentFetch, retryInfo } from '@idem/fetch';
import { afterEach, describe, expect, it } from 'vitest';
import { FaultProxy } from '../proxy.js';

// The client half, end to end: `@idem/fetch` against the demo's orders API (Hono + idem on the memory
// store) through a FaultProxy that lets every request reach the server and then loses ~30 % of the
// responses. Each call must end with its one order; a naive retry loop that makes a new key per
// attempt, through the same faults, must create duplicates (else the faults proved nothing).

const CALLS = 200;
const BATCH = 20;
const DROP_PROBABILITY = 0.3;

interface Order {
  id: string;
  key: string | null;
}

/** What one variant did, from the server's side: orders per key, read from the demo without the proxy. */
interface Outcome {
  calls: number;
  cuts: number;
  attempts: number;
  orders: number;
  duplicates: number;
}

/** mulberry32: a small seeded PRNG, so that a run's drop decisions come from a known sequence. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const running: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  // The proxy first: closing it resets what is still open, so the demo's close does not wait on it.
  for (const resource of running.splice(0).reverse()) await resource.close();
});

/** A fresh demo behind a proxy that drops responses with {@link DROP_PROBABILITY}. */
async function setUp(seed: number) {
  const demo = await startDemo({ framework: 'hono', store: 'memory', port: 0 });
  running.push(demo);
  const proxy = await FaultProxy.start({ host: '127.0.0.1', port: demo.port });
  running.push(proxy);
  proxy.dropResponses(DROP_PROBABILITY, seeded(seed));
  return { demo, proxy, viaProxy: `http://127.0.0.1:${proxy.port}` };
}

/** The orders the demo holds for `key`, asked directly (not through the proxy). */
async function ordersFor(demoUrl: string, key: string): Promise<{ orders: Order[]; attempts: number }> {
  const response = await fetch(`${demoUrl}/orders?key=${encodeURIComponent(key)}`);
  expect(response.status).toBe(200);
  return (await response.json()) as { orders: Order[]; attempts: number };
}

/** Every order the demo holds (`GET /orders` lists only the latest 100, so the repository is asked). */
async function allOrders(demo: Awaited<ReturnType<typeof startDemo>>): Promise<Order[]> {
  return demo.backend.orders.list({ limit: Number.MAX_SAFE_INTEGER });
}

/** Runs `call(i)` for i in [0, CALLS), BATCH at a time. */
async function inBatches<T>(call: (i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = [];
  for (let start = 0; start < CALLS; start += BATCH) {
    const size = Math.min(BATCH, CALLS - start);
    results.push(...(await Promise.all(Array.from({ length: size }, (_, j) => call(start + j)))));
  }
  return results;
}

const orderBody = (i: number) => JSON.stringify({ item: `item-${i}`, quantity: (i % 5) + 1 });

function report(name: string, outcome: Outcome): void {
  console.log(
    `[fetch-e2e] ${name}: ${outcome.calls} calls, ${outcome.cuts} responses cut, ${outcome.attempts} attempts, ` +
      `${outcome.orders} orders, ${outcome.duplicates} duplicates`,
  );
}

describe('@idem/fetch through a network that loses responses', () => {
  let withIdem: Outcome | undefined;

  it('creates exactly one order per logical call, and each call gets its own order', async () => {
    const { demo, proxy, viaProxy } = await setUp(1);
    const idemFetch = createIdempotentFetch({
      // Enough attempts that 0.3^maxAttempts is negligible over 200 calls; short waits keep it fast.
      maxAttempts: 12,
      baseDelayMs: 5,
      maxDelayMs: 50,
    });

    const calls = await inBatches(async (i) => {
      const response = await idemFetch(`${viaProxy}/orders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: orderBody(i),
      });
      const info = retryInfo(response);
      return { i, status: response.status, order: (await response.json()) as Order, info };
    });

    for (const call of calls) {
      expect([200, 201]).toContain(call.status);
      expect(call.info?.idempotencyKey).toBeTypeOf('string');
    }
    const keys = calls.map((call) => call.info?.idempotencyKey ?? '');
    expect(new Set(keys).size).toBe(CALLS);

    // The server's view, not the client's: per key, exactly one order, and it is the one the call got.
    for (const call of calls) {
      const key = call.info?.idempotencyKey ?? '';
      expect(call.order.key).toBe(key);
      const { orders, attempts } = await ordersFor(demo.url, key);
      expect(orders.map((order) => order.id)).toEqual([call.order.id]);
      expect(attempts).toBe(1);
    }
    const all = await allOrders(demo);
    expect(all).toHaveLength(CALLS);

    const cuts = proxy.stats().dropped;
    const attempts = calls.reduce((sum, call) => sum + (call.info?.attempts ?? 0), 0);
    const replayed = calls.filter((call) => call.info?.replayed).length;
    expect(cuts).toBeGreaterThan(0);
    // Every cut cost one more attempt (a cut response is retried, and nothing else was retried here)...
    expect(attempts).toBe(CALLS + cuts);
    // ...and a call whose first order was cut got it back as a replay.
    expect(replayed).toBeGreaterThan(0);
    withIdem = { calls: CALLS, cuts, attempts, orders: all.length, duplicates: all.length - CALLS };
    report('@idem/fetch', withIdem);
    console.log(`[fetch-e2e] @idem/fetch: ${replayed} calls got their order as a replay`);
  });

  it('contrast: a naive retry with a new key per attempt creates duplicates through the same faults', async () => {
    const { demo, proxy, viaProxy } = await setUp(1);
    let attempts = 0;
    const keysTried = new Set<string>();

    /** What idem exists to replace: on a network error, try again, with a new key each time. */
    async function naivePost(body: string): Promise<Response> {
      for (let attempt = 1; ; attempt++) {
        const key = crypto.randomUUID();
        keysTried.add(key);
        attempts++;
        try {
          return await fetch(`${viaProxy}/orders`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'idempotency-key': key },
            body,
          });
        } catch (error) {
          if (!(error instanceof TypeError) || attempt >= 12) throw error;
        }
      }
    }

    const statuses = await inBatches(async (i) => {
      const response = await naivePost(orderBody(i));
      await response.arrayBuffer();
      return response.status;
    });
    for (const status of statuses) expect([200, 201]).toContain(status);

    let orders = 0;
    for (const key of keysTried) orders += (await ordersFor(demo.url, key)).orders.length;
    const all = await allOrders(demo);
    expect(all).toHaveLength(orders);

    const cuts = proxy.stats().dropped;
    expect(cuts).toBeGreaterThan(0);
    // Each cut response was an order made and lost: the naive client made another one.
    expect(orders).toBe(CALLS + cuts);
    expect(orders).toBeGreaterThan(CALLS);
    const naive = { calls: CALLS, cuts, attempts, orders, duplicates: orders - CALLS };
    report('naive retry, new key per attempt', naive);
    if (withIdem) {
      console.log(
        `[fetch-e2e] duplicates: ${withIdem.duplicates} with @idem/fetch, ${naive.duplicates} with the naive retry`,
      );
    }
  });
});
