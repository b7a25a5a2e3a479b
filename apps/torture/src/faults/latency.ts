import { storageKey } from '@idem/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { budget } from '../budget.js';
import { type Outcome, post } from './client.js';
import { statusCounts } from './figures.js';
import { processes, type ScenarioContext, uniqueKey } from './scenario.js';
import { EXACTLY_ONCE, storm } from './storm.js';
import { LEASE_MS, type ProfileName } from './targets.js';
import { sleep, waitFor } from './timing.js';

/** What every store round trip gains in this scenario. */
export const ADDED_ROUND_TRIP_MS = 200;
/** A store round trip longer than the lease: the boundary of exactly-once. */
export const SLOW_ROUND_TRIP_MS = 1_500;

/**
 * A slow store: every round trip takes 200 ms longer. Exactly-once must hold under a storm, and the
 * heartbeat must keep a handler that runs three leases long from being taken over (with a control run
 * without the heartbeat, which must be taken over: the harness does see double executions).
 */
export function latencyScenarios(context: ScenarioContext): void {
  const perKey = 100;
  const keys = budget.scale(0, 50);
  const handlerMs = 3 * LEASE_MS;
  const via =
    context.kind === 'memory' ? 'in-process store wrapper: memory has no network' : 'through the proxy';

  describe(`latency: +${ADDED_ROUND_TRIP_MS} ms per store round trip (${via})`, () => {
    beforeAll(() => context.target().faults.latency(ADDED_ROUND_TRIP_MS));
    afterAll(() => context.target().faults.restore());

    it(`storm of ${perKey} concurrent requests with one key over ${processes(context.kind)}: still exactly 1 execution, the others 409 or the replay`, async () => {
      const result = await storm(context.target(), 'storm', 'conflict', 1, perKey, 200);
      context.figures.add({
        store: context.kind,
        scenario: `+${ADDED_ROUND_TRIP_MS} ms: storm 1 key x ${perKey}`,
        via: context.target().faults.via,
        ...result.figures,
      });
      expect(result.verdicts).toEqual([EXACTLY_ONCE]);
    });

    if (keys > 0) {
      it(`storm of ${keys} keys at once, 20 concurrent requests each: exactly 1 execution per key`, async () => {
        const result = await storm(context.target(), 'storm', 'conflict', keys, 20, 200);
        context.figures.add({
          store: context.kind,
          scenario: `+${ADDED_ROUND_TRIP_MS} ms: storm ${keys} keys x 20`,
          via: context.target().faults.via,
          ...result.figures,
        });
        expect(result.verdicts).toEqual(Array.from({ length: keys }, () => EXACTLY_ONCE));
      });
    }

    describe('long handlers, side by side', { concurrent: true }, () => {
      it(`heartbeat: a handler running ${handlerMs} ms (3x the lease) keeps its lease; concurrent retries during it all get 409, never a second execution`, async () => {
        const result = await longHandler(context, 'plain', uniqueKey('heartbeat'), handlerMs);
        context.figures.add({
          store: context.kind,
          scenario: `+${ADDED_ROUND_TRIP_MS} ms: handler 3x lease, heartbeat`,
          via: context.target().faults.via,
          ...result.figures,
        });
        expect(result.first).toMatchObject({ status: 201, replayed: false, run: result.run });
        expect(
          result.retries.filter((o) => o.status !== 409 && !(o.replayed && o.run === result.run)),
        ).toEqual([]);
        expect(result.retries.filter((o) => o.status === 409).length).toBeGreaterThan(0);
        expect(result.replay).toMatchObject({ status: 201, replayed: true, run: result.run });
        expect(result.executions).toBe(1);
        expect(result.leaseLost).toEqual([]);
      });

      it(`control: the same handler without the heartbeat loses its lease after ${LEASE_MS} ms, a retry runs it a second time, and its own completion is refused (lease_lost): the harness sees double executions`, async () => {
        const result = await longHandler(context, 'nobeat', uniqueKey('nobeat'), handlerMs);
        context.figures.add({
          store: context.kind,
          scenario: `+${ADDED_ROUND_TRIP_MS} ms: handler 3x lease, no heartbeat (control)`,
          via: context.target().faults.via,
          ...result.figures,
        });
        expect(result.executions).toBe(2);
        expect(result.retries.some((o) => o.status === 201 && !o.replayed)).toBe(true);
        expect(result.leaseLost.length).toBeGreaterThan(0);
      });
    });

    it(`boundary: a store round trip of ${SLOW_ROUND_TRIP_MS} ms outlasts the ${LEASE_MS} ms lease: a retry takes over while the completion is on its way and the handler runs again, but fencing holds: every stale completion is refused (lease_lost), one result is stored and every replay names it`, async () => {
      const target = context.target();
      const { servers } = target;
      const key = uniqueKey('slow-store');
      await target.faults.latency(SLOW_ROUND_TRIP_MS);
      try {
        const first = post(servers[0]!, 'plain', key);
        let settled = false;
        void first.then(() => {
          settled = true;
        });
        const retries: Array<Promise<Outcome>> = [];
        while (!settled) {
          retries.push(post(servers.at(-1)!, 'plain', key));
          await sleep(150);
        }
        const answers = [await first, ...(await Promise.all(retries))];
        const replay = await post(servers[0]!, 'plain', key);
        const runs = target.runs(key).filter((line) => line.phase === 'start');
        const hashed = await storageKey(key);
        const refused = await waitFor('a lease_lost per stale completion', () => {
          const lost = target
            .events(hashed)
            .filter((e) => e.type === 'lease_lost' && e.operation === 'complete');
          return lost.length >= runs.length - 1 && lost;
        });
        const replayed = new Set([...answers, replay].filter((o) => o.replayed).map((o) => o.run));
        context.figures.add({
          store: context.kind,
          scenario: `+${SLOW_ROUND_TRIP_MS} ms (> lease): slow completion`,
          via: target.faults.via,
          requests: answers.length + 1,
          executions: runs.length,
          statuses: statusCounts([...answers, replay]),
          notes: { leaseLostOnComplete: refused.length },
        });
        expect(runs.length).toBeGreaterThanOrEqual(2);
        expect(refused).toHaveLength(runs.length - 1);
        expect(replay).toMatchObject({ status: 201, replayed: true });
        expect([...replayed]).toEqual([replay.run]);
        expect(runs.map((line) => line.run)).toContain(replay.run);
      } finally {
        await target.faults.latency(ADDED_ROUND_TRIP_MS);
      }
    });
  });
}

/**
 * Run one handler of `handlerMs` on the first server while retries of the same key go to every server
 * (one per server at a time) until it answers; then one more retry.
 */
async function longHandler(context: ScenarioContext, profile: ProfileName, key: string, handlerMs: number) {
  const target = context.target();
  const { servers } = target;
  const first = post(servers[0]!, profile, key, { delayMs: handlerMs });
  let settled = false;
  void first.then(() => {
    settled = true;
  });
  const start = await waitFor('the run to start', () =>
    target.runs(key).find((line) => line.phase === 'start'),
  );
  const retries: Outcome[] = [];
  while (!settled) {
    retries.push(...(await Promise.all(servers.map((server) => post(server, profile, key)))));
    await sleep(100);
  }
  const answer = await first;
  const replay = await post(servers.at(-1)!, profile, key);
  const executions = target.runs(key).filter((line) => line.phase === 'start').length;
  const events = target.events(start.storageKey);
  return {
    first: answer,
    run: start.run,
    retries,
    replay,
    executions,
    leaseLost: events.filter((event) => event.type === 'lease_lost'),
    figures: {
      requests: retries.length + 2,
      executions,
      statuses: statusCounts([answer, ...retries, replay]),
      maxLatencyMs: Math.max(...retries.map((outcome) => outcome.ms)),
      notes: { handlerMs },
    },
  };
}
