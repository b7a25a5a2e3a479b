import type { Store } from '@idem/core';

/** The store operations a fault can target. */
export type StoreOperation = 'acquire' | 'complete' | 'release' | 'extend' | 'get' | 'delete';

/**
 * Faults of an in-process store, the stand-in for a network where there is none (the memory store):
 * - `latencyMs`: every call waits half of it before reaching the store and half after (a round trip);
 * - `mode`: `up` (normal), `fail` (calls reject at once, like a refused connection), `hang` (calls never
 *   settle, like a stalled network: only the engine's store timeout ends them);
 * - `operations`: the operations `mode` applies to (default: all).
 */
export interface StoreFaults {
  latencyMs: number;
  mode: 'up' | 'fail' | 'hang';
  operations?: StoreOperation[];
}

/** A store whose calls suffer the faults currently set with `set`. */
export interface FaultyStore extends Store {
  set(faults: StoreFaults): void;
}

/** Wrap `inner` so that its calls can be delayed, failed or hung from outside. */
export function faultyStore(inner: Store): FaultyStore {
  let faults: StoreFaults = { latencyMs: 0, mode: 'up' };
  const sleep = (ms: number) => (ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : undefined);
  async function call<R>(operation: StoreOperation, fn: () => Promise<R>): Promise<R> {
    const { latencyMs, mode, operations } = faults;
    const hit = !operations || operations.includes(operation);
    await sleep(latencyMs / 2);
    if (hit && mode === 'fail') throw new Error(`[torture] injected ${operation} failure`);
    if (hit && mode === 'hang') return new Promise<never>(() => {});
    const result = await fn();
    await sleep(latencyMs / 2);
    return result;
  }
  return {
    name: inner.name,
    set: (next) => {
      faults = next;
    },
    acquire: (key, claim) => call('acquire', () => inner.acquire(key, claim)),
    complete: (key, token, response, ttlMs) =>
      call('complete', () => inner.complete(key, token, response, ttlMs)),
    release: (key, token, ttlMs) => call('release', () => inner.release(key, token, ttlMs)),
    extend: (key, token, leaseMs) => call('extend', () => inner.extend(key, token, leaseMs)),
    get: (key) => call('get', () => inner.get(key)),
    delete: (key) => call('delete', () => inner.delete(key)),
  };
}
