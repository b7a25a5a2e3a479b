import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import type { Store } from '@idem/core';
import { idempotency as expressIdempotency, idempotencyErrorHandler } from '@idem/express';
import { idempotency as fastifyIdempotency } from '@idem/fastify';
import { idempotency as honoIdempotency, type IdempotencyVariables } from '@idem/hono';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';

/** The bindings under fuzz; Express twice, with its body parsers before and after idem. */
export const BINDINGS = ['hono', 'express', 'express (parsers first)', 'fastify'] as const;
export type Binding = (typeof BINDINGS)[number];

/** A listening server of one binding. */
export interface FuzzServer {
  port: number;
  url: string;
  close(): Promise<void>;
}

/**
 * What every fuzz route answers when it runs: its name, the scope (`Authorization`) and key it saw,
 * the variant from the query (`?v=`), and a number unique to this execution on this server.
 */
export interface RouteAnswer {
  route: 'echo' | 'json' | 'raw';
  scope: string | null;
  key: string | null;
  variant: string | null;
  execution: number;
  /** `/json`: what the framework's parser made of the body; `/raw`: how many bytes arrived. */
  parsed?: string;
  bytes?: number;
}

/** Limits the servers run with: idem's, and the frameworks' own parsers set just above them. */
export const LIMITS = { maxRequestBytes: 1024 * 1024 } as const;

/**
 * Start `binding` on 127.0.0.1, port 0, covering every route with `store`. Routes:
 * - `POST|PATCH /echo`: reads no body, answers 201 with the {@link RouteAnswer} (the scope echo);
 * - `POST|PATCH /json`: the framework's own JSON parser (a parse error is the framework's 4xx, or a 400
 *   the route answers itself on Hono, whose `c.req.json()` throws); answers 200;
 * - `POST|PATCH /raw`: the raw body bytes through the framework; answers 200;
 * - `GET /health`: 200, for liveness.
 * No route answers a 5xx on purpose: any 5xx is a failure.
 */
export async function startFuzzServer(
  binding: Binding,
  store: Store,
  overrides: { scope?: () => string } = {},
): Promise<FuzzServer> {
  // `scope` takes no argument here, so the one object fits every binding's own option type.
  const options = {
    store,
    methods: ['POST', 'PATCH'],
    ...LIMITS,
    ...(overrides.scope && { scope: overrides.scope }),
  };
  let executions = 0;
  const answer = (
    route: RouteAnswer['route'],
    scope: string | null | undefined,
    key: string | undefined,
    variant: unknown,
    extra: Partial<RouteAnswer> = {},
  ): RouteAnswer => ({
    route,
    scope: scope ?? null,
    key: key ?? null,
    variant: typeof variant === 'string' ? variant : null,
    execution: ++executions,
    ...extra,
  });
  const describeParsed = (value: unknown) =>
    Array.isArray(value) ? 'array' : value === null ? 'null' : typeof value;

  switch (binding) {
    case 'hono': {
      const app = new Hono<{ Variables: IdempotencyVariables }>();
      app.use(honoIdempotency(options));
      app.get('/health', (c) => c.text('ok'));
      for (const method of ['post', 'patch'] as const) {
        app[method]('/echo', (c) =>
          c.json(
            answer('echo', c.req.header('authorization'), c.get('idempotency')?.key, c.req.query('v')),
            201,
          ),
        );
        app[method]('/json', async (c) => {
          let parsed: unknown;
          try {
            parsed = await c.req.json();
          } catch {
            return c.json({ error: 'invalid JSON' }, 400);
          }
          return c.json(
            answer('json', c.req.header('authorization'), c.get('idempotency')?.key, c.req.query('v'), {
              parsed: describeParsed(parsed),
            }),
          );
        });
        app[method]('/raw', async (c) => {
          const bytes = (await c.req.arrayBuffer()).byteLength;
          return c.json(
            answer('raw', c.req.header('authorization'), c.get('idempotency')?.key, c.req.query('v'), {
              bytes,
            }),
          );
        });
      }
      const server = createAdaptorServer({ fetch: app.fetch }) as Server;
      return listenNode(server.listen(0, '127.0.0.1'));
    }
    case 'express':
    case 'express (parsers first)': {
      const app = express();
      const json = express.json({ limit: '2mb' });
      const raw = express.raw({ type: () => true, limit: '2mb' });
      app.get('/health', (_req, res) => {
        res.send('ok');
      });
      if (binding === 'express (parsers first)') app.use('/json', json).use('/raw', raw);
      app.use(expressIdempotency(options));
      if (binding === 'express') app.use('/json', json).use('/raw', raw);
      for (const method of ['post', 'patch'] as const) {
        app[method]('/echo', (req, res) => {
          res
            .status(201)
            .json(answer('echo', req.headers.authorization, req.idempotency?.key, req.query['v']));
        });
        app[method]('/json', (req, res) => {
          res.json(
            answer('json', req.headers.authorization, req.idempotency?.key, req.query['v'], {
              parsed: describeParsed(req.body),
            }),
          );
        });
        app[method]('/raw', (req, res) => {
          const bytes = Buffer.isBuffer(req.body) ? req.body.length : -1;
          res.json(answer('raw', req.headers.authorization, req.idempotency?.key, req.query['v'], { bytes }));
        });
      }
      app.use(idempotencyErrorHandler());
      return listenNode(app.listen(0, '127.0.0.1'));
    }
    case 'fastify': {
      const app = Fastify({ bodyLimit: 2 * 1024 * 1024 });
      // Any other content type arrives as bytes (Fastify answers 415 for types it has no parser for).
      app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
      await app.register(fastifyIdempotency, options);
      app.get('/health', async () => 'ok');
      for (const method of ['post', 'patch'] as const) {
        app[method]<{ Querystring: { v?: string } }>('/echo', async (request, reply) => {
          reply.code(201);
          return answer('echo', request.headers.authorization, request.idempotency?.key, request.query.v);
        });
        app[method]<{ Querystring: { v?: string } }>('/json', async (request) =>
          answer('json', request.headers.authorization, request.idempotency?.key, request.query.v, {
            parsed: describeParsed(request.body),
          }),
        );
        app[method]<{ Querystring: { v?: string } }>('/raw', async (request) => {
          const bytes = Buffer.isBuffer(request.body) ? request.body.length : -1;
          return answer('raw', request.headers.authorization, request.idempotency?.key, request.query.v, {
            bytes,
          });
        });
      }
      await app.listen({ port: 0, host: '127.0.0.1' });
      const { port } = app.server.address() as AddressInfo;
      return { port, url: `http://127.0.0.1:${port}`, close: () => app.close() };
    }
  }
}

async function listenNode(server: Server): Promise<FuzzServer> {
  if (!server.listening) {
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
  }
  const { port } = server.address() as AddressInfo;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}
