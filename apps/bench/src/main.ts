/**
 * idem against the bare framework. For each framework and store: the same `POST /orders` route bare
 * and behind idem, loaded in alternating short slices (bare, idem, idem, bare, ...) by autocannon in a
 * separate process, server and generator pinned to different cores. Reports throughput, p50/p99 and the
 * idem/bare ratio per pair with its median (machine noise hits both sides of a pair alike), plus the
 * store round trips per request: the store calls idem made, and what the backend itself counted (Redis
 * commands, PostgreSQL transactions) over each scenario. When Fastify is measured, a calibration pair
 * too: bare Fastify against the same route plus BUSY_MICROS µs of busy work per request.
 *
 *   pnpm bench            quick: every framework on the memory store, where the targets are (< 3 min)
 *   pnpm bench --full     every framework (fastify-preparsing too) on every store, more and longer slices
 *   options: --frameworks fastify,hono --stores memory,redis --pairs N --seconds S --connections C --out FILE
 *            (frameworks: fastify, hono, express, and fastify-preparsing: Fastify with decideIn: 'preParsing')
 *            --instances N   server processes of each kind, taken in turn by the pairs (default 2)
 *            --profile DIR   run the servers under `node --cpu-prof`, profiles written to DIR at the end
 *                            (one set per server process: two per kind by default)
 *
 * Besides req/s, each slice measures the server's CPU time per request (process.cpuUsage deltas over the
 * requests received, both read from the server itself): on a shared machine that is much steadier than
 * throughput.
 */
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { resolve } from 'node:path';
import { setTimeout } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { STORE_NAMES } from '@idem/demo/stores';
import { dynamodbEndpoint, postgresUrl, redisUrl } from '@idem/test-services';
import {
  BUSY_MICROS,
  DEFAULT_FRAMEWORKS,
  FRAMEWORKS,
  type KeyMode,
  type LoadResult,
  runLoad,
  type ServerMode,
  type ServerProcess,
  serverStats,
  startServer,
  stopLoadGenerator,
} from './harness.js';
import { median } from './median.js';
import { type Calibration, type Row, renderResults } from './results.js';
import { openServerCounter } from './server-counters.js';

const { values } = parseArgs({
  allowPositionals: true, // a stray `--` from `pnpm bench -- ...`
  options: {
    full: { type: 'boolean', default: false },
    frameworks: { type: 'string' },
    stores: { type: 'string' },
    pairs: { type: 'string' },
    instances: { type: 'string' },
    seconds: { type: 'string' },
    connections: { type: 'string', default: '50' },
    out: { type: 'string', default: new URL('../RESULTS.md', import.meta.url).pathname },
    profile: { type: 'string' },
  },
});

const pick = (list: string | undefined, all: readonly string[]) =>
  list ? list.split(',').filter((x) => all.includes(x)) : null;
const frameworks = pick(values.frameworks, FRAMEWORKS) ?? [
  ...(values.full ? FRAMEWORKS : DEFAULT_FRAMEWORKS),
];
const stores = pick(values.stores, STORE_NAMES) ?? [...STORE_NAMES];
const combos = frameworks.flatMap((framework) =>
  stores
    .filter((store) => values.full || values.stores || store === 'memory')
    .map((store) => ({ framework, store })),
);
const pairs = Number(values.pairs ?? (values.full ? 5 : 2));
const seconds = Number(values.seconds ?? (values.full ? 3 : 2));
const connections = Number(values.connections);
/**
 * Server processes of each kind (bare, idem) per framework and store; pair k runs on the k-th of each
 * (modulo). Two processes of the very same code differed by 7-15% in CPU per request over twenty 2 s
 * slices on this machine (one of them steadily cheaper), so a ratio taken from one process per side
 * carries that difference whole.
 */
const instances = Number(values.instances ?? 2);
if (!Number.isInteger(instances) || instances < 1) throw new Error('--instances must be a positive integer');

/**
 * One load slice and the server's CPU time per request over it (µs), both read from the server itself:
 * its CPU time over the requests it received.
 */
type Slice = LoadResult & { cpuMicros: number };

async function slice(server: ServerProcess, keys: KeyMode, rate?: number): Promise<Slice> {
  const before = await serverStats(server.url);
  const run = await runLoad(server.url, seconds, keys, connections, rate);
  const after = await serverStats(server.url);
  return { ...run, cpuMicros: (after.cpuMicros - before.cpuMicros) / (after.requests - before.requests) };
}

/**
 * `count` pairs of back-to-back slices, one of A and one of B, so that machine noise hits both sides of
 * a pair alike: A first in even pairs, B first in odd ones (A B B A A B ...), so that neither side always
 * runs second; pair k on the k-th process of each side, in turn.
 */
async function alternate(
  a: ServerProcess[],
  b: ServerProcess[],
  keys: KeyMode,
  count: number,
  rate?: number,
): Promise<[Slice[], Slice[]]> {
  const [aRuns, bRuns]: [Slice[], Slice[]] = [[], []];
  for (let pair = 0; pair < count; pair++) {
    const [onA, onB] = [a[pair % a.length]!, b[pair % b.length]!];
    if (pair % 2 === 0) {
      aRuns.push(await slice(onA, keys, rate));
      bRuns.push(await slice(onB, keys, rate));
    } else {
      bRuns.push(await slice(onB, keys, rate));
      aRuns.push(await slice(onA, keys, rate));
    }
  }
  return [aRuns, bRuns];
}

/**
 * Start `instances` servers of one kind into `servers`, one after another (into the caller's list, so
 * that the caller stops those already started when a later one fails).
 */
async function startServers(
  servers: ServerProcess[],
  framework: string,
  store: string,
  mode: ServerMode,
  profileDir?: string,
): Promise<void> {
  for (let i = 0; i < instances; i++) servers.push(await startServer(framework, store, mode, profileDir));
}

/** Warm every server up with a 1 s slice (not measured). */
async function warmUp(servers: ServerProcess[], keys: KeyMode): Promise<void> {
  for (const server of servers) await runLoad(server.url, 1, keys, connections);
}

async function stopAll(servers: ServerProcess[]): Promise<void> {
  for (const server of servers) await server.stop();
}

/** Requests received and store calls made so far by all the idem servers of a framework and store. */
async function requestsAndStoreCalls(servers: ServerProcess[]): Promise<{ requests: number; calls: number }> {
  const total = { requests: 0, calls: 0 };
  for (const server of servers) {
    const stats = await serverStats(server.url);
    total.requests += stats.requests;
    total.calls += stats.storeCalls;
  }
  return total;
}

/**
 * The same, once the servers are done with the requests still in flight when the load stopped: read
 * again every 250 ms (up to 10 s) until nothing moves. On a slow store (DynamoDB Local takes hundreds of
 * ms per call under load) the completions of the last requests would otherwise land in the next
 * scenario's count (new keys 1.98, replays 1.02).
 */
async function settledRequestsAndStoreCalls(
  servers: ServerProcess[],
): Promise<{ requests: number; calls: number }> {
  let counts = await requestsAndStoreCalls(servers);
  for (let tries = 0; tries < 40; tries++) {
    await setTimeout(250);
    const again = await requestsAndStoreCalls(servers);
    if (again.requests === counts.requests && again.calls === counts.calls) return again;
    counts = again;
  }
  return counts;
}

/** Over some slices: the load generator's highest use of its core, and the non-2xx answers and errors. */
function generatorCpuAndFailures(runs: Slice[]): { generatorCpu: number; failures: number } {
  return {
    generatorCpu: Math.max(...runs.map((run) => run.generatorCpu)),
    failures: runs.reduce((sum, run) => sum + run.non2xx + run.errors, 0),
  };
}

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';
if (combos.some(({ store }) => store === 'redis')) process.env['IDEM_REDIS_URL'] ??= await redisUrl();
if (combos.some(({ store }) => store === 'postgres')) process.env['IDEM_PG_URL'] ??= await postgresUrl();
if (combos.some(({ store }) => store === 'dynamodb'))
  process.env['IDEM_DYNAMODB_ENDPOINT'] ??= await dynamodbEndpoint();

const rows: Row[] = [];
const started = Date.now();
for (const { framework, store } of combos) {
  const bare: ServerProcess[] = [];
  const idem: ServerProcess[] = [];
  const counter = await openServerCounter(store);
  try {
    const profileDir = values.profile === undefined ? undefined : resolve(values.profile);
    await startServers(bare, framework, store, 'bare', profileDir);
    await startServers(idem, framework, store, 'idem', profileDir);
    // Store round trips are counted over each whole scenario (warm-up, slices and the equal-load slice):
    // PostgreSQL publishes its counts up to 10 s late, too late to read them around every slice.
    let idemMark = await settledRequestsAndStoreCalls(idem);
    let serverMark = await counter?.read();
    for (const scenario of ['new keys', 'replays'] as const) {
      const keys = scenario === 'new keys' ? 'unique' : 'one';
      // Both servers get the same requests (the bare route ignores the key), so that only the server
      // differs between A and B, the load generator's work included.
      await warmUp(bare, keys);
      await warmUp(idem, keys);
      const [bareRuns, idemRuns] = await alternate(bare, idem, keys, pairs);
      // At saturation the slower server also pays more per request for being slower (the generator
      // sleeps between responses, so each write wakes it up): CPU per request at the same offered load,
      // half of what idem sustained, is what idem adds to each request.
      const equalRate = Math.max(50, Math.round(median(idemRuns.map((run) => run.rps)) / 2));
      const [[equalBare], [equalIdem]] = await alternate(bare, idem, keys, 1, equalRate);
      const ratios = idemRuns.map((run, i) => run.rps / bareRuns[i]!.rps);
      const cpuRatios = bareRuns.map((run, i) => run.cpuMicros / idemRuns[i]!.cpuMicros);
      const idemCounts = await settledRequestsAndStoreCalls(idem);
      const serverCount = await counter?.read();
      const idemRequests = idemCounts.requests - idemMark.requests;
      const roundTrips = (idemCounts.calls - idemMark.calls) / idemRequests;
      const serverRoundTrips =
        serverCount === undefined || serverMark === undefined
          ? null
          : (serverCount - serverMark) / idemRequests;
      [idemMark, serverMark] = [idemCounts, serverCount];
      const row: Row = {
        framework,
        store,
        scenario,
        bareRps: median(bareRuns.map((run) => run.rps)),
        idemRps: median(idemRuns.map((run) => run.rps)),
        ratios,
        ratio: median(ratios),
        bareCpuMicros: median(bareRuns.map((run) => run.cpuMicros)),
        idemCpuMicros: median(idemRuns.map((run) => run.cpuMicros)),
        cpuRatio: median(cpuRatios),
        equalRate,
        equalBareCpuMicros: equalBare!.cpuMicros,
        equalIdemCpuMicros: equalIdem!.cpuMicros,
        bareP50: median(bareRuns.map((run) => run.p50)),
        bareP99: median(bareRuns.map((run) => run.p99)),
        idemP50: median(idemRuns.map((run) => run.p50)),
        idemP99: median(idemRuns.map((run) => run.p99)),
        roundTrips,
        serverRoundTrips,
        ...generatorCpuAndFailures(bareRuns.concat(idemRuns)),
      };
      rows.push(row);
      console.log(
        `${framework.padEnd(8)} ${store.padEnd(9)} ${scenario.padEnd(9)} bare ${row.bareRps.toFixed(0).padStart(6)} ` +
          `idem ${row.idemRps.toFixed(0).padStart(6)} ratio ${row.ratio.toFixed(3)} (${ratios.map((r) => r.toFixed(3)).join(' ')}) ` +
          `cpu µs/req bare ${row.bareCpuMicros.toFixed(1)} idem ${row.idemCpuMicros.toFixed(1)} ` +
          `cpu ratio ${row.cpuRatio.toFixed(3)} (${cpuRatios.map((r) => r.toFixed(3)).join(' ')}) ` +
          `at ${equalRate}/s bare ${row.equalBareCpuMicros.toFixed(1)} idem ${row.equalIdemCpuMicros.toFixed(1)} µs/req ` +
          `rt/req ${row.roundTrips.toFixed(2)}${row.serverRoundTrips === null ? '' : ` (server ${row.serverRoundTrips.toFixed(2)})`} gen-cpu ${(row.generatorCpu * 100).toFixed(0)}% failures ${row.failures}`,
      );
    }
  } finally {
    await stopAll(bare);
    await stopAll(idem);
    await counter?.close();
  }
}

// The calibration: bare Fastify against the same route plus BUSY_MICROS µs of busy work per request,
// what a known, fixed cost does to the ratio on this machine (the memory store is not opened).
let calibration: Calibration | undefined;
if (frameworks.includes('fastify')) {
  const bare: ServerProcess[] = [];
  const busy: ServerProcess[] = [];
  try {
    await startServers(bare, 'fastify', 'memory', 'bare');
    await startServers(busy, 'fastify', 'memory', 'busy');
    await warmUp(bare, 'unique');
    await warmUp(busy, 'unique');
    const [bareRuns, busyRuns] = await alternate(bare, busy, 'unique', pairs);
    calibration = {
      framework: 'fastify',
      busyMicros: BUSY_MICROS,
      ratios: busyRuns.map((run, i) => run.rps / bareRuns[i]!.rps),
      bareCpuMicros: median(bareRuns.map((run) => run.cpuMicros)),
      busyCpuMicros: median(busyRuns.map((run) => run.cpuMicros)),
      ...generatorCpuAndFailures(bareRuns.concat(busyRuns)),
    };
    console.log(
      `calibration: fastify + ${BUSY_MICROS} µs busy work, ratio ${median(calibration.ratios).toFixed(3)} ` +
        `(${calibration.ratios.map((r) => r.toFixed(3)).join(' ')}) cpu µs/req bare ` +
        `${calibration.bareCpuMicros.toFixed(1)} busy ${calibration.busyCpuMicros.toFixed(1)}`,
    );
  } finally {
    await stopAll(bare);
    await stopAll(busy);
  }
}

const markdown = renderResults(rows, calibration, {
  mode: values.full ? 'full' : 'quick',
  pairs,
  instances,
  seconds,
  connections,
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  durationSeconds: Math.round((Date.now() - started) / 1000),
});
await stopLoadGenerator();
writeFileSync(values.out, markdown);
console.log(`\nwrote ${values.out} in ${Math.round((Date.now() - started) / 1000)} s`);
