import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { budget } from '../budget.js';
import type { StoreKind } from '../server/config.js';
import type { Outcome } from './client.js';

/** apps/torture/results: one `faults-<store>.json` per store, rewritten by each run. */
export const RESULTS_DIR = fileURLToPath(new URL('../../results', import.meta.url));

/** What one scenario measured. */
export interface ScenarioFigures {
  store: StoreKind;
  scenario: string;
  /** `proxy` or `in-process` (memory). */
  via: string;
  requests: number;
  /** Handler runs journaled (start lines) for the scenario's keys. */
  executions: number;
  /** Answers by kind: `201`, `201 replay`, `409`, `503`, ... (`0`: no answer). */
  statuses: Record<string, number>;
  /** Slowest answer, ms (for outages: of the requests sent during the outage). */
  maxLatencyMs?: number;
  /** From the end of the fault to the first `2xx`, ms (outages: per server, the slowest). */
  recoveryMs?: number;
  /** Anything else worth quoting (events counted, takeover delay, ...). */
  notes?: Record<string, number | string>;
}

/** Count answers by kind. */
export function statusCounts(outcomes: readonly Outcome[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const outcome of outcomes) {
    const kind = outcome.status === 201 && outcome.replayed ? '201 replay' : String(outcome.status);
    counts[kind] = (counts[kind] ?? 0) + 1;
  }
  return counts;
}

/** The figures of one store's run, written to `results/faults-<store>.json` and printed as a table. */
export class FigureLog {
  private readonly rows: ScenarioFigures[] = [];

  constructor(private readonly store: StoreKind) {}

  add(figures: ScenarioFigures): void {
    this.rows.push(figures);
  }

  /** Write the results file and return the table. */
  flush(): string {
    mkdirSync(RESULTS_DIR, { recursive: true });
    const file = join(RESULTS_DIR, `faults-${this.store}.json`);
    const result = {
      store: this.store,
      budget: budget.name,
      command: budget.large ? 'pnpm torture' : 'pnpm test',
      at: new Date().toISOString(),
      scenarios: this.rows,
    };
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    return formatTable(this.rows);
  }
}

/** Every results file's scenarios, in store order. */
export function readResults(): Array<{
  store: string;
  budget: string;
  at: string;
  scenarios: ScenarioFigures[];
}> {
  const order = ['memory', 'redis', 'postgres', 'dynamodb'];
  let files: string[] = [];
  try {
    files = readdirSync(RESULTS_DIR).filter((name) => /^faults-.*\.json$/.test(name));
  } catch {
    return [];
  }
  return files
    .map((name) => JSON.parse(readFileSync(join(RESULTS_DIR, name), 'utf8')))
    .sort((a, b) => order.indexOf(a.store) - order.indexOf(b.store));
}

/** A compact fixed-width table of scenario figures. */
export function formatTable(rows: readonly ScenarioFigures[]): string {
  const header = ['store', 'scenario', 'req', 'exec', 'answers', 'max ms', 'recovery ms', 'notes'];
  const lines = rows.map((row) => [
    row.store,
    row.scenario,
    String(row.requests),
    String(row.executions),
    Object.entries(row.statuses)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([status, count]) => `${status}:${count}`)
      .join(' '),
    row.maxLatencyMs === undefined ? '' : String(row.maxLatencyMs),
    row.recoveryMs === undefined ? '' : String(row.recoveryMs),
    Object.entries(row.notes ?? {})
      .map(([name, value]) => `${name}=${value}`)
      .join(' '),
  ]);
  const widths = header.map((title, column) =>
    Math.max(title.length, ...lines.map((line) => line[column]!.length)),
  );
  const format = (cells: string[]) =>
    cells
      .map((cell, column) => cell.padEnd(widths[column]!))
      .join('  ')
      .trimEnd();
  return [format(header), format(widths.map((width) => '-'.repeat(width))), ...lines.map(format)].join('\n');
}
