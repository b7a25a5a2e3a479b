import { canonicalJson } from './canonical-json.js';
import { type EngineOptions, IdempotencyEngine } from './engine.js';
import { IdempotencyError } from './errors.js';
import { DEFAULT_KEY_PREFIX, jobStorageKey, sha256Hex } from './hash.js';
import type { StoredResponse } from './store.js';

/** Turns a work's result into bytes to store and back. */
export interface ResultSerializer<R> {
  /** The bytes to keep for `result`. Throwing fails the call (`result_invalid`); the work does not rerun. */
  serialize(result: R): Uint8Array;
  /** The result back from bytes `serialize` made, for a replay. Throwing fails it with `result_invalid`. */
  deserialize(bytes: Uint8Array): R;
}

/** Options of {@link idempotent}. */
export interface IdempotentOptions<A extends unknown[], R> extends EngineOptions {
  /** The idempotency key of a call, e.g. the message id of a queue job. */
  key: (...args: A) => string;
  /** Who is asking: the same key in two scopes is two operations. Default: one shared scope. */
  scope?: ((...args: A) => string) | undefined;
  /**
   * What the call asks for; a repeat with the same key and a different fingerprint is refused with
   * `key_mismatch`. Default: the arguments, as canonical JSON.
   */
  fingerprint?: ((...args: A) => unknown) | undefined;
  /** How results are kept. Default: JSON (an `undefined` result is kept as an empty body). */
  serializer?: ResultSerializer<R> | undefined;
  /** Prefix of storage keys. Default `"idem:"`. */
  prefix?: string | undefined;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The default serializer: JSON text, with `undefined` as an empty body. */
export const jsonSerializer: ResultSerializer<unknown> = {
  serialize: (result) => (result === undefined ? new Uint8Array(0) : encoder.encode(JSON.stringify(result))),
  deserialize: (bytes) => (bytes.length === 0 ? undefined : JSON.parse(decoder.decode(bytes))),
};

/**
 * Wrap any async function (a queue consumer, a cron job, an outgoing payment call) so that it runs at
 * most once per key: the first call runs it, every repeat gets the stored result back, concurrent
 * repeats never run it twice, and a repeat with different arguments is refused (`key_mismatch`).
 *
 * A call that throws is not stored: the key is released and a repeat runs the function again. A result
 * the serializer refuses (a `BigInt` in JSON) fails that call and its repeats with `result_invalid`, but
 * the function, having run, does not run again for the key.
 *
 * @throws IdempotencyError `in_flight` when another call with the key is running (unless `wait` is set),
 *   `key_mismatch`, `store_unavailable`, `result_invalid` (the result could not be serialised, or the
 *   stored one deserialised).
 */
export function idempotent<A extends unknown[], R>(
  fn: (...args: A) => Promise<R>,
  options: IdempotentOptions<A, R>,
): (...args: A) => Promise<R> {
  const engine = new IdempotencyEngine(options);
  const serializer = (options.serializer ?? jsonSerializer) as ResultSerializer<R>;
  const prefix = options.prefix ?? DEFAULT_KEY_PREFIX;

  return async (...args: A): Promise<R> => {
    const key = options.key(...args);
    if (typeof key !== 'string' || key.length === 0) {
      throw new IdempotencyError('key_invalid', 'idempotent(): options.key returned an empty key');
    }
    const subject = options.fingerprint ? options.fingerprint(...args) : args;
    let text: string | undefined;
    try {
      text = JSON.stringify(subject);
    } catch (cause) {
      throw new TypeError('[idem] idempotent(): the arguments are not JSON; pass options.fingerprint', {
        cause,
      });
    }
    const canonical = canonicalJson(text ?? 'null');
    const [storage, print] = await Promise.all([
      jobStorageKey(key, options.scope?.(...args) ?? '', prefix),
      sha256Hex(`job\n${canonical ?? String(subject)}`),
    ]);
    let unserialisable: IdempotencyError | undefined;
    const result = await engine.run(
      { storageKey: storage, fingerprint: print },
      () => fn(...args),
      (value): StoredResponse => {
        try {
          return { status: RESULT_KEPT, headers: [], body: serializer.serialize(value) };
        } catch (cause) {
          // The function ran: releasing the key would let a repeat run it again (charge the card twice).
          unserialisable = new IdempotencyError(
            'result_invalid',
            'the result could not be serialised; it is not kept, and a repeat does not run the function again',
            { cause },
          );
          return RESULT_NOT_KEPT;
        }
      },
    );
    if (!result.replayed) {
      if (unserialisable) throw unserialisable;
      return result.value;
    }
    if (result.response.status === RESULT_NOT_KEPT.status) {
      throw new IdempotencyError(
        'result_invalid',
        'this call ran before, but its result could not be serialised, so there is none to return; it does not run again',
      );
    }
    if (result.response.omitted !== undefined) {
      throw new IdempotencyError(
        'result_invalid',
        'this call ran before, but its result was too large for the store to keep, so there is none to return; it does not run again',
        { details: { reason: result.response.omitted } },
      );
    }
    try {
      return serializer.deserialize(result.response.body);
    } catch (cause) {
      throw new IdempotencyError('result_invalid', 'the stored result could not be deserialised', { cause });
    }
  };
}

// A job's record holds its serialised result under status 200; status 204 marks a call that ran but
// whose result could not be serialised (it completes the record all the same, so it never runs twice).
const RESULT_KEPT = 200;
const RESULT_NOT_KEPT: StoredResponse = { status: 204, headers: [], body: new Uint8Array(0) };
