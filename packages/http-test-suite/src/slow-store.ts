import type { Store } from '@idem/core';

/**
 * `store`, with every `complete` answered `ms` later (a store far away, or busy): for tests that a
 * response is held until its record is completed.
 */
export function slowCompleting(store: Store, ms: number): Store {
  return slowed(store, 'complete', ms);
}

/** `store`, with every `acquire` answered `ms` later: for tests of what happens while idem decides. */
export function slowClaiming(store: Store, ms: number): Store {
  return slowed(store, 'acquire', ms);
}

function slowed(store: Store, operation: 'acquire' | 'complete', ms: number): Store {
  const later = () => new Promise((resolve) => setTimeout(resolve, ms));
  return {
    name: store.name,
    acquire: async (key, claim) => {
      if (operation === 'acquire') await later();
      return store.acquire(key, claim);
    },
    complete: async (key, token, response, ttlMs) => {
      if (operation === 'complete') await later();
      return store.complete(key, token, response, ttlMs);
    },
    release: (key, token, ttlMs) => store.release(key, token, ttlMs),
    extend: (key, token, leaseMs) => store.extend(key, token, leaseMs),
    get: (key) => store.get(key),
    delete: (key) => store.delete(key),
  };
}
