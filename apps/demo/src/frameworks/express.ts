import { createServer } from 'node:http';
import { idempotency } from '@idem/express';
import express, { type ErrorRequestHandler, type Response } from 'express';
import type { Reply } from '../orders.js';
import { type CreateServer, nodeServer } from './server.js';

/** The demo on Express 5 with `@idem/express`. */
export const createExpressServer: CreateServer = ({
  service,
  store,
  idempotency: options,
  page,
  onError,
}) => {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.get('/', (_req, res) => send(res, page));
  app.post(
    '/orders',
    idempotency({ store, ...options }),
    // Any content type, up to idem's own request limit (1 MiB).
    express.json({ type: () => true, limit: '1mb' }),
    async (req, res) => send(res, await service.create(req.body, req.idempotency?.key)),
  );
  app.get('/orders', async (req, res) => {
    const key = req.query['key'];
    send(res, await service.list(typeof key === 'string' ? key : undefined));
  });
  app.get('/orders/:id', async (req, res) => send(res, await service.get(req.params.id)));
  app.use((req, res) => send(res, service.unrouted(req.method, req.path)));
  const errors: ErrorRequestHandler = (error, _req, res, _next) => {
    if ((error as { type?: unknown }).type === 'entity.parse.failed') {
      send(res, service.badRequest('the body is not valid JSON'));
      return;
    }
    onError(error);
    if (!res.headersSent) send(res, service.failure());
  };
  app.use(errors);
  return nodeServer(createServer(app));
};

function send(res: Response, reply: Reply): void {
  res.status(reply.status);
  for (const [name, value] of reply.headers) res.append(name, value);
  res.send(reply.body);
}
