import type { Store } from '@idem/core';

/** A Store that counts the calls (round trips) it forwards to the real one. */
export function countingStore(store: Store): { store: Store; calls: () => number } {
  let calls = 0;
  const count =
    <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
    (...args: A): Promise<R> => {
      calls++;
      return fn(...args);
    };
  return {
    calls: () => calls,
    store: {
      name: store.name,
      acquire: count(store.acquire.bind(store)),
      complete: count(store.complete.bind(store)),
      release: count(store.release.bind(store)),
      extend: count(store.extend.bind(store)),
      get: count(store.get.bind(store)),
      delete: count(store.delete.bind(store)),
    },
  };
}
