import type { Server } from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import { nodeTestServer, type TestApp, type TestServer } from '@idem/http-test-suite';
import { Hono } from 'hono';
import { setCookie } from 'hono/cookie';
import { stream } from 'hono/streaming';
import { type HttpIdempotencyOptions, type IdempotencyVariables, idempotency } from './index.js';

/** Serves the http-test-suite routes with Hono behind `idempotency(options)`, through @hono/node-server. */
export async function startHonoApp(options: HttpIdempotencyOptions, app: TestApp): Promise<TestServer> {
  const hono = new Hono<{ Variables: IdempotencyVariables }>();
  // The suite never sets `scope` (whose Hono form takes Hono's context).
  const { scope: _, ...rest } = options;
  hono.use(idempotency(rest));

  hono.post('/orders', async (c) => {
    const received: unknown = await c.req.json();
    const n = app.record('orders');
    const id = `ord_${n}`;
    c.header('X-Order-Id', id);
    setCookie(c, 'last_order', id, { path: '/' });
    return c.json({ id, execution: n, received }, 201);
  });
  hono.get('/orders', (c) => c.json({ execution: app.record('get') }));
  hono.post('/binary', async (c) => {
    const bytes = await c.req.arrayBuffer();
    app.record('binary');
    return c.body(bytes, 200, { 'Content-Type': 'application/octet-stream' });
  });
  hono.post('/slow', async (c) => {
    const n = app.record('slow');
    await new Promise((resolve) => setTimeout(resolve, Number(c.req.query('ms') ?? 0)));
    return c.json({ execution: n }, 201);
  });
  hono.post('/fail', (c) => {
    const n = app.record('fail');
    if (app.firstFailure(c.get('idempotency')!.key)) return c.json({ error: 'boom', execution: n }, 500);
    return c.json({ execution: n }, 201);
  });
  hono.post('/throw', () => {
    app.record('throw');
    throw new Error(app.throwMessage);
  });
  hono.post('/big', (c) => {
    app.record('big');
    const body = app.bigBody(Number(c.req.query('bytes')));
    return c.body(body as Uint8Array<ArrayBuffer>, 200, { 'Content-Type': 'application/octet-stream' });
  });
  hono.post('/stream', (c) => {
    app.record('stream');
    c.header('Content-Type', 'text/event-stream');
    return stream(c, async (out) => {
      for (const event of app.streamEvents) {
        await out.write(event);
        await out.sleep(10);
      }
    });
  });
  hono.post('/chunks', (c) => {
    app.record('chunks');
    c.header('Content-Type', 'application/x-ndjson');
    return stream(c, async (out) => {
      for (const chunk of app.streamChunks) {
        await out.write(chunk);
        await out.sleep(app.chunkIntervalMs);
      }
    });
  });
  hono.post('/context', (c) => {
    app.record('context');
    const context = c.get('idempotency');
    return c.json({
      context: context
        ? { key: context.key, storageKey: context.storageKey, fingerprint: context.fingerprint }
        : null,
    });
  });

  const server = createAdaptorServer({ fetch: hono.fetch }) as Server;
  server.listen(0, '127.0.0.1');
  return nodeTestServer(server);
}
