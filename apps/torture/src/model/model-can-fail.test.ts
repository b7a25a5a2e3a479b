import type { Store } from '@idem/core';
import { memoryStore } from '@idem/memory';
import { expect, it } from 'vitest';
import { runModel } from './model-run.js';

// A store with the one bug that breaks exactly-once: a duplicate takes over a live lease.
function stealingStore(): Store {
  const inner = memoryStore();
  return {
    name: 'memory-that-steals-leases',
    acquire: async (key, claim) => {
      const result = await inner.acquire(key, claim);
      if (result.acquired || result.record.state !== 'in_flight') return result;
      if (result.record.fingerprint !== claim.fingerprint) return result;
      await inner.delete(key);
      return inner.acquire(key, claim);
    },
    complete: (...args) => inner.complete(...args),
    release: (...args) => inner.release(...args),
    extend: (...args) => inner.extend(...args),
    get: (key) => inner.get(key),
    delete: (key) => inner.delete(key),
  };
}

it('the model test reports (and shrinks) a store that lets a duplicate take over a live lease', async () => {
  const run = runModel(
    { store: stealingStore(), clock: { resolutionMs: 1, leaseMarginMs: 0 }, guardMs: 20 },
    { lanes: 2, sequencesPerLane: 30, maxCommands: 25 },
  );
  await expect(run).rejects.toThrow(/diverged from the reference model at claim\(/);
}, 120_000);
