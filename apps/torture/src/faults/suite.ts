import { afterAll, afterEach, beforeAll, describe } from 'vitest';
import { budget } from '../budget.js';
import type { StoreKind } from '../server/config.js';
import { crashScenarios } from './crash.js';
import { FigureLog } from './figures.js';
import { latencyScenarios } from './latency.js';
import { outageScenarios } from './outage.js';
import type { ScenarioContext } from './scenario.js';
import { stormScenarios } from './storm.js';
import { type FaultTarget, openTarget } from './targets.js';

/**
 * Every fault scenario against one store: one pair of server processes (one for memory) and one proxy
 * serve all of its scenarios, which run one after the other (an outage must not overlap a storm). In the
 * small budget the stores' suites run concurrently with each other: they share nothing, and most of
 * their time is spent waiting (leases, outages, handlers), so together they take about as long as the
 * slowest one. The figures are written to `results/faults-<store>.json` and printed as a table when
 * the store is done.
 */
export function faultSuite(kind: StoreKind): void {
  let target: FaultTarget | undefined;
  let anyFailed = false;
  const context: ScenarioContext = {
    kind,
    figures: new FigureLog(kind),
    target: () => {
      if (!target) throw new Error(`[torture] the ${kind} target did not start`);
      return target;
    },
  };

  // Side by side in the small budget; one store at a time in the large one, whose storms and outages
  // would otherwise measure four stores fighting over two cores.
  describe(kind, { concurrent: !budget.large }, () => {
    describe.sequential(`faults on ${kind} (${budget.name} budget)`, {
      timeout: budget.scale(60_000, 300_000),
    }, () => {
      beforeAll(async () => {
        target = await openTarget(kind);
      }, 180_000);
      afterEach(({ task }) => {
        if (task.result?.state === 'fail') anyFailed = true;
      });
      afterAll(async () => {
        // When a scenario failed, what the servers printed (Hono logs a route's unexpected error there).
        if (anyFailed) {
          for (const server of target?.servers ?? []) {
            console.log(
              `\n[torture] ${kind} server ${server.name} (pid ${server.pid}) printed:\n${server.output().slice(-4_000)}`,
            );
          }
        }
        await target?.close();
        console.log(
          `\nidem torture: faults on ${kind} (${budget.name} budget)\n${context.figures.flush()}\n`,
        );
      }, 60_000);

      stormScenarios(context);
      crashScenarios(context);
      outageScenarios(context);
      latencyScenarios(context);
    });
  });
}
