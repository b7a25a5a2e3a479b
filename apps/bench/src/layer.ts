/**
 * idem's own cost per request, without a framework or a socket: `@idem/core`'s HTTP layer
 * (`createIdempotencyHandler().handle`) on the memory store, for new keys and replays, against a "null
 * store" (acquire always succeeds, nothing is kept) that leaves only the layer's hashing, fingerprint
 * and bookkeeping (also for ~1 KB orders, whose fingerprints cost more). Run in one process,
 * alternating the scenarios in short rounds; prints µs per request (median of rounds).
 *
 *   pnpm --filter @idem/bench layer [--rounds N] [--requests N]
 *
 * This is the floor under every binding's overhead in RESULTS.md: a framework's bare route would have
 * to cost many times this for idem to come within a few per cent of it.
 */
import { parseArgs } from 'node:util';
import { type AcquireResult, createIdempotencyHandler, type IdempotencyRecord, type Store } from '@idem/core';
import { memoryStore } from '@idem/memory';
import { LayerRequest, routeResponse, smallOrder } from './layer-request.js';
import { median } from './median.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '15' },
    requests: { type: 'string', default: '20000' },
  },
});
const rounds = Number(values.rounds);
const perRound = Number(values.requests);

const encoder = new TextEncoder();
/**
 * A ~1 KB order of the kind real clients send: digits inside strings (dates, SKUs, a zip code), and
 * prices either in cents or as decimals with a trailing zero (`19.90`: a number whose text a double does
 * not keep, so the fingerprint takes the exact parser).
 */
function largeOrder(unitPrice: string): Uint8Array {
  const text = JSON.stringify({
    customer: {
      id: 'cus_4711',
      email: 'ann@example.com',
      address: { line1: '1 Main St', city: 'Berlin', zip: '01234', country: 'DE' },
    },
    items: Array.from({ length: 10 }, (_, i) => ({
      sku: `sku-${i}`,
      quantity: i + 1,
      unitPrice: 'UNIT_PRICE',
      title: 'Something nice',
      tags: ['gift', 'fragile'],
    })),
    currency: 'EUR',
    deliverOn: '2026-12-01',
    note: 'leave at the door',
  });
  return encoder.encode(text.replaceAll('"UNIT_PRICE"', unitPrice));
}
const ACQUIRED: AcquireResult = { acquired: true };
/** Every claim succeeds and every write is accepted: what is left is the layer itself. */
const nullStore: Store = {
  name: 'null',
  acquire: async () => ACQUIRED,
  complete: async () => true,
  release: async () => true,
  extend: async () => true,
  get: async (): Promise<IdempotencyRecord | null> => null,
  delete: async () => {},
};

const nullStoreHandler = createIdempotencyHandler({ store: nullStore });
const scenarios = {
  'null store, new keys': {
    handler: nullStoreHandler,
    replay: false,
    body: smallOrder,
  },
  'null store, new keys, 1 KB order': {
    handler: nullStoreHandler,
    replay: false,
    body: largeOrder('1990'),
  },
  'null store, new keys, 1 KB order, 19.90': {
    handler: nullStoreHandler,
    replay: false,
    body: largeOrder('19.90'),
  },
  'memory store, new keys': {
    handler: createIdempotencyHandler({ store: memoryStore() }),
    replay: false,
    body: smallOrder,
  },
  'memory store, replays': {
    handler: createIdempotencyHandler({ store: memoryStore() }),
    replay: true,
    body: smallOrder,
  },
};
const run = async () => routeResponse;
// The replayed key runs once, here; every request of the rounds is then a replay.
await scenarios['memory store, replays'].handler.handle(new LayerRequest('replayed-key', smallOrder), run);

let serial = 0;
async function round(name: keyof typeof scenarios): Promise<number> {
  const { handler, replay, body } = scenarios[name];
  const started = performance.now();
  for (let i = 0; i < perRound; i++) {
    const result = await handler.handle(
      new LayerRequest(replay ? 'replayed-key' : `k-${++serial}`, body),
      run,
    );
    const replayed = result.action === 'respond' && result.replayed;
    if (result.action !== (replay ? 'respond' : 'done') || replayed !== replay) {
      throw new Error(`${name}: unexpected ${JSON.stringify(result)}`);
    }
  }
  return ((performance.now() - started) * 1000) / perRound;
}

const names = Object.keys(scenarios) as Array<keyof typeof scenarios>;
const micros = new Map(names.map((name) => [name, [] as number[]]));
for (const name of names) await round(name); // warm-up
for (let r = 0; r < rounds; r++) for (const name of names) micros.get(name)!.push(await round(name));

console.log(`Node ${process.version}, ${rounds} rounds of ${perRound} requests per scenario, alternating`);
for (const name of names)
  console.log(`${name.padEnd(42)} ${median(micros.get(name)!).toFixed(2)} µs/request`);
