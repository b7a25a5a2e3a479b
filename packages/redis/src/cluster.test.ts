import { type Store, transition } from '@idem/core';
import { makeClaim, makeResponse, testStore, uniqueKey } from '@idem/store-test-suite';
import { RedisClusterProcesses } from '@idem/test-services';
import { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisStore } from './index.js';

// A real 3-master Redis Cluster of private redis-server processes (about a second to start). Started in
// a hook, not at import: a run that filters every case of this file out skips the hooks, and a cluster
// started at import would then outlive the run.
let cluster: RedisClusterProcesses;
let client: Cluster;
beforeAll(async () => {
  cluster = await RedisClusterProcesses.start(3);
  client = new Cluster(cluster.startupNodes, { redisOptions: { maxRetriesPerRequest: 0 } });
});
afterAll(async () => {
  await client?.quit();
  await cluster?.stop();
});

testStore({
  name: 'redis on a 3-master Cluster',
  createStore: () => redisStore({ client }),
  readRaw: async (_store, key) => {
    const pttl = await client.pttl(key);
    if (pttl === -2) return null;
    return { expiresInMs: pttl < 0 ? null : pttl };
  },
  additionalTests: (getStore: () => Store) => {
    describe('on a cluster', () => {
      it('spreads records over every master, each script running on its key’s own node', async () => {
        const store = getStore();
        const keys = Array.from({ length: 30 }, () => uniqueKey('slot'));
        for (const key of keys) {
          const claim = makeClaim();
          expect(await store.acquire(key, claim)).toEqual({ acquired: true });
          expect(await store.extend(key, claim.token, 60_000)).toBe(true);
          expect(await store.complete(key, claim.token, makeResponse(), 60_000)).toBe(true);
          const blocked = await store.acquire(key, makeClaim());
          expect(blocked.acquired).toBe(false);
          if (!blocked.acquired) {
            expect(
              transition(blocked.record, { type: 'claim', claim: makeClaim() }, Date.now()).outcome,
            ).toBe('replay');
          }
        }
        const holders = new Set<number>();
        for (const node of cluster.nodes) {
          const direct = new Redis(node.port, '127.0.0.1');
          try {
            for (const key of keys) {
              // A node holds a key only if it owns the key's slot; EXISTS on another node is answered
              // with a MOVED error instead.
              const exists = await direct.exists(key).catch(() => 0);
              if (exists === 1) holders.add(node.port);
            }
          } finally {
            direct.disconnect();
          }
        }
        expect(holders.size).toBe(3);
      });

      it('recovers from SCRIPT FLUSH on every node', async () => {
        const store = getStore();
        await Promise.all(client.nodes('master').map((node) => node.script('FLUSH')));
        for (let i = 0; i < 10; i++) {
          const key = uniqueKey('flush');
          const claim = makeClaim();
          expect(await store.acquire(key, claim)).toEqual({ acquired: true });
          expect(await store.complete(key, claim.token, makeResponse(), 60_000)).toBe(true);
          expect((await store.get(key))?.response).toEqual(makeResponse());
        }
      });
    });
  },
});
