/**
 * Latency of the store's hot path against DynamoDB Local: the median (and p90/p99) microseconds per
 * call of `acquire` on a fresh key, `complete` of that claim, and `acquire` refused by the completed
 * record (a replay), next to a bare PutItem as the floor. Calls run one after another, so each figure is one round trip plus the store's
 * own work (encoding, condition building, decoding).
 *
 *   npx tsx bench/acquire-complete.ts [calls=2000] [bodyBytes=64]
 *
 * Uses IDEM_DYNAMODB_ENDPOINT when set, else starts DynamoDB Local in memory (Java 17 needed).
 */
import { DynamoDBClient, PutItemCommand } from '@aws-sdk/client-dynamodb';
import type { StoredResponse } from '@idem/core';
import {
  DYNAMODB_LOCAL_CREDENTIALS,
  DYNAMODB_LOCAL_REGION,
  dynamodbEndpoint,
  stopDynamodbLocal,
} from '@idem/test-services';
import { createLocalTable, dropLocalTable } from '../src/local-table.js';
import { dynamodbStore } from '../src/store.js';

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';

const calls = Number(process.argv[2] ?? 2_000);
const bodyBytes = Number(process.argv[3] ?? 64);
const warmup = 500;

const endpoint = await dynamodbEndpoint();
const client = new DynamoDBClient({
  endpoint,
  region: DYNAMODB_LOCAL_REGION,
  credentials: DYNAMODB_LOCAL_CREDENTIALS,
});
const table = await createLocalTable(client);
const store = dynamodbStore({ client, table });
const response: StoredResponse = {
  status: 201,
  headers: [
    ['content-type', 'application/json'],
    ['location', '/orders/1'],
  ],
  body: new TextEncoder().encode(`{"id":1,"pad":"${'x'.repeat(Math.max(0, bodyBytes - 17))}"}`),
};

const acquire: number[] = [];
const complete: number[] = [];
const replay: number[] = [];
const baseline: number[] = [];
const run = Date.now().toString(36);

for (let i = 0; i < warmup + calls; i++) {
  const key = `idem:bench:${run}:${i}`;
  const claim = {
    fingerprint: 'f'.repeat(64),
    token: crypto.randomUUID(),
    leaseMs: 15_000,
    ttlMs: 86_400_000,
  };
  const t0 = performance.now();
  const acquired = await store.acquire(key, claim);
  const t1 = performance.now();
  const completed = await store.complete(key, claim.token, response, 86_400_000);
  const t2 = performance.now();
  const replayed = await store.acquire(key, { ...claim, token: crypto.randomUUID() });
  const t3 = performance.now();
  // The floor: one unconditional PutItem of a small item through the same client.
  await client.send(
    new PutItemCommand({ TableName: table, Item: { pk: { S: `${key}:bare` }, v: { N: '1' } } }),
  );
  const t4 = performance.now();
  if (!acquired.acquired || !completed || replayed.acquired)
    throw new Error(`unexpected answer at call ${i}`);
  if (i < warmup) continue;
  acquire.push((t1 - t0) * 1000);
  complete.push((t2 - t1) * 1000);
  replay.push((t3 - t2) * 1000);
  baseline.push((t4 - t3) * 1000);
}

const quantile = (values: number[], q: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
};
const row = (name: string, values: number[]) =>
  `${name.padEnd(26)} ${String(values.length).padStart(6)} ${[0.5, 0.9, 0.99]
    .map((q) => quantile(values, q).toFixed(0).padStart(8))
    .join('')}`;

console.log(`DynamoDB Local at ${endpoint}, Node ${process.version}, body ${response.body.length} B`);
console.log(
  `${'operation'.padEnd(26)} ${'calls'.padStart(6)}${['p50 µs', 'p90 µs', 'p99 µs'].map((h) => h.padStart(8)).join('')}`,
);
console.log(row('acquire (new key)', acquire));
console.log(row('complete', complete));
console.log(row('acquire (replay, ALL_OLD)', replay));
console.log(row('bare PutItem (floor)', baseline));

await dropLocalTable(client, table);
client.destroy();
stopDynamodbLocal();
