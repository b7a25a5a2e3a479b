import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import pg from 'pg';

/**
 * A backend's own count of the requests it served, read by the harness over a connection of its own
 * (whose reads are left out): the commands Redis got from clients, the transactions PostgreSQL ran
 * in the database (every store statement is a transaction of its own). The memory store has no wire,
 * and DynamoDB Local keeps no such counter.
 */
export interface ServerCounter {
  /** The count so far, once everything the backend did before the call is in it (PostgreSQL: 10 s later). */
  read(): Promise<number>;
  close(): Promise<void>;
}

/** The counter of `store`'s backend (at the URL the bench servers use), or null when it keeps none. */
export async function openServerCounter(store: string, env = process.env): Promise<ServerCounter | null> {
  if (store === 'redis' && env['IDEM_REDIS_URL']) return redisCounter(env['IDEM_REDIS_URL']);
  if (store === 'postgres' && env['IDEM_PG_URL']) return postgresCounter(env['IDEM_PG_URL']);
  return null;
}

async function redisCounter(url: string): Promise<ServerCounter> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await client.connect();
  return {
    async read() {
      // Redis also counts the commands a script runs (`total_commands_processed` grows by 6 per store
      // operation): count what a client sends. Every store operation is one script, but `delete`.
      const stats = await client.info('commandstats');
      let calls = 0;
      for (const match of stats.matchAll(/^cmdstat_(?:evalsha|eval|unlink):calls=(\d+)/gm)) {
        calls += Number(match[1]);
      }
      return calls;
    },
    close: async () => {
      await client.quit();
    },
  };
}

/** PostgreSQL publishes an idle backend's counts within 10 s (`PGSTAT_IDLE_INTERVAL`). */
const POSTGRES_PUBLISHED_MS = 10_500;

async function postgresCounter(url: string): Promise<ServerCounter> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  let reads = 0;
  return {
    async read() {
      await sleep(POSTGRES_PUBLISHED_MS);
      const { rows } = await client.query<{ total: string }>(
        'SELECT xact_commit + xact_rollback AS total FROM pg_stat_database WHERE datname = current_database()',
      );
      // The earlier reads were transactions too (published by now): leave them out.
      return Number(rows[0]!.total) - reads++;
    },
    close: () => client.end(),
  };
}
