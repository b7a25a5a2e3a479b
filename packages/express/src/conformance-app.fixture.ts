import type { HttpIdempotencyOptions } from '@idem/core';
import { nodeTestServer, type TestApp, type TestServer } from '@idem/http-test-suite';
import type express from 'express';
import { idempotency, idempotencyErrorHandler } from './index.js';

/** `express` or `express4`: the module under test. */
export type ExpressModule = typeof express;

/** Where the body parsers sit relative to idem. */
export type ParserOrder = 'parsers after idem' | 'parsers before idem';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts the routes of the HTTP conformance suite (see @idem/http-test-suite's README) on an app of
 * `framework` with `idempotency(options)` mounted for all of them, and listens on 127.0.0.1:0.
 */
export function startConformanceApp(framework: ExpressModule, order: ParserOrder) {
  return async (options: HttpIdempotencyOptions, app: TestApp): Promise<TestServer> => {
    // The suite never sets `scope` (whose Express form takes the Express request).
    const { scope: _, ...rest } = options;
    const server = framework();
    const json = framework.json();
    const raw = framework.raw({ type: 'application/octet-stream', limit: '1mb' });
    if (order === 'parsers before idem') server.use(json, raw);
    server.use(idempotency(rest));
    if (order === 'parsers after idem') server.use(json);

    server.post('/orders', (req, res) => {
      const n = app.record('orders');
      res.status(201).set('X-Order-Id', `ord_${n}`).cookie('last_order', `ord_${n}`, { path: '/' });
      res.json({ id: `ord_${n}`, execution: n, received: req.body });
    });
    server.get('/orders', (_req, res) => {
      res.json({ execution: app.record('get') });
    });
    server.post('/binary', raw, (req, res) => {
      app.record('binary');
      res.type('application/octet-stream').send(req.body);
    });
    server.post('/slow', async (req, res) => {
      const n = app.record('slow');
      await sleep(Number(req.query['ms']));
      res.status(201).json({ execution: n });
    });
    server.post('/fail', (req, res) => {
      const n = app.record('fail');
      if (app.firstFailure(req.idempotency!.key)) res.status(500).json({ error: 'boom', execution: n });
      else res.status(201).json({ execution: n });
    });
    server.post('/throw', () => {
      app.record('throw');
      throw new Error(app.throwMessage);
    });
    server.post('/big', (req, res) => {
      app.record('big');
      res.type('application/octet-stream').send(Buffer.from(app.bigBody(Number(req.query['bytes']))));
    });
    server.post('/stream', async (_req, res) => {
      app.record('stream');
      res.status(200).type('text/event-stream');
      res.flushHeaders();
      for (const event of app.streamEvents) {
        res.write(event);
        await sleep(10);
      }
      res.end();
    });
    server.post('/chunks', async (_req, res) => {
      app.record('chunks');
      res.status(200).type('application/x-ndjson');
      for (const chunk of app.streamChunks) {
        res.write(chunk);
        await sleep(app.chunkIntervalMs);
      }
      res.end();
    });
    server.post('/context', (req, res) => {
      app.record('context');
      const context = req.idempotency;
      res.json({
        context: context
          ? { key: context.key, storageKey: context.storageKey, fingerprint: context.fingerprint }
          : null,
      });
    });
    // Errors go on to Express' default error handling, after idem released the key.
    server.use(idempotencyErrorHandler());
    return nodeTestServer(server.listen(0, '127.0.0.1'));
  };
}
