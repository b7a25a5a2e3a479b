import { makeClaim, makeResponse, type StoreTestOptions, testStore } from '@idem/store-test-suite';
import { describe, expect, it } from 'vitest';
import { type MemoryStore, type MemoryStoreOptions, memoryStore } from './index.js';

// Under `exactOptionalPropertyTypes` (on in this repo), every optional option must accept an explicit
// `undefined`, meaning the default: `tsc` checks the types below, the tests that it is the default.

/** An option the caller left unset, typed the way user code has it (`config.max` of `max?: number`). */
const unset = <T>(): T | undefined => undefined;

const allUndefined = (): { [Name in keyof MemoryStoreOptions]-?: MemoryStoreOptions[Name] } => ({
  maxEntries: unset<number>(),
  maxBytes: unset<number>(),
  cleanupIntervalMs: unset<number>(),
  now: unset<() => number>(),
  name: unset<string>(),
});

describe('memoryStore with every option undefined', () => {
  it('takes the defaults: named "memory", on the real clock, keeping what fits the default bounds', async () => {
    const store = memoryStore(allUndefined());
    try {
      expect(store.name).toBe('memory');
      const before = Date.now();
      for (let i = 0; i < 200; i++) {
        const claim = makeClaim('fp', { leaseMs: 5_000 });
        expect(await store.acquire(`k${i}`, claim)).toEqual({ acquired: true });
        expect(await store.complete(`k${i}`, claim.token, makeResponse(), 60_000)).toBe(true);
      }
      expect(store.size).toBe(200);
      const first = await store.get('k0');
      expect(first?.state).toBe('completed');
      expect(first!.expiresAt).toBeGreaterThanOrEqual(before + 60_000);
      expect(first!.expiresAt).toBeLessThanOrEqual(Date.now() + 60_000);
    } finally {
      store.close();
    }
  });
});

// The conformance suite, its optional options undefined too (default timing), on such a store.
const suite: StoreTestOptions = {
  name: 'memory (options undefined)',
  createStore: () => memoryStore(allUndefined()),
  readRaw: undefined,
  teardown: (store) => (store as MemoryStore).close(),
  timing: { leaseMs: unset<number>(), ttlMs: unset<number>() },
  additionalTests: undefined,
};
testStore(suite);
