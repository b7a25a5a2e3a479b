import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DYNAMODB_LOCAL_CREDENTIALS,
  DYNAMODB_LOCAL_REGION,
  dynamodbEndpoint,
  postgresUrl,
  redisUrl,
} from '@idem/test-services';
import { FaultProxy } from '../proxy.js';
import type { FrameworkName, ProfileConfig, ServerConfig, StoreConfig, StoreKind } from '../server/config.js';
import type { StoreFaults } from '../server/faulty-store.js';
import { type EventLine, JournalReader, type RunLine } from '../server/journal.js';
import { post } from './client.js';
import { type ServerProcess, spawnServer } from './server-process.js';
import { waitFor } from './timing.js';

/** The lease of the scenarios' main profiles: short, so that crash recovery is quick to observe. */
export const LEASE_MS = 1_000;
/** The store timeout of the outage profiles: the bound every request must answer within. */
export const OUTAGE_STORE_TIMEOUT_MS = 500;

const base = { leaseMs: LEASE_MS, heartbeat: true, storeTimeoutMs: 3_000, waitMs: 0, failOpen: false };

/** The routes every torture server serves (`POST /work/<name>`), one engine configuration each. */
export const PROFILES = {
  /** Storms: the engine's default lease (15 s) and store timeout (3 s); conflicts answer `409`. */
  storm: { name: 'storm', ...base, leaseMs: 15_000 },
  /** Storms in wait mode: duplicates wait for the first request's result and replay it. */
  stormWait: { name: 'stormWait', ...base, leaseMs: 15_000, waitMs: 30_000 },
  /** Conflicts answer `409` at once. */
  plain: { name: 'plain', ...base },
  /** No heartbeat: the control case, where a long handler loses its lease. */
  nobeat: { name: 'nobeat', ...base, heartbeat: false },
  /** A short store timeout, for outages. */
  outage: { name: 'outage', ...base, storeTimeoutMs: OUTAGE_STORE_TIMEOUT_MS },
  /** A short store timeout and a lease longer than every completion retry, for cuts before `complete`. */
  complete: { name: 'complete', ...base, leaseMs: 4_000, storeTimeoutMs: OUTAGE_STORE_TIMEOUT_MS },
} satisfies Record<string, ProfileConfig>;

/** A profile's name. */
export type ProfileName = keyof typeof PROFILES;

/** How a scenario breaks the store of a target, whatever sits in between. */
export interface StoreFaultControl {
  /** `proxy` (the TCP proxy in front of the backend) or `in-process` (memory: a store wrapper). */
  readonly via: 'proxy' | 'in-process';
  /** The store goes down: open connections are reset and new ones refused (in-process: calls fail). */
  down(): Promise<void>;
  /** The network goes silent: nothing answers, sockets stay open (in-process: calls never settle). */
  stall(): Promise<void>;
  /** Every store round trip takes `ms` longer. */
  latency(ms: number): Promise<void>;
  /** Back to normal. */
  restore(): Promise<void>;
}

/** One store under test: its server processes, the journals they write, and the faults to inject. */
export interface FaultTarget {
  readonly kind: StoreKind;
  /** Two processes sharing the store (one for memory, whose records live in its process). */
  readonly servers: ServerProcess[];
  readonly proxy: FaultProxy | null;
  readonly faults: StoreFaultControl;
  /** Set in-process store faults directly (memory only, `null` elsewhere): e.g. fail only `extend`. */
  readonly storeFaults: ((faults: StoreFaults) => Promise<void>) | null;
  /** How long after a lease's end a takeover is allowed (DynamoDB judges leases with a clock margin). */
  readonly takeoverMarginMs: number;
  /** Handler runs journaled by every process, optionally for one client key. */
  runs(key?: string): RunLine[];
  /** Engine events journaled by every process, optionally for one storage key. */
  events(storageKey?: string): EventLine[];
  /** Let handlers waiting on gate `name` finish. */
  openGate(name: string): void;
  /**
   * Wait until every server serves a fresh key again (clients reconnect on their own schedule after a
   * fault, e.g. ioredis backs off up to 2 s), so that the next scenario starts on a working store.
   */
  healthy(): Promise<void>;
  /** Replace server `index` (after a crash) with a fresh process of the same configuration. */
  restart(index: number): Promise<ServerProcess>;
  close(): Promise<void>;
}

/**
 * The frameworks of the two server processes: `IDEM_TORTURE_FRAMEWORKS` (e.g. `hono,express`), by
 * default Hono and Fastify. Memory runs the first only.
 */
export const FRAMEWORKS: FrameworkName[] = parseFrameworks(
  process.env['IDEM_TORTURE_FRAMEWORKS'] ?? 'hono,fastify',
);

function parseFrameworks(list: string): FrameworkName[] {
  const names = list.split(',').map((name) => name.trim());
  const known: readonly string[] = ['hono', 'fastify', 'express'];
  const unknown = names.filter((name) => !known.includes(name));
  if (names.length !== 2 || unknown.length > 0) {
    throw new Error(`[torture] IDEM_TORTURE_FRAMEWORKS must name two of ${known.join(', ')}; got ${list}`);
  }
  return names as FrameworkName[];
}

const DYNAMODB_CLOCK_SKEW_MS = 200;
const id = () => crypto.randomUUID().replaceAll('-', '').slice(0, 10);

/** Open a target: the backend's table or prefix, the proxy, the journals and the server processes. */
export async function openTarget(kind: StoreKind): Promise<FaultTarget> {
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';
  const backend = await openBackend(kind);
  const dir = mkdtempSync(join(tmpdir(), `idem-torture-${kind}-`));
  const gateDir = join(dir, 'gates');
  mkdirSync(gateDir);
  const runsFile = join(dir, 'runs.jsonl');
  const eventsFile = join(dir, 'events.jsonl');
  const frameworks = kind === 'memory' ? FRAMEWORKS.slice(0, 1) : FRAMEWORKS;
  const configs: ServerConfig[] = frameworks.map((framework, index) => ({
    name: String.fromCharCode(97 + index),
    framework,
    store: backend.store,
    profiles: Object.values(PROFILES),
    runsFile,
    eventsFile,
    gateDir,
  }));
  const servers = await Promise.all(configs.map((config) => spawnServer(config)));
  const { proxy } = backend;
  const runs = new JournalReader<RunLine>(runsFile);
  const events = new JournalReader<EventLine>(eventsFile);
  // Open the store clients' connections (a pool of 20 for PostgreSQL) before the first storm, so that
  // storms measure the store, not connection set-up on a machine that is starting DynamoDB Local.
  await Promise.all(
    servers.flatMap((server) =>
      Array.from({ length: 20 }, () => post(server, 'storm', `warm-${id()}`, { delayMs: 50 })),
    ),
  );

  const setFaults = async (faults: StoreFaults) => {
    const response = await fetch(`${servers[0]!.url}/_control/store-faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(faults),
    });
    if (response.status !== 204) throw new Error(`[torture] store-faults: ${response.status}`);
  };
  const faults: StoreFaultControl = proxy
    ? {
        via: 'proxy',
        down: async () => {
          proxy.refuse(true);
          proxy.cut();
        },
        stall: async () => proxy.stall(true),
        // The proxy delays each direction: half the round trip each way.
        latency: async (ms) => proxy.latency(ms / 2),
        restore: async () => proxy.restore(),
      }
    : {
        via: 'in-process',
        down: () => setFaults({ latencyMs: 0, mode: 'fail' }),
        stall: () => setFaults({ latencyMs: 0, mode: 'hang' }),
        latency: (ms) => setFaults({ latencyMs: ms, mode: 'up' }),
        restore: () => setFaults({ latencyMs: 0, mode: 'up' }),
      };

  return {
    kind,
    servers,
    proxy,
    faults,
    storeFaults: proxy ? null : setFaults,
    takeoverMarginMs: kind === 'dynamodb' ? DYNAMODB_CLOCK_SKEW_MS : 0,
    runs: (key) => runs.lines().filter((line) => key === undefined || line.key === key),
    events: (storageKey) =>
      events.lines().filter((line) => storageKey === undefined || line.key === storageKey),
    openGate: (name) => writeFileSync(join(gateDir, name), ''),
    healthy: async () => {
      await Promise.all(
        servers.map((server) =>
          waitFor(
            `server ${server.name} to serve again`,
            async () => (await post(server, 'plain', `healthy-${id()}`, { timeoutMs: 5_000 })).status === 201,
            20_000,
            50,
          ),
        ),
      );
    },
    restart: async (index) => {
      const old = servers[index];
      if (!old) throw new Error(`[torture] no server ${index}`);
      await old.stop();
      const fresh = await spawnServer(old.config);
      servers[index] = fresh;
      return fresh;
    },
    close: async () => {
      await Promise.all(servers.map((server) => server.stop()));
      await proxy?.close();
      await backend.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

interface Backend {
  store: StoreConfig;
  proxy: FaultProxy | null;
  close(): Promise<void>;
}

/** Prepare the backend directly (not through the proxy) and put a proxy in front of it for the servers. */
async function openBackend(kind: StoreKind): Promise<Backend> {
  switch (kind) {
    case 'memory':
      return { store: { kind: 'memory' }, proxy: null, close: async () => {} };
    case 'redis': {
      const url = await redisUrl();
      const proxy = await FaultProxy.start(hostPort(url, 6379));
      const prefix = `torture:faults:${id()}:`;
      return {
        store: { kind: 'redis', url: proxy.rewrite(url), prefix },
        proxy,
        close: async () => {
          const { Redis } = await import('ioredis');
          const client = new Redis(url, { maxRetriesPerRequest: 0 });
          let cursor = '0';
          do {
            const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
            if (keys.length > 0) await client.unlink(...keys);
            cursor = next;
          } while (cursor !== '0');
          client.disconnect();
        },
      };
    }
    case 'postgres': {
      const url = await postgresUrl();
      const [{ default: pg }, { postgresStore }] = await Promise.all([
        import('pg'),
        import('@idem/postgres'),
      ]);
      const pool = new pg.Pool({ connectionString: url, max: 2 });
      const table = `torture_faults_${id()}`;
      const store = postgresStore({ pool, table });
      await store.migrate();
      const proxy = await FaultProxy.start(hostPort(url, 5432));
      return {
        store: { kind: 'postgres', url: proxy.rewrite(url), table, poolSize: 20 },
        proxy,
        close: async () => {
          await pool.query(`DROP TABLE IF EXISTS ${store.table}`);
          await pool.end();
        },
      };
    }
    case 'dynamodb': {
      const endpoint = await dynamodbEndpoint();
      const [{ DynamoDBClient, DeleteTableCommand }, { createTable }] = await Promise.all([
        import('@aws-sdk/client-dynamodb'),
        import('@idem/dynamodb'),
      ]);
      const client = new DynamoDBClient({
        endpoint,
        region: DYNAMODB_LOCAL_REGION,
        credentials: DYNAMODB_LOCAL_CREDENTIALS,
      });
      const table = `torture-faults-${id()}`;
      await createTable({ client, table });
      const proxy = await FaultProxy.start(hostPort(endpoint, 80));
      return {
        store: {
          kind: 'dynamodb',
          endpoint: proxy.rewrite(endpoint).replace(/\/$/, ''),
          region: DYNAMODB_LOCAL_REGION,
          credentials: { ...DYNAMODB_LOCAL_CREDENTIALS },
          table,
          clockSkewMs: DYNAMODB_CLOCK_SKEW_MS,
        },
        proxy,
        close: async () => {
          await client.send(new DeleteTableCommand({ TableName: table }));
          client.destroy();
        },
      };
    }
  }
}

function hostPort(url: string, defaultPort: number): { host: string; port: number } {
  const parsed = new URL(url);
  return { host: parsed.hostname, port: parsed.port ? Number(parsed.port) : defaultPort };
}
