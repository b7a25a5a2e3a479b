/**
 * The load generator: a process of its own (pinned to its own core by the harness) that runs the load
 * slices the harness sends it over IPC, one at a time, for as long as the harness runs. A slice is
 * autocannon against `url` for `seconds`, with a fresh Idempotency-Key per request (`keys: 'unique'`)
 * or one key for all (`keys: 'one'`, a new key per slice); the bare route gets the same requests. Its
 * answer: the figures and the generator's own CPU use, so that a saturated generator is visible.
 *
 * One process for the whole run rather than one per slice: starting Node, tsx and autocannon took 1.3 s
 * per slice on a slow machine, some 70 s of the quick run's 3 minutes.
 */
import autocannon from 'autocannon';
import type { LoadResult, LoadSlice } from './harness.js';

if (process.send === undefined)
  throw new Error("load.ts runs as the harness's child, over IPC (see runLoad)");

const body = JSON.stringify({ item: 'book', quantity: 2, note: 'benchmark order' });
const runId = `${process.pid}-${Date.now().toString(36)}`;

/** Placeholder for the per-request part of a unique key: as many digits as the counter is written with. */
const KEY_SLOT = 'x'.repeat(12);
let counter = 0;

/**
 * A fresh key per request, cheaply: autocannon's own ways (`setupRequest`, `idReplacement`) rebuild the
 * whole request per request, which doubled the generator's CPU per request and capped it near 11 000
 * req/s on this machine, below what bare Fastify serves. Instead each client sends a copy of the request
 * autocannon built once, with the key's slot overwritten by a process-wide counter. A copy, not the same
 * buffer: the previous request may still be queued in the socket.
 */
function freshKeyPerRequest(client: autocannon.Client): void {
  const built = client as autocannon.Client & { getRequestBuffer?: () => Buffer };
  if (typeof built.getRequestBuffer !== 'function') {
    throw new Error('autocannon changed: Client.getRequestBuffer is gone (load.ts needs it for unique keys)');
  }
  const template = built.getRequestBuffer();
  const slot = template.indexOf(KEY_SLOT);
  if (slot === -1) throw new Error('load.ts: the request autocannon built has no key slot');
  built.getRequestBuffer = () => {
    const request = Buffer.from(template);
    request.write(String(++counter).padStart(KEY_SLOT.length, '0'), slot, 'latin1');
    return request;
  };
}

let slices = 0;

async function runSlice({ url, seconds, keys, connections, rate }: LoadSlice): Promise<LoadResult> {
  const oneKey = `one-${runId}-${++slices}`;
  // Replays: the one key is used once before the slice, so that every request of the slice is a replay
  // (rather than the first few meeting the first request still in flight: 409).
  if (keys === 'one') {
    const first = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': oneKey },
      body,
    });
    await first.arrayBuffer();
  }
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const result = await autocannon({
    url,
    method: 'POST',
    connections,
    // A fixed offered load (all connections together), for comparing CPU per request at equal load.
    ...(rate !== undefined && { overallRate: rate }),
    duration: seconds,
    headers: {
      'content-type': 'application/json',
      ...(keys === 'one' && { 'idempotency-key': oneKey }),
      ...(keys === 'unique' && { 'idempotency-key': `k-${runId}-${KEY_SLOT}` }),
    },
    body,
    ...(keys === 'unique' && { setupClient: freshKeyPerRequest }),
  });
  const elapsedMs = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  return {
    // The priming request of a replay slice was served too.
    requests: result.requests.total + (keys === 'one' ? 1 : 0),
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    generatorCpu: (cpu.user + cpu.system) / 1000 / elapsedMs,
  };
}

process.on('message', (slice: LoadSlice) => {
  runSlice(slice).then(
    (result) => process.send!({ result }),
    (error: unknown) => process.send!({ error: error instanceof Error ? error.message : String(error) }),
  );
});
// The harness is gone (or done with the generator): so is the generator.
process.on('disconnect', () => process.exit(0));
