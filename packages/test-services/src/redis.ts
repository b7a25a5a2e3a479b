import { Redis } from 'ioredis';
import { dockerAvailable, ServiceUnavailableError, startContainer } from './docker.js';

const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
let found: Promise<string> | undefined;

/**
 * The URL of a Redis server for tests: `IDEM_REDIS_URL`, else 127.0.0.1:6379, else a testcontainers
 * Redis when a Docker engine answers; otherwise a clear error saying how to start one. Never skips.
 */
export function redisUrl(): Promise<string> {
  found ??= findRedis();
  return found;
}

async function findRedis(): Promise<string> {
  const fromEnv = process.env['IDEM_REDIS_URL'];
  if (fromEnv) {
    if (await answers(fromEnv)) return fromEnv;
    throw new ServiceUnavailableError(`IDEM_REDIS_URL=${fromEnv} does not answer PING`);
  }
  if (await answers(DEFAULT_REDIS_URL)) return DEFAULT_REDIS_URL;
  if (await dockerAvailable()) {
    const { host, port } = await startContainer('redis:7-alpine', 6379);
    return `redis://${host}:${port}`;
  }
  throw new ServiceUnavailableError(
    'No Redis server for the tests: set IDEM_REDIS_URL, or start one on 127.0.0.1:6379, e.g. ' +
      `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no`,
  );
}

async function answers(url: string): Promise<boolean> {
  const client = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    connectTimeout: 2_000,
    retryStrategy: () => null,
  });
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}
