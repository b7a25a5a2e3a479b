/**
 * What a completed record costs the memory store's heap: objects and bytes per record, by kind. New
 * keys go through `@idem/core`'s HTTP layer (`layer`'s request and response, with the engine's own
 * tokens, storage keys and fingerprints); two heap snapshots of this process, after `--base` records
 * and after `--records` more, give the difference per record. Each of those objects is copied by the
 * young-generation GC while the record is young and marked by every full GC while it lives, so in a
 * server the count weighs on every request, not only on memory.
 *
 *   pnpm --filter @idem/bench record-size [--records N] [--base N] [--max-entries N]
 *
 * The store is unbounded unless `--max-entries` is given (a bounded store also keeps its records in
 * settlement order, for eviction: one more object per record).
 */
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { writeHeapSnapshot } from 'node:v8';
import { createIdempotencyHandler } from '@idem/core';
import { memoryStore } from '@idem/memory';
import { LayerRequest, routeResponse, smallOrder } from './layer-request.js';

const { values } = parseArgs({
  options: {
    records: { type: 'string', default: '10000' },
    base: { type: 'string', default: '100' },
    'max-entries': { type: 'string' },
  },
});
const records = Number(values.records);
const base = Number(values.base);

/** The fields of a V8 heap snapshot this reads (`.heapsnapshot` JSON). */
interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

/** Objects and bytes on the heap by kind (`type name` for objects, natives and arrays; `type` else). */
async function heapByKind(): Promise<Map<string, { count: number; bytes: number }>> {
  // Writing a snapshot collects garbage first: what it holds is what is reachable.
  const file = writeHeapSnapshot(join(tmpdir(), `idem-record-size-${process.pid}.heapsnapshot`));
  const snapshot = JSON.parse(await readFile(file, 'utf8')) as HeapSnapshot;
  await rm(file);
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const [typeAt, nameAt, sizeAt] = ['type', 'name', 'self_size'].map((field) => fields.indexOf(field));
  const kinds = new Map<string, { count: number; bytes: number }>();
  for (let node = 0; node < snapshot.nodes.length; node += fields.length) {
    const type = types[snapshot.nodes[node + typeAt!]!]!;
    const named = type === 'object' || type === 'native' || type === 'array';
    const kind = named ? `${type} ${snapshot.strings[snapshot.nodes[node + nameAt!]!]}` : type;
    const entry = kinds.get(kind) ?? { count: 0, bytes: 0 };
    entry.count++;
    entry.bytes += snapshot.nodes[node + sizeAt!]!;
    kinds.set(kind, entry);
  }
  return kinds;
}

const maxEntries = values['max-entries'] === undefined ? undefined : Number(values['max-entries']);
if (maxEntries !== undefined && maxEntries < base + records) {
  throw new Error('--max-entries must be at least --base + --records: evicted records would not be counted');
}
// Without --max-entries, no bound at all (the store's defaults are bounded).
const store = memoryStore({
  maxEntries: maxEntries ?? Number.POSITIVE_INFINITY,
  maxBytes: Number.POSITIVE_INFINITY,
});
const handler = createIdempotencyHandler({ store });
const run = async () => routeResponse;
let serial = 0;
async function storeRecords(count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const result = await handler.handle(new LayerRequest(`k-${++serial}`, smallOrder), run);
    if (result.action !== 'done') throw new Error(`unexpected ${JSON.stringify(result)}`);
  }
}

await storeRecords(base);
const before = await heapByKind();
await storeRecords(records);
const after = await heapByKind();
if (store.size !== base + records) throw new Error(`the store holds ${store.size} records`);

const rows: Array<[string, number, number]> = [];
let objects = 0;
let bytes = 0;
const none = { count: 0, bytes: 0 };
for (const kind of new Set([...before.keys(), ...after.keys()])) {
  const earlier = before.get(kind) ?? none;
  const later = after.get(kind) ?? none;
  const perRecord = (later.count - earlier.count) / records;
  const bytesPerRecord = (later.bytes - earlier.bytes) / records;
  objects += perRecord;
  bytes += bytesPerRecord;
  if (Math.abs(perRecord) >= 0.05 || Math.abs(bytesPerRecord) >= 5)
    rows.push([kind, perRecord, bytesPerRecord]);
}
rows.sort((a, b) => b[2] - a[2]);
const bound = maxEntries === undefined ? 'unbounded' : `maxEntries ${maxEntries}`;
console.log(`Node ${process.version}, memory store (${bound}), ${records} completed records (after ${base})`);
console.log(`per record: ${objects.toFixed(1)} heap objects, ${bytes.toFixed(0)} bytes`);
for (const [kind, perRecord, bytesPerRecord] of rows)
  console.log(
    `  ${kind.padEnd(40)} ${perRecord.toFixed(2).padStart(6)} ${bytesPerRecord.toFixed(0).padStart(6)} B`,
  );
