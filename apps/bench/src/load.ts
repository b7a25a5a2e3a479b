/**
 * One load-generator run, in its own process (pinned to its own core by the harness): autocannon
 * against `url` for `seconds`, with a fresh Idempotency-Key per request (`keys=unique`) or one key for
 * all (`keys=one`); the bare route gets the same requests. Prints one JSON line with the figures and
 * the generator's own CPU use, so a saturated generator is visible.
 */
import autocannon from 'autocannon';

const [url, seconds, keys, connections, rate] = process.argv.slice(2);
if (!url || !seconds || (keys !== 'unique' && keys !== 'one'))
  throw new Error('usage: load.ts <url> <seconds> <unique|one> [connections] [requests per second]');

const body = JSON.stringify({ item: 'book', quantity: 2, note: 'benchmark order' });
const runId = `${process.pid}-${Date.now().toString(36)}`;

// Replays: the one key is used once before the slice, so that every request of the slice is a replay
// (rather than the first few meeting the first request still in flight: 409).
if (keys === 'one') {
  const first = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': `one-${runId}` },
    body,
  });
  await first.arrayBuffer();
}

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

const cpuBefore = process.cpuUsage();
const started = performance.now();
const result = await autocannon({
  url,
  method: 'POST',
  connections: Number(connections ?? 50),
  // A fixed offered load (all connections together), for comparing CPU per request at equal load.
  ...(rate !== undefined && { overallRate: Number(rate) }),
  duration: Number(seconds),
  headers: {
    'content-type': 'application/json',
    ...(keys === 'one' && { 'idempotency-key': `one-${runId}` }),
    ...(keys === 'unique' && { 'idempotency-key': `k-${runId}-${KEY_SLOT}` }),
  },
  body,
  ...(keys === 'unique' && { setupClient: freshKeyPerRequest }),
});
const elapsedMs = performance.now() - started;
const cpu = process.cpuUsage(cpuBefore);

console.log(
  JSON.stringify({
    // The priming request of a replay slice was served too (and is in the server's CPU time).
    requests: result.requests.total + (keys === 'one' ? 1 : 0),
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    generatorCpu: (cpu.user + cpu.system) / 1000 / elapsedMs,
  }),
);
