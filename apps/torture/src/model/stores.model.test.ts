import { encryptedStore } from '@idem/core';
import { describe, it } from 'vitest';
import { budget } from '../budget.js';
import { runModel } from './model-run.js';
import { dynamodbTarget, memoryTarget, type OpenTarget, postgresTarget, redisTarget } from './targets.js';

/**
 * Every store against the reference model (core's `transition`): random sequences of claim, complete,
 * release, extend, get, delete and real time passing. The stores run at the same time: the sequences
 * spend most of their time sleeping past leases and ttls.
 */

/** Sequences per store: 24 in `pnpm test`, 320 in `pnpm torture`. */
const MODEL_BUDGET = budget.scale(
  { lanes: 6, sequencesPerLane: 4, maxCommands: 25 },
  { lanes: 8, sequencesPerLane: 40, maxCommands: 40 },
);
const SEQUENCES = MODEL_BUDGET.lanes * MODEL_BUDGET.sequencesPerLane;
const seed = process.env['IDEM_TORTURE_SEED'];

const encryptionKeys = [{ id: 'model', key: crypto.getRandomValues(new Uint8Array(32)) }];

const targets: Array<[string, () => Promise<OpenTarget>]> = [
  ['memory', memoryTarget],
  ['redis', redisTarget],
  ['postgres', postgresTarget],
  ['dynamodb', () => dynamodbTarget()],
  [
    'encryptedStore(redis)',
    async () => {
      const target = await redisTarget();
      return { ...target, store: encryptedStore(target.store, { keys: encryptionKeys }) };
    },
  ],
];

describe.concurrent('stores against the reference model', () => {
  it.for(targets)(
    `%s answers every random sequence (${SEQUENCES}) exactly as the model`,
    { timeout: budget.scale(120_000, 3_600_000) },
    async ([name, open], { expect }) => {
      const target = await open();
      try {
        const stats = await runModel(target, {
          ...MODEL_BUDGET,
          ...(seed === undefined ? {} : { seed: Number(seed) }),
        });
        console.log(
          `[torture] model ${name}: ${stats.sequences} sequences, ${stats.commands} commands, ` +
            `${stats.storeCalls} store calls (${stats.ambiguousCalls} straddling a boundary), ` +
            `${Math.round(stats.sleptMs / 1000)} s slept; outcomes: ` +
            [...stats.outcomes]
              .sort()
              .map(([label, n]) => `${label} ${n}`)
              .join(', '),
        );
        expect(stats.storeCalls).toBeGreaterThan(SEQUENCES);
      } finally {
        await target.close();
      }
    },
  );
});
