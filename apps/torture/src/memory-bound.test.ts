import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Claim, StoredResponse } from '@idem/core';
import { memoryStore } from '@idem/memory';
import { describe, expect, it } from 'vitest';
import { budget } from './budget.js';

/**
 * The memory store under millions of distinct keys: it stays within `maxEntries`, never evicts an
 * in-flight record (a standing set of claims holds its tokens to the end, and a sliding window of
 * claims settles with its own token long after), and the heap stays flat once the store is full.
 */

const KEYS = budget.scale(200_000, 5_000_000);
const MAX_ENTRIES = budget.scale(10_000, 50_000);
/** Claims held for the whole run. */
const STANDING = 500;
/** Claims that stay in flight for a while (up to this many at once) and then complete. */
const WINDOW = 200;
const HOUR = 3_600_000;

// A forced collection before each heap reading, so that the readings compare live memory, not garbage.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const heapMiB = () => {
  gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
};

const body = new TextEncoder().encode(
  '{"id":"ord_0000000000","status":"paid","amount":1200,"currency":"EUR"}',
);
const response: StoredResponse = { status: 201, headers: [['content-type', 'application/json']], body };
const claim = (token: string, ttlMs = HOUR): Claim => ({ fingerprint: 'fp', token, leaseMs: HOUR, ttlMs });

describe('memory store bound', () => {
  it(
    `stays within maxEntries over ${KEYS.toLocaleString('en')} distinct keys, never evicting an in-flight record`,
    async () => {
      const store = memoryStore({ maxEntries: MAX_ENTRIES });
      const standing = new Map<string, string>();
      for (let i = 0; i < STANDING; i++) {
        const key = `standing:${i}`;
        const token = `standing-token-${i}`;
        expect((await store.acquire(key, claim(token))).acquired).toBe(true);
        standing.set(key, token);
      }

      const window: Array<{ key: string; token: string }> = [];
      let maxSize = 0;
      let windowCompleted = 0;
      let expiredSettled = 0;
      const heap: number[] = [];
      const checkpoint = Math.floor(KEYS / 10);

      for (let i = 0; i < KEYS; i++) {
        const key = `key:${i}`;
        const token = `t${i}`;
        // One in ten lives 1 ms: expired records are the first to go.
        const shortLived = i % 10 === 3;
        const acquired = await store.acquire(key, claim(token));
        if (!acquired.acquired) throw new Error(`claim of the new key ${key} was refused`);
        if (i % 100 === 7) {
          window.push({ key, token });
          if (window.length > WINDOW) {
            const oldest = window.shift()!;
            // Completing with its own token succeeds only if nothing evicted the record meanwhile.
            if (!(await store.complete(oldest.key, oldest.token, response, HOUR)))
              throw new Error(`in-flight record ${oldest.key} was evicted while in flight`);
            windowCompleted++;
          }
        } else if (!(await store.complete(key, token, response, shortLived ? 1 : HOUR))) {
          throw new Error(`the fresh claim of ${key} was lost before its completion`);
        } else if (shortLived) expiredSettled++;
        const size = store.size;
        if (size > maxSize) maxSize = size;
        if (i % checkpoint === checkpoint - 1) heap.push(heapMiB());
      }

      for (const [key, token] of standing) {
        const record = await store.get(key);
        expect(record?.state, key).toBe('in_flight');
        expect(record?.token, key).toBe(token);
        expect(await store.extend(key, token, HOUR)).toBe(true);
      }
      for (const { key, token } of window)
        expect(await store.complete(key, token, response, HOUR), key).toBe(true);
      // The newest completed records are kept (eviction takes the oldest settled first).
      let newest = KEYS - 1;
      while (newest % 10 === 3) newest--;
      expect((await store.get(`key:${newest}`))?.state).toBe('completed');
      expect(await store.get('key:0')).toBeNull();

      const first = heap[1]!;
      const last = heap.at(-1)!;
      console.log(
        `[torture] memory bound: ${KEYS.toLocaleString('en')} keys, maxEntries ${MAX_ENTRIES}, ` +
          `max size observed ${maxSize}, final size ${store.size}; ${STANDING} standing claims held their tokens to ` +
          `the end, ${windowCompleted} more completed by their holder after ~20 000 keys in flight; ` +
          `${expiredSettled} short-lived; heapUsed after GC at each tenth (MiB): ${heap.map((mib) => mib.toFixed(1)).join(' ')}`,
      );
      expect(maxSize).toBeLessThanOrEqual(MAX_ENTRIES);
      expect(windowCompleted).toBeGreaterThan(0);
      // Once full (from the second tenth on), live memory does not grow with the number of keys.
      expect(last - first).toBeLessThan(8 + first * 0.1);
      store.close();
    },
    budget.scale(120_000, 1_800_000),
  );

  it('exceeds the bound only by in-flight records, and returns under it once they settle', async () => {
    const store = memoryStore({ maxEntries: 100 });
    const running = Array.from({ length: 150 }, (_, i) => ({ key: `busy:${i}`, token: `busy-${i}` }));
    for (const { key, token } of running)
      expect((await store.acquire(key, claim(token))).acquired).toBe(true);
    expect(store.size).toBe(150);
    for (const { key, token } of running) expect(await store.complete(key, token, response, HOUR)).toBe(true);
    for (let i = 0; i < 10; i++) await store.acquire(`later:${i}`, claim(`later-${i}`));
    expect(store.size).toBeLessThanOrEqual(100);
    store.close();
  });
});
