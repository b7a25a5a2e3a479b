/**
 * One load-generator run, in its own process (pinned to its own core by the harness): autocannon
 * against `url` for `seconds`, with a fresh Idempotency-Key per request (`keys=unique`), one key for
 * all (`keys=one`) or none (`keys=none`, the bare route). Prints one JSON line with the figures and the
 * generator's own CPU use, so a saturated generator is visible.
 */
import autocannon from 'autocannon';

const [url, seconds, keys, connections, rate] = process.argv.slice(2);
if (!url || !seconds || !keys)
  throw new Error('usage: load.ts <url> <seconds> <unique|one|none> [connections] [requests per second]');

const body = JSON.stringify({ item: 'book', quantity: 2, note: 'benchmark order' });
const runId = `${process.pid}-${Date.now().toString(36)}`;
let counter = 0;

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
    ...(keys === 'one' ? { 'idempotency-key': `one-${runId}` } : {}),
  },
  body,
  ...(keys === 'unique' && {
    requests: [
      {
        setupRequest: (request) => {
          counter++;
          return { ...request, headers: { ...request.headers, 'idempotency-key': `k-${runId}-${counter}` } };
        },
      },
    ],
  }),
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
