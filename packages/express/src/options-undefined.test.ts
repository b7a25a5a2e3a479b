import { nodeTestServer, type TestServer, unset, unsetHttpOptions } from '@idem/http-test-suite';
import { memoryStore } from '@idem/memory';
import express from 'express';
import { afterAll, describe, expect, it } from 'vitest';
import { type ExpressIdempotencyOptions, idempotency } from './index.js';

// Under `exactOptionalPropertyTypes` (on in this repo), every optional option must accept an explicit
// `undefined`, meaning the default: `tsc` checks the types below, the tests that it is the default.

const options: ExpressIdempotencyOptions = {
  store: memoryStore(),
  ...unsetHttpOptions(),
  scope: undefined,
  fingerprint: undefined,
  prefix: unset<string>(),
};

let server: TestServer;
let runs = 0;
afterAll(async () => {
  await server?.close();
});

describe('idempotency() with every option undefined', () => {
  it('runs a request once and replays it, as with no options', async () => {
    const app = express();
    app.use(idempotency(options), express.json());
    app.post('/orders', (req, res) => {
      res.status(201).json({ run: ++runs, received: req.body });
    });
    app.put('/orders', (req, res) => {
      res.json({ covered: req.idempotency !== undefined });
    });
    server = await nodeTestServer(app.listen(0, '127.0.0.1'));
    const post = (key: string | null) =>
      fetch(`${server.url}/orders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(key === null ? {} : { 'idempotency-key': key }) },
        body: '{"a":1}',
      });

    const first = await post('k-1');
    expect(first.status).toBe(201);
    expect(await first.json()).toEqual({ run: 1, received: { a: 1 } });
    const replay = await post('k-1');
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(await replay.json()).toEqual({ run: 1, received: { a: 1 } });
    expect(runs).toBe(1);
    expect((await post(null)).status).toBe(400); // required: true
    const put = await fetch(`${server.url}/orders`, { method: 'PUT' }); // methods: POST, PATCH
    expect(await put.json()).toEqual({ covered: false });
  });
});
