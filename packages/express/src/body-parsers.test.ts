import { nodeTestServer, type TestServer } from '@idem/http-test-suite';
import { memoryStore } from '@idem/memory';
import express from 'express';
import express4 from 'express4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExpressModule } from './conformance-app.fixture.js';
import { idempotency } from './index.js';

interface Case {
  contentType: string;
  body: string | Uint8Array;
  /** The same request written differently (JSON keys in another order). */
  sameRequest?: string;
  other: string | Uint8Array;
  /** What the route sees in `req.body` (Buffers as arrays of numbers). */
  parsed: unknown;
}

const bytes = Uint8Array.from({ length: 256 }, (_, i) => 255 - i);
const cases: Record<string, Case> = {
  json: {
    contentType: 'application/json',
    body: '{"b":2,"a":[1,"x"],"c":{"e":null,"d":"caf\u00e9"}}',
    sameRequest: '{ "c": {"d":"caf\u00e9","e":null}, "a": [1,"x"], "b": 2 }',
    other: '{"b":2,"a":["x",1],"c":{"e":null,"d":"caf\u00e9"}}',
    parsed: { b: 2, a: [1, 'x'], c: { e: null, d: 'caf\u00e9' } },
  },
  raw: {
    contentType: 'application/octet-stream',
    body: bytes,
    other: bytes.slice(1),
    parsed: Array.from(bytes),
  },
  text: {
    contentType: 'text/plain; charset=utf-8',
    body: 'h\u00e9llo',
    other: 'hello',
    parsed: 'h\u00e9llo',
  },
  urlencoded: {
    contentType: 'application/x-www-form-urlencoded',
    body: 'a=1&b=two',
    other: 'a=1&b=three',
    parsed: { a: '1', b: 'two' },
  },
};

type Order = 'before' | 'after';

/** An app whose first `before` body parsers (json, raw, text, urlencoded) sit before idem, the rest after. */
async function start(framework: ExpressModule, before: number): Promise<TestServer> {
  const app = framework();
  const parsers = [
    framework.json(),
    framework.raw(),
    framework.text(),
    framework.urlencoded({ extended: false }),
  ];
  let executions = 0;
  if (before > 0) app.use(parsers.slice(0, before));
  app.use(idempotency({ store: memoryStore() }));
  if (before < parsers.length) app.use(parsers.slice(before));
  app.post('/echo', (req, res) => {
    res.json({
      execution: ++executions,
      body: Buffer.isBuffer(req.body) ? Array.from(req.body) : req.body,
      fingerprint: req.idempotency?.fingerprint,
    });
  });
  return nodeTestServer(app.listen(0, '127.0.0.1'));
}

let counter = 0;
const newKey = () => `body-${Date.now()}-${++counter}`;

async function post(server: TestServer, key: string, contentType: string, body: string | Uint8Array) {
  const response = await fetch(`${server.url}/echo`, {
    method: 'POST',
    headers: { 'content-type': contentType, 'idempotency-key': key },
    body: body as NonNullable<RequestInit['body']>,
  });
  const text = await response.text();
  return { status: response.status, replayed: response.headers.get('idempotent-replayed'), text };
}

for (const [name, framework] of [
  ['express 5', express],
  ['express 4', express4],
] as const) {
  describe(`${name}: request bodies with body parsers before or after idem`, () => {
    const servers = {} as Record<Order, TestServer>;
    const fingerprints: Record<string, Partial<Record<Order, string>>> = {};
    beforeAll(async () => {
      servers.before = await start(framework, 4);
      servers.after = await start(framework, 0);
    });
    afterAll(async () => {
      await Promise.all(Object.values(servers).map((server) => server.close()));
    });

    for (const order of ['before', 'after'] as const) {
      for (const [type, c] of Object.entries(cases)) {
        it(`${type} parser ${order} idem: the route gets the parsed body, a retry the replay, another body 422`, async () => {
          const server = servers[order];
          const key = newKey();
          const first = await post(server, key, c.contentType, c.body);
          expect(first.status, first.text).toBe(200);
          const sent = JSON.parse(first.text) as { body: unknown; fingerprint: string; execution: number };
          expect(sent.body).toEqual(c.parsed);
          fingerprints[type] = { ...fingerprints[type], [order]: sent.fingerprint };

          const again = await post(server, key, c.contentType, c.sameRequest ?? c.body);
          expect(again).toEqual({ status: 200, replayed: 'true', text: first.text });
          const other = await post(server, key, c.contentType, c.other);
          expect(other.status, other.text).toBe(422);
        });
      }
    }

    it('fingerprints JSON, raw and text bodies alike whichever side of idem the parser is on', () => {
      for (const type of ['json', 'raw', 'text']) {
        expect(fingerprints[type]?.before).toMatch(/^[0-9a-f]{64}$/);
        expect(fingerprints[type]?.before).toBe(fingerprints[type]?.after);
      }
    });

    it('reads the stream itself when a parser before idem did not match the content type', async () => {
      // Express 4's json parser leaves `req.body = {}` behind without reading the stream.
      const mixed = await start(framework, 1);
      try {
        const text = cases['text']!;
        const key = newKey();
        const first = await post(mixed, key, text.contentType, text.body);
        expect(first.status, first.text).toBe(200);
        const sent = JSON.parse(first.text) as { body: unknown; fingerprint: string };
        expect(sent.body).toBe(text.parsed);
        expect(sent.fingerprint).toBe(fingerprints['text']?.after);
        expect((await post(mixed, key, text.contentType, text.other)).status).toBe(422);
      } finally {
        await mixed.close();
      }
    });
  });
}
