import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { Store } from '@idem/core';
import { createTable, dynamodbStore } from '@idem/dynamodb';
import { memoryStore } from '@idem/memory';
import { postgresStore } from '@idem/postgres';
import { redisStore } from '@idem/redis';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { OrderRepository } from './orders.js';
import { memoryOrders } from './repositories/memory.js';
import { postgresOrders } from './repositories/postgres.js';
import { redisOrders } from './repositories/redis.js';

/** The stores the demo (and the bench) can run on. */
export const STORE_NAMES = ['memory', 'redis', 'postgres', 'dynamodb'] as const;
export type StoreName = (typeof STORE_NAMES)[number];

/** Environment variables {@link openStore} reads (a `process.env` fits). */
export type StoreEnv = Readonly<Record<string, string | undefined>>;

/** Where the demo connects when the environment says nothing. */
export const DEFAULT_URLS = {
  IDEM_REDIS_URL: 'redis://127.0.0.1:6379',
  IDEM_PG_URL: 'postgres://postgres@127.0.0.1:5432/postgres',
  IDEM_DYNAMODB_ENDPOINT: 'http://127.0.0.1:8000',
} as const;

/** An open backend: idem's store, the order repository next to it, and how to close both. */
export interface OpenStore {
  name: StoreName;
  store: Store;
  orders: OrderRepository;
  /** Where it lives, for people: `redis://127.0.0.1:6379`, `in this process`, ... */
  location: string;
  /**
   * Whether several demo processes on this backend share idem's records (all but memory). They share
   * the orders too on Redis and Postgres; on DynamoDB each process keeps its own orders in memory.
   */
  shared: boolean;
  /** Stop timers and close the clients this call opened. */
  close(): Promise<void>;
}

/**
 * Open one of the demo's backends: idem's store plus the orders repository. The clients are created
 * here from the environment:
 * - `memory`: nothing to set up (orders in memory too).
 * - `redis`: `IDEM_REDIS_URL` (default `redis://127.0.0.1:6379`); orders in the same Redis.
 * - `postgres`: `IDEM_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`); creates idem's
 *   table and the orders tables if missing, sweeps expired records; orders in the same database.
 * - `dynamodb`: `IDEM_DYNAMODB_ENDPOINT` (default `http://127.0.0.1:8000`, DynamoDB Local),
 *   `IDEM_DYNAMODB_TABLE` (default `idem_demo`, created if missing), `AWS_REGION` (default
 *   `us-east-1`) and the usual AWS credentials (dummy ones for a local endpoint); orders in memory.
 *
 * @throws Error naming the backend, its address and the variable to set when it cannot be reached.
 */
export async function openStore(name: StoreName, env: StoreEnv = process.env): Promise<OpenStore> {
  switch (name) {
    case 'memory':
      return openMemory();
    case 'redis':
      return openRedis(env['IDEM_REDIS_URL'] || DEFAULT_URLS.IDEM_REDIS_URL);
    case 'postgres':
      return openPostgres(env['IDEM_PG_URL'] || DEFAULT_URLS.IDEM_PG_URL);
    case 'dynamodb':
      return openDynamodb(env);
    default:
      throw new TypeError(`[demo] unknown store "${String(name)}" (one of ${STORE_NAMES.join(', ')})`);
  }
}

/** Whether `value` names a store. */
export function isStoreName(value: string): value is StoreName {
  return (STORE_NAMES as readonly string[]).includes(value);
}

function openMemory(): OpenStore {
  const store = memoryStore();
  return {
    name: 'memory',
    store,
    orders: memoryOrders(),
    location: 'in this process',
    shared: false,
    close: async () => store.close(),
  };
}

async function openRedis(url: string): Promise<OpenStore> {
  // As @idem/redis recommends: fail at once while the connection is down instead of queueing.
  const client = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 3_000,
  });
  // Reconnection errors are retried by ioredis; requests meanwhile get 503 from idem. The first one
  // says why a connection never came up (connect() itself only reports "Connection is closed").
  let firstError: unknown;
  client.on('error', (error) => {
    firstError ??= error;
  });
  try {
    await client.connect();
  } catch (error) {
    client.disconnect();
    throw unreachable('Redis', redact(url), 'IDEM_REDIS_URL', firstError ?? error);
  }
  return {
    name: 'redis',
    store: redisStore({ client }),
    orders: redisOrders({ client }),
    location: redact(url),
    shared: true,
    close: async () => {
      await client.quit().catch(() => client.disconnect());
    },
  };
}

async function openPostgres(url: string): Promise<OpenStore> {
  const pool = new pg.Pool({ connectionString: url, max: 10, connectionTimeoutMillis: 3_000 });
  // pg reports broken idle connections here (and drops them); requests meanwhile get 503 from idem.
  pool.on('error', () => {});
  const store = postgresStore({ pool });
  const orders = postgresOrders({ pool });
  try {
    await store.migrate();
    await orders.migrate();
  } catch (error) {
    await pool.end().catch(() => {});
    throw unreachable('PostgreSQL', redact(url), 'IDEM_PG_URL', error);
  }
  const sweeper = store.startSweeper();
  return {
    name: 'postgres',
    store,
    orders,
    location: redact(url),
    shared: true,
    close: async () => {
      await sweeper.stop();
      await pool.end();
    },
  };
}

async function openDynamodb(env: StoreEnv): Promise<OpenStore> {
  const endpoint = env['IDEM_DYNAMODB_ENDPOINT'] || DEFAULT_URLS.IDEM_DYNAMODB_ENDPOINT;
  const table = env['IDEM_DYNAMODB_TABLE'] || 'idem_demo';
  const hasCredentials = Boolean(env['AWS_ACCESS_KEY_ID'] || env['AWS_PROFILE']);
  const client = new DynamoDBClient({
    endpoint,
    region: env['AWS_REGION'] || env['AWS_DEFAULT_REGION'] || 'us-east-1',
    maxAttempts: 2,
    // Each attempt bounded (the SDK only warns about a passed requestTimeout unless told to throw); a
    // cold DynamoDB Local may take a few seconds to create the table.
    requestHandler: { connectionTimeout: 1_000, requestTimeout: 5_000, throwOnRequestTimeout: true },
    // DynamoDB Local accepts any alphanumeric credentials; a real endpoint uses the environment's.
    ...(!hasCredentials && { credentials: { accessKeyId: 'idemdemo', secretAccessKey: 'idemdemo' } }),
  });
  try {
    await createTable({ client, table, timeoutMs: 30_000 });
  } catch (error) {
    client.destroy();
    throw unreachable('DynamoDB', `${endpoint} (table ${table})`, 'IDEM_DYNAMODB_ENDPOINT', error);
  }
  return {
    name: 'dynamodb',
    store: dynamodbStore({ client, table }),
    orders: memoryOrders(),
    location: `${endpoint}, table ${table}`,
    shared: true,
    close: async () => client.destroy(),
  };
}

const START_HINTS: Record<string, string> = {
  Redis: 'docker run -d -p 6379:6379 redis:7',
  PostgreSQL: 'docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16',
  DynamoDB: 'docker run -d -p 8000:8000 amazon/dynamodb-local',
};

function unreachable(what: string, where: string, variable: string, cause: unknown): Error {
  const reason = (cause instanceof Error ? cause.message || cause.name : String(cause)).replace(/\.$/, '');
  // A server that answered (a missing database, a refused password) needs another URL, not a server.
  const advice = answeredByServer(cause)
    ? `The server answered: set ${variable} to a URL it accepts (database, user, password).`
    : `Start one (e.g. \`${START_HINTS[what]}\`), or set ${variable} to yours.`;
  return new Error(`[demo] cannot use ${what} at ${where}: ${reason}. ${advice}`, { cause });
}

/**
 * Whether `error` is the server's own answer: PostgreSQL's (a SQLSTATE and a severity), Redis's (a
 * ReplyError such as NOAUTH), DynamoDB's (an HTTP status), rather than no connection at all.
 */
function answeredByServer(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const fields = error as Error & { severity?: unknown; $metadata?: { httpStatusCode?: unknown } };
  return (
    typeof fields.severity === 'string' ||
    error.name === 'ReplyError' ||
    typeof fields.$metadata?.httpStatusCode === 'number'
  );
}

/** The URL without its password, for printing. */
function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString().replace(/\/$/, '');
  } catch {
    return url;
  }
}
