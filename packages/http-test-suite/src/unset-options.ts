import type { HttpIdempotencyOptions } from '@idem/core';

/** An option the caller left unset, typed the way user code has it (`config.ttl` of `ttl?: number`). */
export const unset = <T>(): T | undefined => undefined;

/** The HTTP options every binding takes as they are (it types `scope`, `fingerprint` and `prefix` its own way). */
type SharedHttpOptions = Omit<HttpIdempotencyOptions, 'store' | 'scope' | 'fingerprint' | 'prefix'>;

/**
 * Every optional HTTP option a binding shares with `@idem/core`, explicitly `undefined` (the
 * `storedHeaders` lists too): under `exactOptionalPropertyTypes`, a binding's options accept these only
 * if each option may be `undefined`. Every option must be listed: a new one fails to compile here.
 */
export function unsetHttpOptions(): { [Name in keyof SharedHttpOptions]-?: SharedHttpOptions[Name] } {
  return {
    ttlMs: unset<number>(),
    leaseMs: unset<number>(),
    heartbeat: unset<boolean>(),
    storeTimeoutMs: unset<number>(),
    maxTimedOutCalls: unset<number>(),
    wait: unset<false | { timeoutMs: number; pollMs?: number | undefined }>(),
    failOpen: unset<boolean>(),
    completeRetries: unset<number>(),
    onEvent: undefined,
    methods: unset<readonly string[]>(),
    required: unset<boolean>(),
    headerName: unset<string>(),
    maxKeyLength: unset<number>(),
    fingerprintHeaders: unset<readonly string[]>(),
    maxRequestBytes: unset<number>(),
    maxResponseBytes: unset<number>(),
    storeStatus: undefined,
    storedHeaders: { allow: unset<readonly string[]>(), deny: unset<readonly string[]>() },
  };
}
