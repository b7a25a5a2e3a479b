/**
 * Median latency of one store call against a local Redis, one call at a time (no overlap), so the
 * figure is a round trip plus the script's work plus encoding and decoding.
 *
 *   npx tsx bench/acquire-complete.ts [calls=20000] [bodyBytes=512]
 *
 * Redis: IDEM_REDIS_URL, else redis://127.0.0.1:6379 (found through @idem/test-services).
 */
import type { Claim, StoredResponse } from '@idem/core';
import { redisUrl } from '@idem/test-services';
import { Redis } from 'ioredis';
import { redisStore } from '../src/index.js';

const calls = Number(process.argv[2] ?? 20_000);
const bodyBytes = Number(process.argv[3] ?? 512);
const warmup = 1_000;

const client = new Redis(await redisUrl(), { maxRetriesPerRequest: 0 });
const store = redisStore({ client, prefix: `idem-bench:${process.pid}:` });
const response: StoredResponse = {
  status: 201,
  headers: [
    ['content-type', 'application/json'],
    ['location', '/orders/1'],
  ],
  body: new Uint8Array(bodyBytes).fill(0x61),
};
const claimFor = (): Claim => ({
  fingerprint: 'f'.repeat(64),
  token: crypto.randomUUID(),
  leaseMs: 15_000,
  ttlMs: 60_000,
});

async function measure(label: string, keys: string[], call: (key: string, i: number) => Promise<unknown>) {
  const micros = new Float64Array(keys.length);
  for (let i = 0; i < keys.length; i++) {
    const started = process.hrtime.bigint();
    await call(keys[i]!, i);
    micros[i] = Number(process.hrtime.bigint() - started) / 1_000;
  }
  micros.sort();
  const at = (q: number) => micros[Math.min(micros.length - 1, Math.floor(q * micros.length))]!.toFixed(1);
  console.log(
    `${label.padEnd(34)} n=${keys.length}  median ${at(0.5)} µs  p90 ${at(0.9)} µs  p99 ${at(0.99)} µs`,
  );
}

const run = `${Date.now().toString(36)}`;
const keysFor = (phase: string, n: number) => Array.from({ length: n }, (_, i) => `${run}:${phase}:${i}`);

// Warm-up: connection, script cache, JIT.
{
  const keys = keysFor('warm', warmup);
  const tokens = keys.map(() => claimFor());
  for (const [i, key] of keys.entries()) await store.acquire(key, tokens[i]!);
  for (const [i, key] of keys.entries()) await store.complete(key, tokens[i]!.token, response, 60_000);
}

const keys = keysFor('run', calls);
await measure('PING (bare round trip)', keys, () => client.ping());
const claims = keys.map(() => claimFor());
await measure('acquire (new key)', keys, (key, i) => store.acquire(key, claims[i]!));
await measure('complete', keys, (key, i) => store.complete(key, claims[i]!.token, response, 60_000));
await measure('acquire (replay, returns record)', keys, (key) => store.acquire(key, claimFor()));

console.log(
  `redis ${(await client.info('server')).match(/redis_version:(\S+)/)?.[1]}, node ${process.version}, body ${bodyBytes} B`,
);
// The records expire by themselves after 60 s; remove them now anyway.
const written = [...keysFor('warm', warmup), ...keys];
for (let i = 0; i < written.length; i += 1_000) {
  await Promise.all(written.slice(i, i + 1_000).map((key) => store.delete(key)));
}
await client.quit();
