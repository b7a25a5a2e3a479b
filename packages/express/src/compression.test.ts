import { request } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { nodeTestServer, type TestServer } from '@idem/http-test-suite';
import { memoryStore } from '@idem/memory';
import compression from 'compression';
import express from 'express';
import express4 from 'express4';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from './index.js';

// The README's order: compression before idem, so that idem stores the body the route wrote and every
// answer (the first, each replay) is encoded as its own request asks. Raw node:http requests: fetch
// would decode the body and hide what was sent.

const servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

interface Answer {
  status: number;
  encoding: string | undefined;
  replayed: string | undefined;
  /** The body as decoded by a client that asked for it (gunzipped when sent gzipped). */
  json: unknown;
}

function post(server: TestServer, key: string, acceptEncoding: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`${server.url}/orders`, {
      method: 'POST',
      headers: {
        'idempotency-key': key,
        'content-type': 'application/json',
        'accept-encoding': acceptEncoding,
      },
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        const encoding = res.headers['content-encoding'];
        const text = (encoding === 'gzip' ? gunzipSync(raw) : raw).toString();
        resolve({
          status: res.statusCode ?? 0,
          encoding,
          replayed: res.headers['idempotent-replayed'] as string | undefined,
          json: JSON.parse(text),
        });
      });
    });
    req.on('error', reject);
    req.end('{"item":"book"}');
  });
}

for (const [name, framework] of [
  ['express 5', express],
  ['express 4', express4],
] as const) {
  describe(`${name}: compression() before idem`, () => {
    it('stores the body the route wrote; the first answer and each replay are encoded as asked', async () => {
      const store = memoryStore();
      let runs = 0;
      let storage = '';
      const app = framework();
      app.use(compression({ threshold: 0 }), idempotency({ store }), framework.json());
      // Compressible and over any threshold: gzip is used whenever the request accepts it.
      app.post('/orders', (req, res) => {
        storage = req.idempotency!.storageKey;
        res.status(201).json({ run: ++runs, item: req.body.item, note: 'compressible '.repeat(40) });
      });
      const server = await nodeTestServer(app.listen(0, '127.0.0.1'));
      servers.push(server);
      const body = { run: 1, item: 'book', note: 'compressible '.repeat(40) };
      const key = `compress-${name.replace(' ', '')}-${Date.now()}`;

      expect(await post(server, key, 'gzip')).toEqual({
        status: 201,
        encoding: 'gzip',
        replayed: undefined,
        json: body,
      });
      expect(await post(server, key, 'identity')).toEqual({
        status: 201,
        encoding: undefined,
        replayed: 'true',
        json: body,
      });
      expect(await post(server, key, 'gzip, deflate')).toEqual({
        status: 201,
        encoding: 'gzip',
        replayed: 'true',
        json: body,
      });
      expect(runs).toBe(1);

      // What is stored is the route's JSON, with none of compression's headers.
      const record = await store.get(storage);
      expect(JSON.parse(Buffer.from(record!.response!.body).toString())).toEqual(body);
      const names = record!.response!.headers.map(([header]) => header);
      expect(names).not.toContain('content-encoding');
      expect(names).not.toContain('vary');
    });
  });
}
