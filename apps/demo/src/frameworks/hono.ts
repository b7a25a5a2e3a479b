import type { Server } from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import { type IdempotencyEnv, idempotency } from '@idem/hono';
import { Hono } from 'hono';
import type { Reply } from '../orders.js';
import { type CreateServer, nodeServer } from './server.js';

/** The demo on Hono (through `@hono/node-server`) with `@idem/hono`. */
export const createHonoServer: CreateServer = ({ service, store, idempotency: options, page, onError }) => {
  const app = new Hono<IdempotencyEnv>();
  app.get('/', () => send(page));
  app.post('/orders', idempotency({ store, ...options }), async (c) => {
    let body: unknown;
    try {
      const text = await c.req.text();
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      return send(service.badRequest('the body is not valid JSON'));
    }
    return send(await service.create(body, c.get('idempotency')?.key));
  });
  app.get('/orders', async (c) => send(await service.list(c.req.query('key'))));
  app.get('/orders/:id', async (c) => send(await service.get(c.req.param('id'))));
  app.notFound((c) => send(service.unrouted(c.req.method, c.req.path)));
  app.onError((error) => {
    onError(error);
    return send(service.failure());
  });
  // Without http2 options the adaptor builds a plain node:http server.
  return nodeServer(createAdaptorServer({ fetch: app.fetch }) as Server);
};

function send(reply: Reply): Response {
  return new Response(reply.body, { status: reply.status, headers: reply.headers });
}
