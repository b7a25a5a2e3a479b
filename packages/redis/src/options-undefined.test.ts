import { makeClaim, uniqueKey } from '@idem/store-test-suite';
import { redisUrl } from '@idem/test-services';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { type RedisStoreOptions, redisStore } from './index.js';

// Under `exactOptionalPropertyTypes` (on in this repo), every optional option must accept an explicit
// `undefined`, meaning the default: `tsc` checks the types below, the tests that it is the default.

/** An option the caller left unset, typed the way user code has it (`config.prefix` of `prefix?: string`). */
const unset = <T>(): T | undefined => undefined;

const client = new Redis(await redisUrl(), { maxRetriesPerRequest: 0 });
afterAll(() => client.quit());

describe('redisStore with every option undefined', () => {
  it('writes its keys without a prefix (default "")', async () => {
    const options: RedisStoreOptions = { client, prefix: unset<string>() };
    const store = redisStore(options);
    const key = uniqueKey('options-undefined');
    const claim = makeClaim();
    expect(await store.acquire(key, claim)).toEqual({ acquired: true });
    expect(await client.exists(key)).toBe(1);
    expect(await client.exists(`undefined${key}`)).toBe(0);
    expect((await store.get(key))?.token).toBe(claim.token);
    await store.delete(key);
  });
});
