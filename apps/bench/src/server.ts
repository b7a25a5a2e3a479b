/**
 * One benchmark server: `tsx server.ts <framework> <store> <bare|idem|busy>`. Serves `POST /orders` (a
 * small JSON order, 201) either bare, behind idem, or bare with {@link BUSY_MICROS} µs of busy work per
 * request (the calibration: what a known, fixed cost does to the ratio on this machine); and `GET /__stats`:
 * what the process counted so far (the `POST /orders` requests it received, the store round trips it
 * made, its CPU time in µs). Prints `READY <port>` once listening on 127.0.0.1.
 */
import { createServer, type Server } from 'node:http';
import { serve } from '@hono/node-server';
import { isStoreName, openStore, STORE_NAMES } from '@idem/demo/stores';
import { idempotency as expressIdempotency } from '@idem/express';
import { idempotency as fastifyIdempotency } from '@idem/fastify';
import { idempotency as honoIdempotency } from '@idem/hono';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { countingStore } from './counting-store.js';
import { BUSY_MICROS, FRAMEWORKS, type Framework, SERVER_MODES, type ServerMode } from './harness.js';

const [framework, storeName, mode] = process.argv.slice(2) as [Framework, string, ServerMode];
if (!FRAMEWORKS.includes(framework) || !isStoreName(storeName) || !SERVER_MODES.includes(mode)) {
  throw new Error(
    `usage: server.ts <${FRAMEWORKS.join('|')}> <${STORE_NAMES.join('|')}> <${SERVER_MODES.join('|')}>`,
  );
}

const backend = mode === 'idem' ? await openStore(storeName) : null;
const counted = backend ? countingStore(backend.store) : null;
const options = counted ? { store: counted.store } : null;
let orders = 0;
/** Spin for BUSY_MICROS µs: CPU work and nothing else (no allocation, no I/O). */
const busyWork = () => {
  const until = performance.now() + BUSY_MICROS / 1000;
  while (performance.now() < until) {}
};
const order = (body: unknown) => {
  if (mode === 'busy') busyWork();
  return { id: `ord_${++orders}`, status: 'created', order: body };
};
// Requests are counted by the server as they arrive: the load generator leaves out of its own count the
// requests still in flight when a slice ends, and the harness divides by this count instead.
let requests = 0;
const countOrders = (server: Server) => {
  server.on('request', (request) => {
    if (request.url === '/orders') requests++;
  });
};
// With the CPU time this process has used so far (µs): the harness divides its delta over a slice by the
// requests received, a figure far steadier than req/s on a shared machine.
const stats = () => {
  const { user, system } = process.cpuUsage();
  return { requests, storeCalls: counted?.calls() ?? 0, cpuMicros: user + system };
};

let port: number;
if (framework === 'fastify' || framework === 'fastify-preparsing') {
  const app = Fastify();
  const decideIn = framework === 'fastify-preparsing' ? 'preParsing' : 'preHandler';
  if (options) await app.register(fastifyIdempotency, { ...options, decideIn });
  app.post('/orders', async (request, reply) => reply.code(201).send(order(request.body)));
  app.get('/__stats', async () => stats());
  countOrders(app.server);
  await app.listen({ port: 0, host: '127.0.0.1' });
  port = (app.server.address() as { port: number }).port;
} else if (framework === 'express') {
  const app = express();
  // The order the Express README recommends: idem first, so that a replay skips the body parser.
  if (options) app.use(expressIdempotency(options));
  app.use(express.json());
  app.post('/orders', (req, res) => {
    res.status(201).json(order(req.body));
  });
  app.get('/__stats', (_req, res) => {
    res.json(stats());
  });
  const server = createServer(app);
  countOrders(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as { port: number }).port;
} else {
  const app = new Hono();
  if (options) app.use('/orders', honoIdempotency(options));
  app.post('/orders', async (c) => c.json(order(await c.req.json()), 201));
  app.get('/__stats', (c) => c.json(stats()));
  port = await new Promise<number>((resolve) => {
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => resolve(info.port));
    countOrders(server as Server);
  });
}
console.log(`READY ${port}`);
// Exit through process.exit so that `node --cpu-prof` writes its profile.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(0));
