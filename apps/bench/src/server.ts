/**
 * One benchmark server: `tsx server.ts <framework> <store> <bare|idem|busy>`. Serves `POST /orders` (a
 * small JSON order, 201) either bare, behind idem, or bare with {@link BUSY_MICROS} µs of busy work per
 * request (the calibration: what a known, fixed cost does to the ratio on this machine); `GET /__calls`
 * (store round trips so far) and `GET /__cpu` (the process's CPU time so far, µs). Prints `READY <port>`
 * once listening on 127.0.0.1.
 */
import { createServer } from 'node:http';
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
const calls = () => ({ calls: counted?.calls() ?? 0 });
// CPU time this process has used so far, in µs: the harness divides the delta over a slice by the
// requests served, a figure far steadier than req/s on a shared machine.
const cpu = () => {
  const { user, system } = process.cpuUsage();
  return { cpuMicros: user + system };
};

let port: number;
if (framework === 'fastify' || framework === 'fastify-preparsing') {
  const app = Fastify();
  const decideIn = framework === 'fastify-preparsing' ? 'preParsing' : 'preHandler';
  if (options) await app.register(fastifyIdempotency, { ...options, decideIn });
  app.post('/orders', async (request, reply) => reply.code(201).send(order(request.body)));
  app.get('/__calls', async () => calls());
  app.get('/__cpu', async () => cpu());
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
  app.get('/__calls', (_req, res) => {
    res.json(calls());
  });
  app.get('/__cpu', (_req, res) => {
    res.json(cpu());
  });
  const server = createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as { port: number }).port;
} else {
  const app = new Hono();
  if (options) app.use('/orders', honoIdempotency(options));
  app.post('/orders', async (c) => c.json(order(await c.req.json()), 201));
  app.get('/__calls', (c) => c.json(calls()));
  app.get('/__cpu', (c) => c.json(cpu()));
  port = await new Promise<number>((resolve) => {
    serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => resolve(info.port));
  });
}
console.log(`READY ${port}`);
// Exit through process.exit so that `node --cpu-prof` writes its profile.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(0));
