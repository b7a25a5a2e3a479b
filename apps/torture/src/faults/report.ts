/**
 * Print the figures of the last fault run, every store in one table:
 * `npx tsx src/faults/report.ts` (in apps/torture), after `pnpm test` or `pnpm torture`.
 */
import { formatTable, RESULTS_DIR, readResults } from './figures.js';

const results = readResults();
if (results.length === 0) {
  console.log(`no results in ${RESULTS_DIR}: run the fault tests first (npx vitest run src/faults)`);
} else {
  for (const result of results) console.log(`${result.store}: ${result.budget} budget, ${result.at}`);
  console.log(`\n${formatTable(results.flatMap((result) => result.scenarios))}`);
}
