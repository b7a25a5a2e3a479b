import type { Store } from '@idem/core';

/**
 * `store`, with every `complete` answered `ms` later (a store far away, or busy): for tests that a
 * response is held until its record is completed.
 */
export function slowCompleting(store: Store, ms: number): Store {
  return {
    name: store.name,
    acquire: (key, claim) => store.acquire(key, claim),
    complete: async (key, token, response, ttlMs) => {
      await new Promise((resolve) => setTimeout(resolve, ms));
      return store.complete(key, token, response, ttlMs);
    },
    release: (key, token, ttlMs) => store.release(key, token, ttlMs),
    extend: (key, token, leaseMs) => store.extend(key, token, leaseMs),
    get: (key) => store.get(key),
    delete: (key) => store.delete(key),
  };
}
