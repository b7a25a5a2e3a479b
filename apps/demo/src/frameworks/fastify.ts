import type { AddressInfo } from 'node:net';
import { IdempotencyError, problemFor } from '@idem/core';
import { idempotency } from '@idem/fastify';
import Fastify, { type FastifyReply } from 'fastify';
import type { Reply } from '../orders.js';
import { type CreateServer, closeGracefully } from './server.js';

/** The demo on Fastify 5 with `@idem/fastify`. */
export const createFastifyServer: CreateServer = async ({
  service,
  store,
  idempotency: options,
  page,
  onError,
}) => {
  const app = Fastify({ logger: false });
  // Like the other frameworks: any body is read as JSON whatever its content type, an empty one is
  // `undefined` (the order's validation answers), and malformed JSON is the order's 400.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => {
    try {
      done(null, body === '' ? undefined : JSON.parse(body as string));
    } catch (error) {
      done(Object.assign(error as Error, { statusCode: 400 }), undefined);
    }
  });
  await app.register(idempotency, { store, ...options });
  app.get('/', (_request, reply) => send(reply, page));
  app.post('/orders', async (request, reply) =>
    send(reply, await service.create(request.body, request.idempotency?.key)),
  );
  app.get<{ Querystring: { key?: string } }>('/orders', async (request, reply) =>
    send(reply, await service.list(request.query.key)),
  );
  app.get<{ Params: { id: string } }>('/orders/:id', async (request, reply) =>
    send(reply, await service.get(request.params.id)),
  );
  app.setNotFoundHandler((request, reply) =>
    send(reply, service.unrouted(request.method, request.url.split('?')[0]!)),
  );
  app.setErrorHandler((error, _request, reply) => {
    const status = (error as { statusCode?: number }).statusCode;
    if (status === 400) return send(reply, service.badRequest('the body is not valid JSON'));
    // Fastify's own body limit (1 MiB, as idem's) answers before idem sees the request: the same
    // problem idem answers on the other frameworks.
    if (status === 413) {
      const tooLarge = problemFor(
        new IdempotencyError('request_too_large', 'the request body is larger than the server accepts'),
      );
      return reply.code(tooLarge.status).headers(tooLarge.headers).send(JSON.stringify(tooLarge.problem));
    }
    onError(error);
    return send(reply, service.failure());
  });
  return {
    listen: async (port, host) => {
      await app.listen({ port, host });
      return (app.server.address() as AddressInfo).port;
    },
    close: () => closeGracefully(app.server, () => app.close()),
  };
};

function send(reply: FastifyReply, answer: Reply): FastifyReply {
  reply.code(answer.status);
  for (const [name, value] of answer.headers) reply.header(name, value);
  return reply.send(answer.body);
}
