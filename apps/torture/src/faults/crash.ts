import { describe, expect, it } from 'vitest';
import { type Outcome, post } from './client.js';
import { statusCounts } from './figures.js';
import { type ScenarioContext, uniqueKey } from './scenario.js';
import type { ServerProcess } from './server-process.js';
import { type FaultTarget, LEASE_MS } from './targets.js';
import { sleep, waitFor } from './timing.js';

/** Retry `key` on `server` every `everyMs` while the answer is `409`; returns every answer, the last one not a 409. */
async function retryWhileInFlight(server: ServerProcess, key: string, limitMs: number, everyMs = 50) {
  const attempts: Outcome[] = [];
  const deadline = Date.now() + limitMs;
  for (;;) {
    const outcome = await post(server, 'plain', key);
    attempts.push(outcome);
    if (outcome.status !== 409 || Date.now() > deadline) return attempts;
    await sleep(everyMs);
  }
}

/** The handler-run journal of `key`, summarised: who started and who finished. */
function journalOf(target: FaultTarget, key: string) {
  const lines = target.runs(key);
  return {
    starts: lines.filter((line) => line.phase === 'start').map((line) => line.server),
    ends: lines.filter((line) => line.phase === 'end').map((line) => line.server),
  };
}

/**
 * Crashes and pauses of the process holding a lease: recovery after the lease, and fencing of the stale
 * holder. Real signals to real processes for the shared stores; for memory (whose records die with its
 * process) the holder's loss is emulated in process by failing its heartbeats.
 */
export function crashScenarios(context: ScenarioContext): void {
  // How long a crashed holder's lease can still block: one lease after its last renewal, plus the
  // store's takeover margin, plus scheduling slack on a busy machine.
  const recoveryLimit = () => LEASE_MS + context.target().takeoverMarginMs + 5_000;

  describe('crash', () => {
    if (context.kind === 'memory') {
      // kill -9 / SIGSTOP do not apply to memory, whose records live and die with its one process:
      // the lease loss is emulated in process instead.

      it('the holder stops renewing its lease mid-handler (heartbeats lost, as in a crash or a pause): a retry before the lease ends gets 409, after it the handler runs once more; the stale holder, resumed, cannot store its result (lease_lost) and the replay returns the newer one', async () => {
        const target = context.target();
        const [server] = target.servers as [ServerProcess];
        const key = uniqueKey('lost-holder');
        const gate = `gate-${key}`;
        await target.storeFaults!({ latencyMs: 0, mode: 'fail', operations: ['extend'] });
        try {
          const first = post(server, 'plain', key, { gate });
          const start = await waitFor('the first run to start', () =>
            target.runs(key).find((line) => line.phase === 'start'),
          );
          const lostAt = Date.now();
          const attempts = await retryWhileInFlight(server, key, recoveryLimit());
          const takeover = attempts.at(-1)!;
          target.openGate(gate);
          const stale = await first;
          const leaseLost = await waitFor('lease_lost from the stale holder', () =>
            target.events(start.storageKey).find((event) => event.type === 'lease_lost'),
          );
          await target.faults.restore();
          const replay = await post(server, 'plain', key);

          context.figures.add({
            store: context.kind,
            scenario: 'holder loses its lease (in-process)',
            via: target.faults.via,
            requests: attempts.length + 2,
            executions: journalOf(target, key).starts.length,
            statuses: statusCounts([...attempts, stale, replay]),
            notes: { takeoverAfterMs: takeover.startedAt - lostAt, leaseLost: leaseLost.operation ?? '' },
          });
          expect(attempts[0]).toMatchObject({ status: 409, code: 'in_flight' });
          expect(attempts.slice(0, -1).every((outcome) => outcome.status === 409)).toBe(true);
          expect(takeover).toMatchObject({ status: 201, replayed: false });
          expect(takeover.run).not.toBe(start.run);
          expect(stale).toMatchObject({ status: 201, replayed: false, run: start.run });
          expect(replay).toMatchObject({ status: 201, replayed: true, run: takeover.run });
          expect(journalOf(target, key)).toEqual({ starts: ['a', 'a'], ends: ['a', 'a'] });
        } finally {
          target.openGate(gate);
          await target.faults.restore();
        }
      });
      return;
    }

    it('kill -9 of the lease holder mid-handler: a retry before the lease ends gets 409; after it, the handler runs once more on the other process and completes; then retries replay', async () => {
      const target = context.target();
      const [victim, survivor] = target.servers as [ServerProcess, ServerProcess];
      const key = uniqueKey('crash');
      try {
        const first = post(victim, 'plain', key, { gate: `never-${key}` });
        const start = await waitFor('the first run to start', () =>
          target.runs(key).find((line) => line.phase === 'start'),
        );
        // Past the first heartbeat: the crash leaves a renewed lease behind, not just the claim's.
        await sleep(LEASE_MS * 0.6);
        victim.signal('SIGKILL');
        const killedAt = Date.now();
        await victim.exited;
        const attempts = await retryWhileInFlight(survivor, key, recoveryLimit());
        const takeover = attempts.at(-1)!;
        const replays = [await post(survivor, 'plain', key)];
        const dropped = await first;
        const fresh = await target.restart(0);
        replays.push(await post(fresh, 'plain', key));

        context.figures.add({
          store: context.kind,
          scenario: 'kill -9 of the lease holder',
          via: target.faults.via,
          requests: attempts.length + replays.length + 1,
          executions: journalOf(target, key).starts.length,
          statuses: statusCounts([dropped, ...attempts, ...replays]),
          notes: { takeoverAfterKillMs: takeover.startedAt - killedAt, retries409: attempts.length - 1 },
        });
        expect(dropped.status).toBe(0);
        expect(attempts[0]).toMatchObject({ status: 409, code: 'in_flight' });
        expect(attempts[0]!.retryAfter).toMatch(/^\d+$/);
        expect(attempts.slice(0, -1).every((outcome) => outcome.status === 409)).toBe(true);
        expect(takeover).toMatchObject({ status: 201, replayed: false, server: 'b' });
        expect(takeover.run).not.toBe(start.run);
        for (const replay of replays)
          expect(replay).toMatchObject({ status: 201, replayed: true, run: takeover.run });
        expect(journalOf(target, key)).toEqual({ starts: ['a', 'b'], ends: ['b'] });
        expect(target.events(start.storageKey).filter((event) => event.type === 'lease_lost')).toEqual([]);
      } finally {
        if (!target.servers[0]!.alive) await target.restart(0);
      }
    });

    it('SIGSTOP of the lease holder past its lease, then SIGCONT: its stale result never overwrites the newer one (fencing; lease_lost in its event log) and every replay returns the newer result', async () => {
      const target = context.target();
      const [victim, survivor] = target.servers as [ServerProcess, ServerProcess];
      const key = uniqueKey('pause');
      let stopped = false;
      try {
        const first = post(victim, 'plain', key, { delayMs: 300 });
        const start = await waitFor('the first run to start', () =>
          target.runs(key).find((line) => line.phase === 'start'),
        );
        victim.signal('SIGSTOP');
        stopped = true;
        const stoppedAt = Date.now();
        const attempts = await retryWhileInFlight(survivor, key, recoveryLimit());
        const takeover = attempts.at(-1)!;
        victim.signal('SIGCONT');
        stopped = false;
        const stale = await first;
        const leaseLost = await waitFor('lease_lost from the paused holder', () => {
          const events = target
            .events(start.storageKey)
            .filter((event) => event.type === 'lease_lost' && event.server === 'a');
          return events.length > 0 && events;
        });
        const replays = await Promise.all(target.servers.map((server) => post(server, 'plain', key)));

        context.figures.add({
          store: context.kind,
          scenario: 'SIGSTOP past the lease, SIGCONT',
          via: target.faults.via,
          requests: attempts.length + replays.length + 1,
          executions: journalOf(target, key).starts.length,
          statuses: statusCounts([stale, ...attempts, ...replays]),
          notes: {
            takeoverAfterStopMs: takeover.startedAt - stoppedAt,
            leaseLost: leaseLost.map((event) => event.operation).join('+'),
          },
        });
        expect(attempts[0]).toMatchObject({ status: 409, code: 'in_flight' });
        expect(attempts.slice(0, -1).every((outcome) => outcome.status === 409)).toBe(true);
        expect(takeover).toMatchObject({ status: 201, replayed: false, server: 'b' });
        // The paused handler's own answer still reaches its client: it did run. Its result is not stored.
        expect(stale).toMatchObject({ status: 201, replayed: false, run: start.run });
        for (const replay of replays)
          expect(replay).toMatchObject({ status: 201, replayed: true, run: takeover.run });
        expect(journalOf(target, key)).toEqual({
          starts: ['a', 'b'],
          ends: expect.arrayContaining(['a', 'b']),
        });
        expect(target.events(start.storageKey).filter((event) => event.type === 'complete_failed')).toEqual(
          [],
        );
      } finally {
        if (stopped) victim.signal('SIGCONT');
      }
    });
  });
}
