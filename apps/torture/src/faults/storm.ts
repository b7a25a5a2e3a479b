import { storageKey } from '@idem/core';
import { describe, expect, it } from 'vitest';
import { budget } from '../budget.js';
import type { EventLine, RunLine } from '../server/journal.js';
import { type Outcome, post } from './client.js';
import { statusCounts } from './figures.js';
import { processes, type ScenarioContext, uniqueKey } from './scenario.js';
import type { ServerProcess } from './server-process.js';
import type { FaultTarget, ProfileName } from './targets.js';
import { sleep } from './timing.js';

/** A storm's verdict for one key. */
export interface KeyVerdict {
  /** Handler runs the journals show. */
  executions: number;
  /** Answers that were a fresh execution (`201`, not replayed). */
  executedAnswers: number;
  /** Answers that are none of: the execution, its replay, a `409` (409 mode), a `503` (overload). */
  unexpected: string[];
}

/** The verdict every key of a storm must get. */
export const EXACTLY_ONCE: KeyVerdict = { executions: 1, executedAnswers: 1, unexpected: [] };

/**
 * Judge one key of a storm: the journals must show one handler run, one answer must be that run, and
 * every other answer must be its replay (same body), or an `in_flight` 409 (409 mode), or a
 * `store_unavailable` 503 (an overloaded store timing out fails closed: nothing ran).
 */
export function stormVerdict(
  key: string,
  outcomes: readonly Outcome[],
  runs: readonly RunLine[],
  mode: 'conflict' | 'wait',
): KeyVerdict {
  const starts = runs.filter((line) => line.phase === 'start' && line.key === key);
  const run = starts[0]?.run;
  const mine = outcomes.filter((outcome) => outcome.key === key);
  const executed = mine.filter((outcome) => outcome.status === 201 && !outcome.replayed);
  const unexpected = mine
    .filter((outcome) => !executed.includes(outcome))
    .filter((outcome) => {
      if (outcome.status === 201 && outcome.replayed && outcome.run === run) return false;
      if (outcome.status === 503 && outcome.code === 'store_unavailable') return false;
      return !(mode === 'conflict' && outcome.status === 409 && outcome.code === 'in_flight');
    })
    .map(
      (outcome) =>
        `${outcome.server}:${outcome.status}${outcome.replayed ? ' replay' : ''} ${outcome.code ?? ''}${outcome.error ?? ''}`,
    );
  for (const answer of executed) {
    if (answer.run !== run) unexpected.push(`an executed answer names run ${answer.run}, the journal ${run}`);
  }
  return { executions: starts.length, executedAnswers: executed.length, unexpected };
}

/** Storms: many concurrent duplicates of one key, then of many keys at once, in 409 and in wait mode. */
export function stormScenarios(context: ScenarioContext): void {
  const perKeyOne = 100;
  const keys = 50;
  // The large budget sends more requests in all, not more at once: 1,000 concurrent requests already
  // saturate two cores running the client, two servers and the store.
  const perKeyMany = budget.scale(6, 20);
  const rounds = budget.scale(1, 5);
  const modes = [
    { mode: 'conflict', profile: 'storm', others: '409 or the replay' },
    { mode: 'wait', profile: 'stormWait', others: 'the replay (wait mode)' },
  ] as const;

  describe('storm (default lease 15 s and store timeout 3 s; a 503 only if the store times out, and the key then runs on its retry)', () => {
    for (const { mode, profile, others } of modes) {
      it(`${perKeyOne} concurrent requests with one key over ${processes(context.kind)}: exactly 1 execution, every other answer is ${others}`, async () => {
        const result = await storm(context.target(), profile, mode, 1, perKeyOne, 200);
        context.figures.add({
          store: context.kind,
          scenario: `storm 1 key x ${perKeyOne} (${mode})`,
          via: context.target().faults.via,
          ...result.figures,
        });
        expect(result.verdicts).toEqual([EXACTLY_ONCE]);
      });

      it(`${keys} keys at once, ${perKeyMany} concurrent requests each (${mode}), then one retry per key${rounds > 1 ? `, ${rounds} rounds` : ''}: exactly 1 execution per key`, async () => {
        const results = [];
        for (let round = 0; round < rounds; round++) {
          results.push(await storm(context.target(), profile, mode, keys, perKeyMany, 100));
        }
        context.figures.add({
          store: context.kind,
          scenario: `storm ${keys} keys x ${perKeyMany}${rounds > 1 ? ` x ${rounds} rounds` : ''} (${mode})`,
          via: context.target().faults.via,
          ...mergeFigures(results.map((result) => result.figures)),
        });
        expect(results.flatMap((result) => result.verdicts)).toEqual(
          Array.from({ length: keys * rounds }, () => EXACTLY_ONCE),
        );
      });
    }
  });
}

/**
 * Fire `perKey` concurrent requests for each of `keys` fresh keys, spread over every server, all at
 * once; then one retry per key (repeated while it gets a 503, as a client would: a key whose storm
 * requests all got 503 runs then; for every other key the retry is a replay). Figures count the storm's answers; verdicts cover the storm and the retries.
 */
export async function storm(
  target: FaultTarget,
  profile: ProfileName,
  mode: 'conflict' | 'wait',
  keys: number,
  perKey: number,
  delayMs: number,
) {
  const names = Array.from({ length: keys }, () => uniqueKey(`storm-${mode}`));
  const { servers } = target;
  const requests = names.flatMap((key) =>
    Array.from(
      { length: perKey },
      (_, i) => () => post(servers[i % servers.length]!, profile, key, { delayMs }),
    ),
  );
  const outcomes = await Promise.all(requests.map((send) => send()));
  const retries = (
    await Promise.all(
      names.map((key, i) => retryWhileUnavailable(servers[(i + 1) % servers.length]!, profile, key)),
    )
  ).flat();
  const runs = target.runs();
  const verdicts = names.map((key) => stormVerdict(key, [...outcomes, ...retries], runs, mode));
  const storageKeys = new Set(await Promise.all(names.map((key) => storageKey(key))));
  return {
    outcomes,
    verdicts,
    figures: {
      requests: outcomes.length,
      executions: verdicts.reduce((sum, verdict) => sum + verdict.executions, 0),
      statuses: statusCounts(outcomes),
      maxLatencyMs: Math.max(...outcomes.map((outcome) => outcome.ms)),
      notes: eventCounts(target.events().filter((event) => storageKeys.has(event.key))),
    },
  };
}

/**
 * A client's retry after the storm: again, with a growing pause, while the answer is `503` (an
 * overloaded store keeps working off abandoned calls for a while after the storm).
 */
async function retryWhileUnavailable(server: ServerProcess, profile: ProfileName, key: string) {
  const answers: Outcome[] = [];
  for (let attempt = 1; attempt <= 10; attempt++) {
    const answer = await post(server, profile, key);
    answers.push(answer);
    if (answer.status !== 503) break;
    await sleep(250 * attempt);
  }
  return answers;
}

/** Count `store_error` and `lease_lost` events by operation, e.g. `{ 'store_error:acquire': 3 }`. */
export function eventCounts(events: readonly EventLine[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const event of events) {
    if (event.type !== 'store_error' && event.type !== 'lease_lost' && event.type !== 'complete_failed')
      continue;
    const name = event.operation ? `${event.type}:${event.operation}` : event.type;
    counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}

/** Sum the figures of several storms (the slowest answer of all). */
function mergeFigures(all: ReadonlyArray<Awaited<ReturnType<typeof storm>>['figures']>) {
  const sum = (counts: Array<Record<string, number>>) => {
    const total: Record<string, number> = {};
    for (const count of counts)
      for (const [name, n] of Object.entries(count)) total[name] = (total[name] ?? 0) + n;
    return total;
  };
  return {
    requests: all.reduce((total, figures) => total + figures.requests, 0),
    executions: all.reduce((total, figures) => total + figures.executions, 0),
    statuses: sum(all.map((figures) => figures.statuses)),
    maxLatencyMs: Math.max(...all.map((figures) => figures.maxLatencyMs)),
    notes: sum(all.map((figures) => figures.notes)),
  };
}
