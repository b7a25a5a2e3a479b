import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { EngineOptions, Store } from '@idem/core';
import type { OrderService, Reply } from '../orders.js';

/** The frameworks the demo runs on. */
export const FRAMEWORK_NAMES = ['hono', 'express', 'fastify'] as const;
export type FrameworkName = (typeof FRAMEWORK_NAMES)[number];

/** Whether `value` names a framework. */
export function isFrameworkName(value: string): value is FrameworkName {
  return (FRAMEWORK_NAMES as readonly string[]).includes(value);
}

/** idem's options the demo lets callers tune (the store comes from the backend). */
export type DemoIdempotencyOptions = Omit<EngineOptions, 'store'>;

/** Everything a framework file wires: the routes' logic, idem's store and options, the page. */
export interface DemoRoutes {
  service: OrderService;
  store: Store;
  idempotency: DemoIdempotencyOptions;
  /** `GET /`. */
  page: Reply;
  /** Unexpected errors (the client gets a plain 500). */
  onError(error: unknown): void;
}

/** A framework's server, not listening yet. */
export interface DemoServer {
  /** Listen; resolves with the port (useful with port 0). */
  listen(port: number, host: string): Promise<number>;
  /** Stop accepting, let running requests finish (closing their keep-alive connections), then resolve. */
  close(): Promise<void>;
}

/** A framework file's export. */
export type CreateServer = (routes: DemoRoutes) => DemoServer | Promise<DemoServer>;

/** Running requests get this long to finish on close; then their connections are cut. */
const GRACE_MS = 5_000;

/** {@link DemoServer} over a Node HTTP server (Hono's adaptor server, Express's). */
export function nodeServer(server: Server): DemoServer {
  return {
    listen: (port, host) => listen(server, port, host),
    close: () =>
      closeGracefully(
        server,
        () =>
          new Promise<void>((resolve, reject) =>
            server.close((error) => (error ? reject(error) : resolve())),
          ),
      ),
  };
}

/** Listen on `port` and `host`; resolves with the port bound. */
export function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/**
 * Run `close` (which stops the server) while closing keep-alive connections as soon as they are idle:
 * Node's `server.close()` only closes those idle at the moment it is called, and a client's idle
 * connection would otherwise hold the close for seconds.
 */
export async function closeGracefully(server: Server, close: () => Promise<void>): Promise<void> {
  const started = Date.now();
  const sweep = setInterval(() => {
    if (Date.now() - started > GRACE_MS) server.closeAllConnections();
    else server.closeIdleConnections();
  }, 25);
  try {
    await close();
  } finally {
    clearInterval(sweep);
  }
}
