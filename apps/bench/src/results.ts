import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { median } from './median.js';

/** One framework x store x scenario line of the results. */
export interface Row {
  framework: string;
  store: string;
  scenario: 'new keys' | 'replays';
  bareRps: number;
  idemRps: number;
  /** idem/bare throughput of each pair, in run order. */
  ratios: number[];
  /** Median of `ratios`. */
  ratio: number;
  /** Server CPU time per request (user + system, µs), median over the bare slices. */
  bareCpuMicros: number;
  /** Server CPU time per request (user + system, µs), median over the idem slices. */
  idemCpuMicros: number;
  /** Median over pairs of bare CPU per request / idem CPU per request (1 = idem costs no CPU). */
  cpuRatio: number;
  /** The offered load (req/s) of the equal-load pair: half of idem's median throughput. */
  equalRate: number;
  /** Server CPU per request (µs) of the bare server at `equalRate`. */
  equalBareCpuMicros: number;
  /** Server CPU per request (µs) of the idem server at `equalRate`. */
  equalIdemCpuMicros: number;
  bareP50: number;
  bareP99: number;
  idemP50: number;
  idemP99: number;
  /** Store calls per request the idem servers received in the scenario, both counted in those servers. */
  roundTrips: number;
  /** The same by the backend's own count (Redis, PostgreSQL); null where it keeps none. */
  serverRoundTrips: number | null;
  /** Highest CPU share of one core the load generator used in any slice (1 = saturated). */
  generatorCpu: number;
  /** Non-2xx responses and errors over all slices. */
  failures: number;
}

/** Bare Fastify against the same route plus `busyMicros` µs of busy work per request (new keys). */
export interface Calibration {
  framework: string;
  busyMicros: number;
  /** busy/bare throughput of each pair, in run order. */
  ratios: number[];
  bareCpuMicros: number;
  busyCpuMicros: number;
  generatorCpu: number;
  failures: number;
}

const require = createRequire(import.meta.url);
const version = (name: string) => {
  try {
    return (require(`${name}/package.json`) as { version: string }).version;
  } catch {
    // Packages whose `exports` hide package.json (hono): look for it above the entry point.
    try {
      for (let dir = dirname(require.resolve(name)); dir !== dirname(dir); dir = dirname(dir)) {
        const file = join(dir, 'package.json');
        if (!existsSync(file)) continue;
        const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === name) return pkg.version ?? '?';
      }
    } catch {}
    return '?';
  }
};

const fmt = (n: number, digits = 0) => n.toFixed(digits);
/** A difference with its sign: +12.5, -3.0. */
const signed = (n: number) => (n >= 0 ? '+' : '-') + fmt(Math.abs(n), 1);

/** A markdown table with padded columns, laid out the way the repository's formatter lays it out. */
export function markdownTable(
  columns: [title: string, align: 'left' | 'right'][],
  rows: string[][],
): string[] {
  const widths = columns.map(([title], i) => Math.max(3, title.length, ...rows.map((row) => row[i]!.length)));
  const pad = (cell: string, i: number) =>
    columns[i]![1] === 'right' ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!);
  const line = (cells: string[]) => `| ${cells.map(pad).join(' | ')} |`;
  const rule = columns.map(([, align], i) =>
    align === 'right' ? `${'-'.repeat(widths[i]! - 1)}:` : '-'.repeat(widths[i]!),
  );
  return [line(columns.map(([title]) => title)), `| ${rule.join(' | ')} |`, ...rows.map(line)];
}

/** RESULTS.md: machine, versions, date, and the table. */
export function renderResults(
  rows: Row[],
  calibration: Calibration | undefined,
  run: {
    mode: string;
    pairs: number;
    instances: number;
    seconds: number;
    connections: number;
    cpu: string;
    cores: number;
    durationSeconds: number;
  },
): string {
  const lines = [
    '# Benchmark results',
    '',
    `Measured ${new Date().toISOString().slice(0, 10)} with \`pnpm bench${run.mode === 'full' ? ' --full' : ''}\` (${run.durationSeconds} s).`,
    '',
    `- Machine: ${run.cpu}, ${run.cores} cores; server pinned to core 0, autocannon to core 1 (\`taskset\`), in one load-generator process for the whole run.`,
    `- Node ${process.version}; fastify ${version('fastify')}, hono ${version('hono')}, express ${version('express')}, autocannon ${version('autocannon')}.`,
    "- idem's packages run from their TypeScript source, compiled by tsx (esbuild) as each server starts, as everywhere in the workspace; the published packages are tsdown's build of the same source.",
    `- ${run.pairs} pairs of ${run.seconds} s slices per line, bare and idem alternating, each side first in every other pair (A B B A A B ...), ${run.connections} connections, after a 1 s warm-up of each server; ${run.instances === 1 ? 'one server process of each kind' : `${run.instances} server processes of each kind, taken in turn by the pairs`} (two processes of the same code can differ by 7-15% in CPU per request on a shared machine).`,
    '- `POST /orders` with a small JSON body; new keys: a fresh `Idempotency-Key` per request; replays: one key for all. The bare route gets the very same requests (it ignores the key), so that the load generator does the same work for both.',
    ...(rows.some((row) => row.framework === 'fastify-preparsing')
      ? [
          "- fastify-preparsing: Fastify with the plugin's `decideIn: 'preParsing'` (replays and problems answered before the body is parsed); its bare side is the same bare Fastify route.",
        ]
      : []),
    '- ratio = idem req/s / bare req/s within a pair; the table shows the median over pairs (each pair in brackets).',
    "- CPU µs/req = the server process's CPU time (user + system, `process.cpuUsage`) over a slice / the `POST /orders` requests it received (its own count: autocannon leaves out the requests still in flight when a slice ends), median over slices; CPU ratio = bare µs / idem µs within a pair, median. Steadier than req/s on a shared machine.",
    "- at equal load = one more pair at a fixed offered load (half of idem's median req/s), the same for both servers: CPU µs per request bare/idem, and what idem adds per request. At saturation the slower server also pays more per request for being slower (the generator sleeps between responses, and every response wakes it), so the CPU ratio above understates idem; this column does not.",
    '- round trips = per request the idem servers received in the scenario (their own count, over the warm-up, the slices and the equal-load slice): the store calls idem made (2 new, 1 replay) / what the backend itself counted: the commands Redis got from clients (`EVALSHA`, `EVAL`, `UNLINK` in `INFO commandstats`; Redis counts the commands a script runs as calls too), the transactions PostgreSQL ran in the database (`pg_stat_database`, read 10.5 s after the load stops, once every backend has published its counts; each store statement is a transaction of its own); — where the backend keeps no count (the memory store has no wire; DynamoDB Local has no such counter).',
    "- gen CPU = the load generator's highest use of its core; near 100% means the generator, not the server, was the limit.",
    '',
    ...markdownTable(
      [
        ['framework', 'left'],
        ['store', 'left'],
        ['scenario', 'left'],
        ['bare req/s', 'right'],
        ['idem req/s', 'right'],
        ['ratio (pairs)', 'left'],
        ['bare/idem CPU µs/req', 'right'],
        ['CPU ratio', 'right'],
        ['at equal load: req/s, bare/idem CPU µs/req, added µs', 'right'],
        ['bare p50/p99 ms', 'right'],
        ['idem p50/p99 ms', 'right'],
        ['round trips: calls / server', 'right'],
        ['gen CPU', 'right'],
        ['failures', 'right'],
      ],
      rows.map((row) => [
        row.framework,
        row.store,
        row.scenario,
        fmt(row.bareRps),
        fmt(row.idemRps),
        `**${fmt(row.ratio, 3)}** (${row.ratios.map((r) => fmt(r, 2)).join(', ')})`,
        `${fmt(row.bareCpuMicros, 1)}/${fmt(row.idemCpuMicros, 1)}`,
        fmt(row.cpuRatio, 3),
        `${fmt(row.equalRate)}: ${fmt(row.equalBareCpuMicros, 1)}/${fmt(row.equalIdemCpuMicros, 1)}, ` +
          signed(row.equalIdemCpuMicros - row.equalBareCpuMicros),
        `${row.bareP50}/${row.bareP99}`,
        `${row.idemP50}/${row.idemP99}`,
        `${fmt(row.roundTrips, 2)} / ${row.serverRoundTrips === null ? '—' : fmt(row.serverRoundTrips, 2)}`,
        `${fmt(row.generatorCpu * 100)}%`,
        String(row.failures),
      ]),
    ),
    '',
    ...(calibration ? calibrationLines(calibration) : []),
  ];
  return lines.join('\n');
}

function calibrationLines(calibration: Calibration): string[] {
  const { framework, busyMicros, ratios } = calibration;
  return [
    `Calibration, what a ratio means here: bare ${framework} against the same bare route plus ${busyMicros} µs of busy work per request (a loop on the clock: CPU and nothing else), new keys, slices as above: ratio **${fmt(median(ratios), 3)}** (${ratios.map((r) => fmt(r, 2)).join(', ')}), CPU µs/req ${fmt(calibration.bareCpuMicros, 1)}/${fmt(calibration.busyCpuMicros, 1)}, gen CPU ${fmt(calibration.generatorCpu * 100)}%, failures ${calibration.failures}. For scale, \`pnpm --filter @idem/bench layer\` measures idem's own work per request in a tight loop, with no framework and no socket.`,
    '',
  ];
}
