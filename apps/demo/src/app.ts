import { createExpressServer } from './frameworks/express.js';
import { createFastifyServer } from './frameworks/fastify.js';
import { createHonoServer } from './frameworks/hono.js';
import {
  type CreateServer,
  type DemoIdempotencyOptions,
  FRAMEWORK_NAMES,
  type FrameworkName,
} from './frameworks/server.js';
import { OrderService } from './orders.js';
import { pageReply } from './page.js';
import { type OpenStore, openStore, type StoreEnv, type StoreName } from './stores.js';

export {
  type DemoIdempotencyOptions,
  FRAMEWORK_NAMES,
  type FrameworkName,
  isFrameworkName,
} from './frameworks/server.js';
export {
  isStoreName,
  type OpenStore,
  openStore,
  STORE_NAMES,
  type StoreEnv,
  type StoreName,
} from './stores.js';

/** Options of {@link startDemo}. */
export interface DemoOptions {
  /** Default `"hono"`. */
  framework?: FrameworkName;
  /**
   * A store by name (opened from `env`, closed by `close()`), or one already opened with `openStore`
   * (or wrapped, e.g. to inject faults), which stays the caller's to close. Default `"memory"`.
   */
  store?: StoreName | OpenStore;
  /** Default 3000; `0` picks any free port. */
  port?: number;
  /** Default `127.0.0.1`; `0.0.0.0` to accept connections from other machines. */
  host?: string;
  /** Where `openStore` reads URLs from. Default `process.env`. */
  env?: StoreEnv;
  /** idem's engine options (lease, ttl, wait, failOpen, onEvent, ...). Default: idem's defaults. */
  idempotency?: DemoIdempotencyOptions;
  /** How long `"simulate": "slow"` takes, in ms. Default 2000. */
  slowMs?: number;
  /** Unexpected errors of the routes. Default: `console.error`. */
  onError?: (error: unknown) => void;
}

/** A running demo. */
export interface RunningDemo {
  /** `http://host:port`, without a trailing slash. */
  url: string;
  port: number;
  framework: FrameworkName;
  backend: OpenStore;
  /** Stop the server (running requests finish), then close the store if the demo opened it. */
  close(): Promise<void>;
}

const SERVERS: Record<FrameworkName, CreateServer> = {
  hono: createHonoServer,
  express: createExpressServer,
  fastify: createFastifyServer,
};

/**
 * Start the orders API: `framework` with its idem binding, on `store`, listening on `host:port`.
 *
 * ```ts
 * const demo = await startDemo({ framework: 'fastify', store: 'redis', port: 0 });
 * await fetch(`${demo.url}/orders`, { method: 'POST', headers: { 'idempotency-key': 'k1' }, body: '{"item":"tea"}' });
 * await demo.close();
 * ```
 */
export async function startDemo(options: DemoOptions = {}): Promise<RunningDemo> {
  const framework = options.framework ?? 'hono';
  const createServer = SERVERS[framework];
  if (!createServer) {
    throw new TypeError(`[demo] unknown framework "${framework}" (one of ${FRAMEWORK_NAMES.join(', ')})`);
  }
  const requested = options.store ?? 'memory';
  const owned = typeof requested === 'string';
  const backend = owned ? await openStore(requested, options.env ?? process.env) : requested;
  try {
    const server = await createServer({
      service: new OrderService(
        backend.orders,
        options.slowMs === undefined ? {} : { slowMs: options.slowMs },
      ),
      store: backend.store,
      idempotency: options.idempotency ?? {},
      page: await pageReply({ framework, store: backend.name, location: backend.location }),
      onError: options.onError ?? ((error) => console.error('[demo] unexpected error:', error)),
    });
    const host = options.host ?? '127.0.0.1';
    const port = await server.listen(options.port ?? 3000, host);
    const shownHost =
      host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host;
    let closing: Promise<void> | undefined;
    return {
      url: `http://${shownHost}:${port}`,
      port,
      framework,
      backend,
      close: () => {
        closing ??= (async () => {
          try {
            await server.close();
          } finally {
            if (owned) await backend.close();
          }
        })();
        return closing;
      },
    };
  } catch (error) {
    if (owned) await backend.close().catch(() => {});
    throw error;
  }
}
