import { describe, expect, it } from 'vitest';
import { budget } from '../budget.js';
import { type Outcome, post, runLoad } from './client.js';
import { statusCounts } from './figures.js';
import { type ScenarioContext, uniqueKey } from './scenario.js';
import type { ServerProcess } from './server-process.js';
import { type FaultTarget, LEASE_MS, OUTAGE_STORE_TIMEOUT_MS } from './targets.js';
import { sleep, waitFor } from './timing.js';

/**
 * How much later than the store timeout an answer may come during an outage: event-loop and scheduling
 * delays of a busy 2-core machine (the load, two servers and the backend share it), never a store wait.
 */
export const LATENCY_SLACK_MS = 750;

/** Figures and findings of one outage under load. */
interface OutageReport {
  outcomes: Outcome[];
  cutAt: number;
  restoredAt: number;
  /** Answers to requests sent while the store was down (after the fault, before the restore). */
  during: Outcome[];
  /** The load's keys that ran a handler, and how often; and runs without a claim. */
  executionsByKey: Map<string, number>;
  unclaimedRuns: number;
  maxDuringMs: number;
  maxOverallMs: number;
  /** Per server: ms from the restore to its first 2xx. */
  recoveryMs: number[];
}

/** Keep a steady load on every server, break the store for a while, restore it, and wait for recovery. */
async function outageUnderLoad(
  target: FaultTarget,
  fault: () => Promise<void>,
  outageMs: number,
  keyPrefix: string,
): Promise<OutageReport> {
  const { servers } = target;
  const load = runLoad({
    servers,
    profile: 'outage',
    workersPerServer: budget.scale(4, 8),
    paceMs: 50,
    delayMs: 20,
    keyPrefix,
  });
  let cutAt = 0;
  let restoredAt = 0;
  try {
    await sleep(300);
    await fault();
    cutAt = Date.now();
    await sleep(outageMs);
  } finally {
    await target.faults.restore();
    restoredAt = Date.now();
  }
  const recovered = (server: ServerProcess) =>
    load.outcomes.find(
      (outcome) =>
        outcome.server === server.name &&
        outcome.status === 201 &&
        outcome.startedAt >= cutAt &&
        outcome.endedAt >= restoredAt,
    );
  try {
    await waitFor('every server to answer 201 again', () => servers.every(recovered), 20_000);
    await sleep(200);
  } finally {
    await load.stop();
  }
  const { outcomes } = load;
  const during = outcomes.filter((outcome) => outcome.startedAt >= cutAt && outcome.startedAt < restoredAt);
  const keys = new Set(outcomes.map((outcome) => outcome.key));
  const runs = target.runs().filter((line) => line.phase === 'start' && keys.has(line.key));
  const executionsByKey = new Map<string, number>();
  for (const line of runs) executionsByKey.set(line.key, (executionsByKey.get(line.key) ?? 0) + 1);
  return {
    outcomes,
    cutAt,
    restoredAt,
    during,
    executionsByKey,
    unclaimedRuns: runs.filter((line) => !line.claimed).length,
    maxDuringMs: Math.max(0, ...during.map((outcome) => outcome.ms)),
    maxOverallMs: Math.max(0, ...outcomes.map((outcome) => outcome.ms)),
    recoveryMs: servers.map((server) => recovered(server)!.endedAt - restoredAt),
  };
}

/** Requests sent during the outage and answered before the restore: nothing could have served them. */
function answeredDuring(report: OutageReport): Outcome[] {
  return report.during.filter((outcome) => outcome.endedAt <= report.restoredAt);
}

/** Every load key: one handler run per 201, none for a 503 (and nothing else answered). */
function executionVerdict(report: OutageReport) {
  const wrong: string[] = [];
  for (const outcome of report.outcomes) {
    const runs = report.executionsByKey.get(outcome.key) ?? 0;
    const expected = outcome.status === 201 ? 1 : 0;
    if (runs !== expected) wrong.push(`${outcome.key}: ${outcome.status} with ${runs} runs`);
  }
  return wrong;
}

/**
 * Store outages: the store goes down (connections cut and refused), or silent (stalled), under a
 * steady load; and the store goes away between a handler's end and its `complete`.
 */
export function outageScenarios(context: ScenarioContext): void {
  const outageMs = budget.scale(1_500, 6_000);
  const bound = OUTAGE_STORE_TIMEOUT_MS + LATENCY_SLACK_MS;
  const proxied = context.kind !== 'memory';
  const downHow = proxied ? 'proxy cuts every connection and refuses new ones' : 'every store call fails';
  const stallHow = proxied ? 'proxy forwards nothing, sockets stay open' : 'store calls never settle';
  const via = proxied ? 'through the proxy' : 'in-process store wrapper: memory has no network';

  describe(`store outage (${via})`, () => {
    it(`store down for ${outageMs} ms under load (${downHow}): only 503s, no handler runs without a claim, every answer within the store timeout + ${LATENCY_SLACK_MS} ms; service resumes after the restore with no restart`, async () => {
      const target = context.target();
      const pids = target.servers.map((server) => server.pid);
      const report = await outageUnderLoad(target, () => target.faults.down(), outageMs, uniqueKey('down'));
      record(context, 'store down under load', report);

      expect(answeredDuring(report).length).toBeGreaterThan(0);
      expect(answeredDuring(report).filter((outcome) => outcome.status !== 503)).toEqual([]);
      expect(report.outcomes.filter((outcome) => outcome.status !== 201 && outcome.status !== 503)).toEqual(
        [],
      );
      expect(report.unclaimedRuns).toBe(0);
      expect(executionVerdict(report)).toEqual([]);
      expect(report.maxDuringMs).toBeLessThanOrEqual(bound);
      expect(target.servers.map((server) => server.pid)).toEqual(pids);
    });

    it(`store silent for ${outageMs} ms under load (${stallHow}): every answer within the store timeout + ${LATENCY_SLACK_MS} ms, only 503s, recovery with no restart; retries of the 503'd keys run each exactly once (a claim that reached the store late blocks its key for one lease: 409)`, async () => {
      const target = context.target();
      const pids = target.servers.map((server) => server.pid);
      const report = await outageUnderLoad(target, () => target.faults.stall(), outageMs, uniqueKey('stall'));

      // Retry the keys that got 503: right away, then once more after a lease for those still blocked.
      const refused = [
        ...new Set(report.outcomes.filter((outcome) => outcome.status === 503).map((o) => o.key)),
      ];
      const sample = refused.slice(0, budget.scale(40, 400));
      const servers = target.servers;
      const retries = await Promise.all(
        sample.map((key, i) => post(servers[i % servers.length]!, 'outage', key)),
      );
      const blocked = retries.filter((outcome) => outcome.status === 409).map((outcome) => outcome.key);
      if (blocked.length > 0) await sleep(LEASE_MS + target.takeoverMarginMs + 300);
      const second = await Promise.all(
        blocked.map((key, i) => post(servers[i % servers.length]!, 'outage', key)),
      );
      const finals = new Map([...retries, ...second].map((outcome) => [outcome.key, outcome]));
      const runs = target.runs().filter((line) => line.phase === 'start');
      const retriedRuns = sample.map((key) => runs.filter((line) => line.key === key).length);

      record(context, 'store silent under load', report, {
        retried503Keys: sample.length,
        lateClaims409: blocked.length,
      });
      expect(answeredDuring(report).length).toBeGreaterThan(0);
      expect(answeredDuring(report).filter((outcome) => outcome.status !== 503)).toEqual([]);
      expect(report.outcomes.filter((outcome) => outcome.status !== 201 && outcome.status !== 503)).toEqual(
        [],
      );
      expect(executionVerdict(report)).toEqual([]);
      expect(report.unclaimedRuns).toBe(0);
      expect(report.maxDuringMs).toBeLessThanOrEqual(bound);
      expect(target.servers.map((server) => server.pid)).toEqual(pids);
      expect([...finals.values()].filter((outcome) => outcome.status !== 201)).toEqual([]);
      expect(retriedRuns.filter((count) => count !== 1)).toEqual([]);
    });

    it(`store lost between the handler's end and complete, back within the completion retries: the client still gets its 201, the completion lands in the background (store_error on complete, no complete_failed), and a retry replays`, async () => {
      const target = context.target();
      const server = target.servers[0]!;
      const key = uniqueKey('complete-back');
      const gate = `gate-${key}`;
      try {
        const { answer, start } = await storeLostAfterHandler(target, server, key, gate);
        await waitFor('store_error on complete', () =>
          target.events(start.storageKey).find((e) => e.type === 'store_error' && e.operation === 'complete'),
        );
        await sleep(200);
        await target.faults.restore();
        const restoredAt = Date.now();
        // Until the background retry lands, the record is in flight (409), and until the store client
        // has reconnected the store is still unavailable (503); then it replays.
        const attempts: Outcome[] = [];
        await waitFor(
          'a replay',
          async () => {
            const outcome = await post(target.servers.at(-1)!, 'complete', key);
            attempts.push(outcome);
            return outcome.replayed;
          },
          10_000,
          100,
        );
        const replay = attempts.at(-1)!;
        const events = target.events(start.storageKey);
        context.figures.add({
          store: context.kind,
          scenario: 'store lost before complete, back in time',
          via: target.faults.via,
          requests: attempts.length + 1,
          executions: target.runs(key).filter((line) => line.phase === 'start').length,
          statuses: statusCounts([answer, ...attempts]),
          maxLatencyMs: answer.ms,
          notes: {
            completeStoreErrors: events.filter((e) => e.type === 'store_error' && e.operation === 'complete')
              .length,
            replayAfterRestoreMs: replay.endedAt - restoredAt,
          },
        });
        expect(answer).toMatchObject({ status: 201, replayed: false, run: start.run });
        expect(answer.ms).toBeLessThanOrEqual(OUTAGE_STORE_TIMEOUT_MS + LATENCY_SLACK_MS);
        expect(attempts.filter((o) => o.status !== 409 && o.status !== 503 && !o.replayed)).toEqual([]);
        expect(replay).toMatchObject({ status: 201, run: start.run });
        expect(target.runs(key).filter((line) => line.phase === 'start')).toHaveLength(1);
        expect(events.filter((e) => e.type === 'complete_failed' || e.type === 'lease_lost')).toEqual([]);
      } finally {
        target.openGate(gate);
        await target.faults.restore();
        await target.healthy();
      }
    });

    it(`store lost between the handler's end and complete for longer than every completion retry: complete_failed is reported; retries get 409 until the lease ends, then the handler runs a second time (the one double execution idem allows, and reports)`, async () => {
      const target = context.target();
      const server = target.servers[0]!;
      const key = uniqueKey('complete-lost');
      const gate = `gate-${key}`;
      try {
        const { answer, start } = await storeLostAfterHandler(target, server, key, gate);
        const failed = await waitFor(
          'complete_failed',
          () => target.events(start.storageKey).find((e) => e.type === 'complete_failed'),
          15_000,
        );
        await target.faults.restore();
        const attempts: Outcome[] = [];
        await waitFor(
          'the lease to end and the handler to run again',
          async () => {
            const outcome = await post(target.servers.at(-1)!, 'complete', key);
            attempts.push(outcome);
            return outcome.status === 201;
          },
          15_000,
          200,
        );
        const rerun = attempts.at(-1)!;
        const answered = attempts.filter((outcome) => outcome.status !== 503);
        const replay = await post(server, 'complete', key);
        context.figures.add({
          store: context.kind,
          scenario: 'store lost before complete, too long',
          via: target.faults.via,
          requests: attempts.length + 2,
          executions: target.runs(key).filter((line) => line.phase === 'start').length,
          statuses: statusCounts([answer, ...attempts, replay]),
          notes: {
            completeFailedAfterMs: failed.at - answer.endedAt,
            retries409: attempts.filter((outcome) => outcome.status === 409).length,
          },
        });
        expect(answer).toMatchObject({ status: 201, replayed: false, run: start.run });
        // 503s only while the store client reconnects; the store's first answer is the live lease.
        expect(answered[0]).toMatchObject({ status: 409, code: 'in_flight' });
        expect(attempts.filter((o) => o !== rerun && o.status !== 409 && o.status !== 503)).toEqual([]);
        expect(rerun).toMatchObject({ status: 201, replayed: false });
        expect(rerun.run).not.toBe(start.run);
        expect(replay).toMatchObject({ status: 201, replayed: true, run: rerun.run });
        expect(target.runs(key).filter((line) => line.phase === 'start')).toHaveLength(2);
      } finally {
        target.openGate(gate);
        await target.faults.restore();
        await target.healthy();
      }
    });
  });
}

/**
 * A run of `key` that starts while the store is up and whose handler ends after the store went down
 * (the run waits on `gate`): the first request's answer and the run's start line.
 */
async function storeLostAfterHandler(target: FaultTarget, server: ServerProcess, key: string, gate: string) {
  const first = post(server, 'complete', key, { gate });
  const start = await waitFor('the run to start', () =>
    target.runs(key).find((line) => line.phase === 'start'),
  );
  await target.faults.down();
  target.openGate(gate);
  return { answer: await first, start };
}

function record(
  context: ScenarioContext,
  scenario: string,
  report: OutageReport,
  notes: Record<string, number> = {},
) {
  context.figures.add({
    store: context.kind,
    scenario,
    via: context.target().faults.via,
    requests: report.outcomes.length,
    executions: [...report.executionsByKey.values()].reduce((sum, count) => sum + count, 0),
    statuses: statusCounts(report.outcomes),
    maxLatencyMs: report.maxDuringMs,
    recoveryMs: Math.max(...report.recoveryMs),
    notes: { duringOutage: report.during.length, maxOverallMs: report.maxOverallMs, ...notes },
  });
}
