import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { EngineOptions, EventListener, IdempotencyContext, Store } from '@idem/core';
import { type FrameworkName, type ProfileConfig, WORK_HEADERS, type WorkResult } from './config.js';
import type { StoreFaults } from './faulty-store.js';
import { appendLine } from './journal.js';

/** What the routes of a torture server need, whatever the framework. */
export interface AppContext {
  server: string;
  store: Store;
  profiles: ProfileConfig[];
  onEvent: EventListener;
  runsFile: string;
  gateDir: string;
  /** Set the in-process store faults (`POST /_control/store-faults`); `null` when the store has none. */
  setFaults: ((faults: StoreFaults) => void) | null;
}

/** A listening server. */
export interface RunningApp {
  port: number;
  close(): Promise<void>;
}

/** The engine options of one profile's route (the store is the app's). */
export function profileOptions(profile: ProfileConfig, context: AppContext): Omit<EngineOptions, 'store'> {
  return {
    leaseMs: profile.leaseMs,
    heartbeat: profile.heartbeat,
    storeTimeoutMs: profile.storeTimeoutMs,
    wait: profile.waitMs > 0 ? { timeoutMs: profile.waitMs } : false,
    failOpen: profile.failOpen,
    onEvent: context.onEvent,
    ...(profile.completeRetries !== undefined && { completeRetries: profile.completeRetries }),
  };
}

const GATE_LIMIT_MS = 120_000;

/**
 * The handler of every `/work/<profile>` route: journal the start, work for `x-work-ms` or until the
 * gate `x-work-gate` opens, journal the end, answer. It deliberately ignores the lease-lost signal (it
 * only notes it), like a handler that cannot stop midway: the fencing token must then keep its result
 * out of the store.
 */
export async function work(
  context: AppContext,
  idempotency: IdempotencyContext | undefined,
  header: (name: string) => string | undefined,
): Promise<WorkResult> {
  if (!idempotency) throw new Error('[torture] /work ran without idempotency');
  const { key, storageKey, operation } = idempotency;
  const line = {
    run: crypto.randomUUID(),
    server: context.server,
    pid: process.pid,
    key,
    storageKey,
    claimed: operation.claimed,
  };
  appendLine(context.runsFile, { phase: 'start', ...line, at: Date.now() });
  const delayMs = Number(header(WORK_HEADERS.delayMs) ?? 0);
  if (delayMs > 0) await sleep(delayMs);
  const gate = header(WORK_HEADERS.gate);
  if (gate) {
    const file = join(context.gateDir, gate);
    const deadline = Date.now() + GATE_LIMIT_MS;
    while (!existsSync(file) && Date.now() < deadline) await sleep(10);
  }
  appendLine(context.runsFile, { phase: 'end', ...line, aborted: operation.signal.aborted, at: Date.now() });
  return { run: line.run, server: context.server, pid: process.pid, key };
}

/** Build and start the app on `framework`, listening on a free port of 127.0.0.1. */
export function startApp(framework: FrameworkName, context: AppContext): Promise<RunningApp> {
  switch (framework) {
    case 'hono':
      return startHono(context);
    case 'fastify':
      return startFastify(context);
    case 'express':
      return startExpress(context);
  }
}

async function startHono(context: AppContext): Promise<RunningApp> {
  const [{ Hono }, { idempotency }, { serve }] = await Promise.all([
    import('hono'),
    import('@idem/hono'),
    import('@hono/node-server'),
  ]);
  const app = new Hono();
  for (const profile of context.profiles) {
    app.post(
      `/work/${profile.name}`,
      idempotency({ store: context.store, ...profileOptions(profile, context) }),
      async (c) => c.json(await work(context, c.get('idempotency'), (name) => c.req.header(name)), 201),
    );
  }
  app.post('/_control/store-faults', async (c) => {
    if (!context.setFaults) return c.text('this store has no in-process faults', 400);
    context.setFaults((await c.req.json()) as StoreFaults);
    return c.body(null, 204);
  });
  return new Promise((resolve) => {
    const server = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, (info) =>
      resolve({
        port: info.port,
        close: () => new Promise<void>((done) => server.close(() => done())),
      }),
    );
  });
}

async function startFastify(context: AppContext): Promise<RunningApp> {
  const [{ default: Fastify }, { idempotency }] = await Promise.all([
    import('fastify'),
    import('@idem/fastify'),
  ]);
  const app = Fastify();
  await app.register(idempotency, { store: context.store, global: false });
  for (const profile of context.profiles) {
    const options = profileOptions(profile, context);
    app.post(`/work/${profile.name}`, { config: { idempotency: options } }, async (request, reply) => {
      const header = (name: string) => [request.headers[name]].flat()[0];
      return reply.code(201).send(await work(context, request.idempotency ?? undefined, header));
    });
  }
  app.post('/_control/store-faults', async (request, reply) => {
    if (!context.setFaults) return reply.code(400).send('this store has no in-process faults');
    context.setFaults(request.body as StoreFaults);
    return reply.code(204).send();
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { port: (app.server.address() as AddressInfo).port, close: () => app.close() };
}

async function startExpress(context: AppContext): Promise<RunningApp> {
  const [{ default: express }, { idempotency, idempotencyErrorHandler }] = await Promise.all([
    import('express'),
    import('@idem/express'),
  ]);
  const app = express();
  for (const profile of context.profiles) {
    app.post(
      `/work/${profile.name}`,
      idempotency({ store: context.store, ...profileOptions(profile, context) }),
      async (req, res) => {
        res.status(201).json(await work(context, req.idempotency, (name) => req.get(name)));
      },
    );
  }
  app.post('/_control/store-faults', express.json(), (req, res) => {
    if (!context.setFaults) {
      res.status(400).send('this store has no in-process faults');
      return;
    }
    context.setFaults(req.body as StoreFaults);
    res.status(204).end();
  });
  app.use(idempotencyErrorHandler());
  return new Promise((resolve) => {
    const server = app.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () => new Promise<void>((done) => server.close(() => done())),
      }),
    );
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
