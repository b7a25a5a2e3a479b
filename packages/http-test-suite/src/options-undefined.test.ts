import { describe, expect, it } from 'vitest';
import type { HttpBindingTestOptions, SuiteCases } from './index.js';

// Under `exactOptionalPropertyTypes` (on in this repo), every optional option must accept an explicit
// `undefined`, meaning the default: `tsc` checks the types below. (`testHttpBinding` reads each with
// `??` or a truth test; running the suite needs a binding, which the binding packages provide.)

/** An option the caller left unset, typed the way user code has it (`config.only` of `only?: SuiteCases`). */
const unset = <T>(): T | undefined => undefined;

describe('options given as undefined', () => {
  it('HttpBindingTestOptions: every optional option may be undefined', () => {
    const options: HttpBindingTestOptions = {
      name: 'binding',
      start: () => Promise.reject(new Error('not started')),
      store: undefined,
      teardown: undefined,
      only: unset<SuiteCases>(),
      thrownStatus: unset<number>(),
    };
    expect(options.name).toBe('binding');
  });
});
