import type { KeyResult, StormResult } from './burst.js';

const COLUMNS = ['requests', 'executions', 'fresh', 'replays', '409s', '5xx', 'errors'] as const;
/** Per-key rows shown at most; beyond, only the keys that went wrong. */
const MAX_ROWS = 20;

/** The storm's table and verdict, as printed. */
export function formatStorm(result: StormResult): string {
  const { keys, totals } = result;
  const perKey = result.concurrency + result.retries;
  const lines = [
    `storm: ${keys.length} keys x (${result.concurrency} concurrent + ${result.retries} retries) = ` +
      `${totals.requests} requests, payload ${result.payload}`,
    ...result.urls.map((url) => `  -> ${url}`),
    '',
  ];
  const keyWidth = Math.max(5, ...keys.map((key) => key.key.length));
  const row = (label: string, values: readonly number[], note = '') =>
    label.padEnd(keyWidth) +
    values.map((value, i) => String(value).padStart(COLUMNS[i]!.length + 2)).join('') +
    note;
  const cells = (k: KeyResult) => [
    k.responses.length,
    k.executions,
    k.counts.executed,
    k.counts.replayed,
    k.counts.in_flight,
    k.counts.failed,
    k.counts.error,
  ];
  const wrong = keys.filter((key) => key.executions !== 1 || !key.consistent);
  const shown = keys.length <= MAX_ROWS ? keys : wrong.slice(0, MAX_ROWS);
  lines.push(''.padEnd(keyWidth) + COLUMNS.map((column) => column.padStart(column.length + 2)).join(''));
  for (const key of shown) {
    const note = key.executions !== 1 ? '   <- not 1' : key.consistent ? '' : '   <- replay differs';
    lines.push(row(key.key, cells(key), note));
  }
  if (shown.length < keys.length) {
    const hidden = keys.length - shown.length;
    lines.push(
      wrong.length > shown.length
        ? `(${hidden} more keys not shown, ${wrong.length - shown.length} of them wrong; --json lists every key)`
        : `(${hidden} more keys, each executed once; --json lists every key)`,
    );
  }
  lines.push(
    row('total', [
      totals.requests,
      totals.executions,
      totals.executed,
      totals.replayed,
      totals.in_flight,
      totals.failed,
      totals.error,
    ]),
  );
  lines.push('');
  const seconds = (result.durationMs / 1000).toFixed(2);
  if (result.ok) {
    lines.push(
      `OK: exactly one execution per key (${keys.length} of ${keys.length} keys, ${perKey} requests each), ` +
        `and every replay returned the original order. (${seconds} s)`,
    );
  } else {
    const counts = new Map<number, number>();
    for (const key of keys) counts.set(key.executions, (counts.get(key.executions) ?? 0) + 1);
    const spread = [...counts].map(([executions, n]) => `${n} keys executed ${executions}x`).join(', ');
    lines.push(
      `FAILED: ${wrong.length} of ${keys.length} keys did not execute exactly once or replayed something else ` +
        `(${spread}). (${seconds} s)`,
    );
  }
  const firstError = keys.flatMap((key) => key.responses).find((response) => response.error)?.error;
  if (firstError) lines.push(`first error: ${firstError}`);
  return lines.join('\n');
}
