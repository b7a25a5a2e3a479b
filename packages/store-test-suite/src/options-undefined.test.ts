import type { Store } from '@idem/core';
import { describe, expect, it } from 'vitest';
import { makeClaim, type StoreTestOptions } from './index.js';

// Under `exactOptionalPropertyTypes` (on in this repo), every optional option must accept an explicit
// `undefined`, meaning the default: `tsc` checks the types below, the tests that it is the default.
// `testStore` itself runs with such options in @idem/memory (options-undefined.test.ts).

/** An option the caller left unset, typed the way user code has it (`config.leaseMs` of `leaseMs?: number`). */
const unset = <T>(): T | undefined => undefined;

describe('options given as undefined', () => {
  it('StoreTestOptions: every optional option may be undefined, timing and its fields too', () => {
    const createStore = (): Store => {
      throw new Error('not called');
    };
    const options: StoreTestOptions[] = [
      {
        name: 'a',
        createStore,
        readRaw: undefined,
        teardown: undefined,
        timing: undefined,
        additionalTests: undefined,
      },
      { name: 'b', createStore, timing: { leaseMs: unset<number>(), ttlMs: unset<number>() } },
    ];
    expect(options).toHaveLength(2);
  });

  it('makeClaim: an override given as undefined keeps the default', () => {
    const claim = makeClaim('fp-x', {
      fingerprint: unset<string>(),
      token: unset<string>(),
      leaseMs: unset<number>(),
      ttlMs: 5,
    });
    expect(claim).toEqual({ fingerprint: 'fp-x', token: expect.any(String), leaseMs: 60_000, ttlMs: 5 });
    expect(claim.token).toMatch(/^[0-9a-f-]{36}$/);
  });
});
