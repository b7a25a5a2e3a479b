import pg from 'pg';
import { dockerAvailable, ServiceUnavailableError, startContainer } from './docker.js';

const DEFAULT_PG_URL = 'postgres://postgres@127.0.0.1:5432/test';
let found: Promise<string> | undefined;

/**
 * The URL of a PostgreSQL database for tests: `IDEM_PG_URL`, else postgres@127.0.0.1:5432/test, else a
 * testcontainers PostgreSQL when a Docker engine answers; otherwise a clear error saying how to start
 * one. Never skips.
 */
export function postgresUrl(): Promise<string> {
  found ??= findPostgres();
  return found;
}

async function findPostgres(): Promise<string> {
  const fromEnv = process.env['IDEM_PG_URL'];
  if (fromEnv) {
    if (await answers(fromEnv)) return fromEnv;
    throw new ServiceUnavailableError(`IDEM_PG_URL=${fromEnv} does not answer`);
  }
  if (await answers(DEFAULT_PG_URL)) return DEFAULT_PG_URL;
  if (await dockerAvailable()) {
    const { host, port } = await startContainer('postgres:16-alpine', 5432, {
      POSTGRES_HOST_AUTH_METHOD: 'trust',
      POSTGRES_DB: 'test',
    });
    const url = `postgres://postgres@${host}:${port}/test`;
    for (let i = 0; i < 60 && !(await answers(url)); i++) await new Promise((r) => setTimeout(r, 500));
    return url;
  }
  throw new ServiceUnavailableError(
    'No PostgreSQL for the tests: set IDEM_PG_URL, or start one on 127.0.0.1:5432 (user postgres, trust ' +
      'auth, database test), e.g. pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start',
  );
}

async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}
