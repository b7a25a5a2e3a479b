import { PassThrough } from 'node:stream';
import type { HttpIdempotencyOptions } from '@idem/core';
import type { TestApp, TestServer } from '@idem/http-test-suite';
import Fastify from 'fastify';
import { type FastifyIdempotencyOptions, idempotency } from './index.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The routes of `@idem/http-test-suite`, written the Fastify way (its JSON parser, `reply.header`,
 * `reply.send(Buffer)`, a stream payload, thrown errors), behind the plugin, on a real listening server.
 * `decideIn` chooses the plugin's deciding hook.
 */
export async function startSuiteServer(
  options: HttpIdempotencyOptions,
  app: TestApp,
  decideIn?: FastifyIdempotencyOptions['decideIn'],
): Promise<TestServer> {
  const { scope, fingerprint, prefix, ...rest } = options;
  if (scope || fingerprint) throw new Error('the suite passed a scope or fingerprint of HttpRequest');
  const server = Fastify();
  server.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_request, body, done) =>
    done(null, body),
  );
  await server.register(idempotency, {
    ...rest,
    ...(prefix !== undefined && { prefix }),
    ...(decideIn && { decideIn }),
  });

  server.post('/orders', async (request, reply) => {
    const n = app.record('orders');
    reply.code(201).header('x-order-id', `ord_${n}`).header('set-cookie', `last_order=ord_${n}; Path=/`);
    return { id: `ord_${n}`, execution: n, received: request.body };
  });
  server.get('/orders', async () => ({ execution: app.record('get') }));
  server.post('/binary', async (request, reply) => {
    app.record('binary');
    reply.type('application/octet-stream').send(request.body as Buffer);
    return reply;
  });
  server.post<{ Querystring: { ms?: string } }>('/slow', async (request, reply) => {
    const n = app.record('slow');
    await sleep(Number(request.query.ms ?? 0));
    reply.code(201);
    return { execution: n };
  });
  server.post('/fail', async (request, reply) => {
    const n = app.record('fail');
    if (app.firstFailure(request.idempotency?.key ?? ''))
      return reply.code(500).send({ error: 'boom', execution: n });
    return reply.code(201).send({ execution: n });
  });
  server.post('/throw', async () => {
    app.record('throw');
    throw new Error(app.throwMessage);
  });
  server.post<{ Querystring: { bytes?: string } }>('/big', (request, reply) => {
    app.record('big');
    reply.type('application/octet-stream').send(Buffer.from(app.bigBody(Number(request.query.bytes ?? 0))));
  });
  server.post('/stream', (_request, reply) => {
    app.record('stream');
    reply.type('text/event-stream').send(paced(app.streamEvents, 10));
  });
  server.post('/chunks', (_request, reply) => {
    app.record('chunks');
    reply.type('application/x-ndjson').send(paced(app.streamChunks, app.chunkIntervalMs));
  });
  server.post('/context', async (request) => {
    app.record('context');
    const context = request.idempotency;
    return {
      context: context && {
        key: context.key,
        storageKey: context.storageKey,
        fingerprint: context.fingerprint,
      },
    };
  });

  const url = await server.listen({ port: 0, host: '127.0.0.1' });
  return { url, close: () => server.close() };
}

/** A stream that writes `chunks` one by one, `intervalMs` apart, then ends. */
function paced(chunks: readonly string[], intervalMs: number): PassThrough {
  const stream = new PassThrough();
  void (async () => {
    for (const chunk of chunks) {
      stream.write(chunk);
      await sleep(intervalMs);
    }
    stream.end();
  })();
  return stream;
}
