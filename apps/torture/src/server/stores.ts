import type { Store } from '@idem/core';
import type { StoreConfig } from './config.js';
import { type FaultyStore, faultyStore } from './faulty-store.js';

/** The store a torture server runs on; `faults` is set for the memory store (no network to break). */
export interface OpenStore {
  store: Store;
  faults: FaultyStore | null;
  close(): Promise<void>;
}

/**
 * Open the configured store with the client settings each store's README recommends. Client libraries
 * are imported lazily, so that a process loads only its own.
 */
export async function openStore(
  config: StoreConfig,
  onClientError: (error: unknown) => void,
): Promise<OpenStore> {
  switch (config.kind) {
    case 'memory': {
      const { memoryStore } = await import('@idem/memory');
      const inner = memoryStore();
      const store = faultyStore(inner);
      return { store, faults: store, close: async () => inner.close() };
    }
    case 'redis': {
      const [{ Redis }, { redisStore }] = await Promise.all([import('ioredis'), import('@idem/redis')]);
      // maxRetriesPerRequest: 0, as @idem/redis recommends: a command caught by a dropped connection
      // fails at once instead of being re-sent (and claiming) after the engine already answered 503.
      const client = new Redis(config.url, { maxRetriesPerRequest: 0 });
      client.on('error', onClientError);
      return {
        store: redisStore({ client, prefix: config.prefix }),
        faults: null,
        close: async () => client.disconnect(),
      };
    }
    case 'postgres': {
      const [{ default: pg }, { postgresStore }] = await Promise.all([
        import('pg'),
        import('@idem/postgres'),
      ]);
      const pool = new pg.Pool({
        connectionString: config.url,
        max: config.poolSize,
        connectionTimeoutMillis: 2_000,
      });
      // An idle pooled connection that dies (the proxy cut it) is reported here; the pool drops it.
      pool.on('error', onClientError);
      return { store: postgresStore({ pool, table: config.table }), faults: null, close: () => pool.end() };
    }
    case 'dynamodb': {
      const [{ DynamoDBClient }, { dynamodbStore }] = await Promise.all([
        import('@aws-sdk/client-dynamodb'),
        import('@idem/dynamodb'),
      ]);
      // Each attempt bounded, its request timeout thrown rather than only logged, as @idem/dynamodb
      // recommends; 2 s rather than 1 because the latency scenarios send round trips of 1.5 s.
      const client = new DynamoDBClient({
        endpoint: config.endpoint,
        region: config.region,
        credentials: config.credentials,
        maxAttempts: 3,
        requestHandler: { requestTimeout: 2_000, connectionTimeout: 1_000, throwOnRequestTimeout: true },
      });
      return {
        store: dynamodbStore({ client, table: config.table, clockSkewMs: config.clockSkewMs }),
        faults: null,
        close: async () => client.destroy(),
      };
    }
  }
}
