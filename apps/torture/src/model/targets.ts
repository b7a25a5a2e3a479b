import { DeleteTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { createTable, dynamodbStore } from '@idem/dynamodb';
import { memoryStore } from '@idem/memory';
import { postgresStore } from '@idem/postgres';
import { redisStore } from '@idem/redis';
import {
  DYNAMODB_LOCAL_CREDENTIALS,
  DYNAMODB_LOCAL_REGION,
  dynamodbEndpoint,
  postgresUrl,
  redisUrl,
} from '@idem/test-services';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { ModelTarget } from './model-run.js';

/** A store under model test and how to let go of it. */
export interface OpenTarget extends ModelTarget {
  close(): Promise<void>;
}

const id = () => crypto.randomUUID().replaceAll('-', '').slice(0, 12);

/** The in-process store (`Date.now`, exact). */
export async function memoryTarget(): Promise<OpenTarget> {
  const store = memoryStore();
  return {
    store,
    clock: { resolutionMs: 1, leaseMarginMs: 0 },
    guardMs: 20,
    close: async () => store.close(),
  };
}

/** Redis on its own clock (`TIME`, floored to ms), keys under a fresh prefix. */
export async function redisTarget(): Promise<OpenTarget> {
  const client = new Redis(await redisUrl(), { maxRetriesPerRequest: 0 });
  const store = redisStore({ client, prefix: `torture:model:${id()}:` });
  return {
    store,
    clock: { resolutionMs: 2, leaseMarginMs: 0 },
    guardMs: 30,
    close: async () => {
      await client.quit();
    },
  };
}

/** PostgreSQL on its own clock (`clock_timestamp()`), in a fresh table dropped afterwards. */
export async function postgresTarget(): Promise<OpenTarget> {
  const pool = new pg.Pool({ connectionString: await postgresUrl(), max: 8 });
  pool.on('error', () => {});
  const table = `torture_model_${id()}`;
  const store = postgresStore({ pool, table });
  await store.migrate();
  return {
    store,
    clock: { resolutionMs: 2, leaseMarginMs: 0 },
    guardMs: 40,
    close: async () => {
      await pool.query(`DROP TABLE IF EXISTS ${store.table}`);
      await pool.end();
    },
  };
}

/**
 * DynamoDB Local, in a fresh table. Its times come from this process' clock; leases are judged
 * `clockSkewMs` late for takeovers, which the model knows as its lease margin.
 */
export async function dynamodbTarget(clockSkewMs = 100): Promise<OpenTarget> {
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';
  const client = new DynamoDBClient({
    endpoint: await dynamodbEndpoint(),
    region: DYNAMODB_LOCAL_REGION,
    credentials: DYNAMODB_LOCAL_CREDENTIALS,
  });
  const table = `torture-model-${id()}`;
  await createTable({ client, table });
  const store = dynamodbStore({ client, table, clockSkewMs });
  return {
    store,
    clock: { resolutionMs: 2, leaseMarginMs: clockSkewMs },
    // DynamoDB Local runs on a JVM: calls are slower and jitter more (GC pauses).
    guardMs: 60,
    close: async () => {
      await client.send(new DeleteTableCommand({ TableName: table }));
      client.destroy();
    },
  };
}
