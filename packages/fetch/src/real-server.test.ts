import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIdempotentFetch, type RetryEvent } from './idempotent-fetch.js';
import { retryInfo } from './retry-info.js';

// The real failure mode: the server does the work, then the connection dies before the response
// leaves. Only a retry with the same key is safe; this server dedupes by key like idem does.
const stored = new Map<string, { status: number; body: string }>();
const keysSeen: string[] = [];
let executions = 0;
let server: Server;
let url: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const key = String(req.headers['idempotency-key']);
      keysSeen.push(key);
      const previous = stored.get(key);
      if (previous) {
        res.writeHead(previous.status, { 'content-type': 'application/json', 'idempotent-replayed': 'true' });
        res.end(previous.body);
        return;
      }
      executions++;
      const order = { id: `order-${executions}`, request: JSON.parse(Buffer.concat(chunks).toString()) };
      stored.set(key, { status: 201, body: JSON.stringify(order) });
      if (executions === 1) {
        req.socket.destroy();
        return;
      }
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end(JSON.stringify(order));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/orders`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

it('retries a lost response with the same key and gets the stored result, run once', async () => {
  const retries: RetryEvent[] = [];
  const fetch = createIdempotentFetch({ baseDelayMs: 5, onRetry: (event) => retries.push(event) });
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ sku: 'tea', qty: 2 }),
  });

  expect(response.status).toBe(201);
  expect(await response.json()).toEqual({ id: 'order-1', request: { sku: 'tea', qty: 2 } });
  expect(executions).toBe(1);
  expect(keysSeen).toHaveLength(2);
  expect(keysSeen[1]).toBe(keysSeen[0]);
  expect(retryInfo(response)).toEqual({ attempts: 2, replayed: true, idempotencyKey: keysSeen[0] });
  expect(retries[0]?.error).toBeInstanceOf(TypeError);
});

describe('a replayed response', () => {
  // A server that stores every outcome under its key, as idem does for a 429 by default and for a
  // 5xx when `storeStatus` says so: the answer `/status/<n>` gives is the operation's final result.
  const outcomes = new Map<string, { status: number; body: string }>();
  const requests: string[] = [];
  let storing: Server;
  let base: string;

  beforeAll(async () => {
    storing = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const key = String(req.headers['idempotency-key']);
        requests.push(key);
        const previous = outcomes.get(key);
        if (previous) {
          res.writeHead(previous.status, { 'retry-after': '0', 'idempotent-replayed': 'true' });
          res.end(previous.body);
          return;
        }
        const status = Number(req.url?.split('/').pop());
        const outcome = { status, body: `stored ${status} for ${key}` };
        outcomes.set(key, outcome);
        res.writeHead(status, { 'retry-after': '0' });
        res.end(outcome.body);
      });
    });
    await new Promise<void>((resolve) => storing.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(storing.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((resolve) => storing.close(resolve));
  });

  it.each([429, 503])(
    'is final even with a retryable status (%i): the stored outcome never changes',
    async (status) => {
      requests.length = 0;
      const fetch = createIdempotentFetch({ baseDelayMs: 5, maxAttempts: 4 });
      const response = await fetch(`${base}/status/${status}`, { method: 'POST', body: '{}' });

      expect(response.status).toBe(status);
      expect(await response.text()).toBe(`stored ${status} for ${requests[0]}`);
      // The first answer was fresh, so worth a retry; the retry got the replay, which is returned.
      expect(requests).toEqual([requests[0], requests[0]]);
      expect(retryInfo(response)).toEqual({ attempts: 2, replayed: true, idempotencyKey: requests[0] });
    },
  );
});
