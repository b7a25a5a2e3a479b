import { isHeaderPairs, recordCorrupt } from './record-checks.js';
import type { AcquireResult, IdempotencyRecord, Store, StoredResponse } from './store.js';

/**
 * Web Crypto's `CryptoKey`, named through `crypto.subtle` rather than as the global type: Node's types
 * have no global `CryptoKey` (only the DOM library does), and these declarations must compile without it.
 */
export type WebCryptoKey = Awaited<ReturnType<typeof globalThis.crypto.subtle.importKey>>;

/** Web Crypto's `KeyUsage`, likewise. */
type KeyUsage = WebCryptoKey['usages'][number];

/** One key of an {@link encryptedStore}. */
export interface EncryptionKey {
  /**
   * Names the key; stored in the clear with every response it encrypts, so that the right key decrypts
   * it after a rotation. 1 to 64 characters from `A-Z a-z 0-9 . _ -`. Never reuse an id for another key.
   */
  id: string;
  /** An AES-GCM `CryptoKey` allowed to encrypt and decrypt, or its raw bytes (16 or 32: AES-128 or AES-256). */
  key: WebCryptoKey | Uint8Array;
}

/** Options of {@link encryptedStore}. */
export interface EncryptedStoreOptions {
  /**
   * The first key encrypts every response stored from now on; every key decrypts. To rotate, put the
   * new key first and keep the old ones until the records they encrypted have expired (the engine's
   * `ttlMs`, 24 h by default).
   */
  keys: readonly EncryptionKey[];
  /**
   * Read a completed record stored without encryption as it is, instead of failing with
   * `record_corrupt`. Only for the switch-over, while records written before encryption was turned on
   * are still alive (one ttl); with it on, whoever can write to the store can plant a plaintext response.
   * Default `false`.
   */
  acceptPlaintext?: boolean | undefined;
}

/** The one header an encrypted record stores in the clear: the format version and the key id. */
export const ENCRYPTION_MARKER = 'idem-encrypted';

const FORMAT = 'v1';
const IV_BYTES = 12;
const KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;
const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Wrap a store so that stored responses are encrypted at rest with AES-GCM (Web Crypto, any runtime):
 * the status stays readable, the headers and body are sealed. Use it when the store is less trusted
 * than the application (a shared or managed Redis, its snapshots and replicas, database backups), e.g.
 * for payment responses.
 *
 * - `complete` seals the response's headers and body under the first key, with a fresh random IV, bound
 *   to the storage key, the key id, the status and the omitted marker (so a sealed response cannot be
 *   moved to another key, nor its status changed, without detection).
 * - `get` and `acquire` open it again with the key its id names.
 * - A response sealed under an unknown key id, or altered in any way, is `IdempotencyError`
 *   `record_corrupt` (the HTTP layer answers 500 and runs nothing).
 *
 * What stays readable in the store: the state, fingerprint (a hash), fencing token, times, the status and
 * the key id. Store-specific extras (`memoryStore().size`, PostgreSQL's `completeWithin`) are not on the
 * wrapper: a response completed through the inner store directly is not encrypted.
 *
 * ```ts
 * const store = encryptedStore(redisStore({ client }), {
 *   keys: [{ id: '2025-06', key: base64ToBytes(process.env.IDEM_KEY_2025_06!) }],
 * });
 * ```
 *
 * @throws TypeError for no keys, a duplicated or malformed id, or a key that is not AES-GCM of 128 or 256 bits.
 */
export function encryptedStore(store: Store, options: EncryptedStoreOptions): Store {
  const keys = options?.keys;
  if (!Array.isArray(keys) || keys.length === 0)
    throw new TypeError('[idem] encryptedStore needs at least one key');
  const byId = new Map<string, Promise<WebCryptoKey>>();
  for (const [index, { id, key }] of keys.entries()) {
    if (typeof id !== 'string' || !KEY_ID.test(id))
      throw new TypeError(
        `[idem] encryption key id ${JSON.stringify(id)} must be 1-64 characters of A-Z a-z 0-9 . _ -`,
      );
    if (byId.has(id)) throw new TypeError(`[idem] encryption key id "${id}" is used twice`);
    const imported = importKey(id, key, index === 0 ? ['encrypt', 'decrypt'] : ['decrypt']);
    // Checked above; should the runtime still refuse the key, that is reported when it is used.
    imported.catch(() => {});
    byId.set(id, imported);
  }
  const current = keys[0]!.id;
  const acceptPlaintext = options.acceptPlaintext ?? false;

  // "the stored response <what>", in the message every store uses for a record it cannot read.
  const corrupt = (key: string, what: string, cause?: unknown) =>
    recordCorrupt(store.name, key, `the stored response ${what}`, cause);

  async function seal(key: string, response: StoredResponse): Promise<StoredResponse> {
    const headers = encoder.encode(JSON.stringify(response.headers));
    const plain = new Uint8Array(4 + headers.length + response.body.length);
    new DataView(plain.buffer).setUint32(0, headers.length);
    plain.set(headers, 4);
    plain.set(response.body, 4 + headers.length);
    const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
    const sealed = await crypto.subtle.encrypt(
      { name: 'AES-GCM', iv, additionalData: associatedData(key, current, response) },
      await byId.get(current)!,
      plain,
    );
    const body = new Uint8Array(IV_BYTES + sealed.byteLength);
    body.set(iv, 0);
    body.set(new Uint8Array(sealed), IV_BYTES);
    const out: StoredResponse = {
      status: response.status,
      headers: [[ENCRYPTION_MARKER, `${FORMAT};${current}`]],
      body,
    };
    if (response.omitted !== undefined) out.omitted = response.omitted;
    return out;
  }

  async function open(key: string, response: StoredResponse): Promise<StoredResponse> {
    // A store that could not keep the sealed response (too large for it) keeps the record without its
    // body, and perhaps without the marker: there is nothing to open, and the caller is told it was not
    // kept. (Unauthenticated, like a deletion: whoever can write the store can make any record look so.)
    const stored = response.headers;
    const markerOnly = stored.length === 0 || (stored.length === 1 && stored[0]![0] === ENCRYPTION_MARKER);
    if (response.omitted !== undefined && response.body.length === 0 && markerOnly) {
      return { status: response.status, headers: [], body: response.body, omitted: response.omitted };
    }
    const markers = response.headers.filter(([name]) => name === ENCRYPTION_MARKER);
    if (markers.length === 0) {
      if (acceptPlaintext) return response;
      throw corrupt(key, 'is not encrypted');
    }
    const marker = markers[0]![1];
    const [format, id = ''] = marker.split(';', 2);
    if (markers.length > 1 || response.headers.length > 1 || format !== FORMAT)
      throw corrupt(key, `has an unknown encryption marker ${JSON.stringify(marker)}`);
    const cryptoKey = byId.get(id);
    if (cryptoKey === undefined)
      throw corrupt(key, `was encrypted with the unknown key id ${JSON.stringify(id)}`);
    if (response.body.length < IV_BYTES + 16) throw corrupt(key, 'is too short to be encrypted');
    let plain: Uint8Array;
    try {
      plain = new Uint8Array(
        await crypto.subtle.decrypt(
          {
            name: 'AES-GCM',
            iv: response.body.subarray(0, IV_BYTES) as Uint8Array<ArrayBuffer>,
            additionalData: associatedData(key, id, response),
          },
          await cryptoKey,
          response.body.subarray(IV_BYTES) as Uint8Array<ArrayBuffer>,
        ),
      );
    } catch (error) {
      throw corrupt(
        key,
        `fails authentication under key "${id}" (altered, or moved from another key)`,
        error,
      );
    }
    // Authenticated, so written by a sealer with one of our keys; unreadable only if it was not this one.
    let length = 0;
    let headers: unknown;
    try {
      length = new DataView(plain.buffer, plain.byteOffset, plain.byteLength).getUint32(0);
      headers = JSON.parse(decoder.decode(plain.subarray(4, 4 + length)));
    } catch (error) {
      throw corrupt(key, 'has unreadable sealed headers', error);
    }
    if (!isHeaderPairs(headers)) throw corrupt(key, 'has unreadable sealed headers');
    const out: StoredResponse = { status: response.status, headers, body: plain.slice(4 + length) };
    if (response.omitted !== undefined) out.omitted = response.omitted;
    return out;
  }

  async function openRecord(key: string, record: IdempotencyRecord): Promise<IdempotencyRecord> {
    return record.response === null ? record : { ...record, response: await open(key, record.response) };
  }

  return {
    name: store.name,
    async acquire(key, claim): Promise<AcquireResult> {
      const result = await store.acquire(key, claim);
      return result.acquired ? result : { acquired: false, record: await openRecord(key, result.record) };
    },
    async complete(key, token, response, ttlMs) {
      return store.complete(key, token, await seal(key, response), ttlMs);
    },
    release: (key, token, ttlMs) => store.release(key, token, ttlMs),
    extend: (key, token, leaseMs) => store.extend(key, token, leaseMs),
    async get(key) {
      const record = await store.get(key);
      return record === null ? null : openRecord(key, record);
    },
    delete: (key) => store.delete(key),
  };
}

/** What the tag authenticates besides the sealed bytes: where the response lives and what it claims to be. */
function associatedData(key: string, keyId: string, response: StoredResponse): Uint8Array<ArrayBuffer> {
  return encoder.encode(
    JSON.stringify([ENCRYPTION_MARKER, FORMAT, key, keyId, response.status, response.omitted ?? null]),
  );
}

/** Checks `key` now (throwing a TypeError) and imports raw bytes (asynchronously, as Web Crypto does). */
function importKey(id: string, key: WebCryptoKey | Uint8Array, usages: KeyUsage[]): Promise<WebCryptoKey> {
  if (ArrayBuffer.isView(key)) {
    if (key.byteLength !== 16 && key.byteLength !== 32)
      throw new TypeError(
        `[idem] encryption key "${id}" must be 16 or 32 bytes (AES-128 or AES-256), not ${key.byteLength}`,
      );
    return crypto.subtle.importKey(
      'raw',
      new Uint8Array(key as Uint8Array),
      { name: 'AES-GCM' },
      false,
      usages,
    );
  }
  const algorithm = key?.algorithm as { name?: string; length?: number } | undefined;
  if (algorithm?.name !== 'AES-GCM' || (algorithm.length !== 128 && algorithm.length !== 256))
    throw new TypeError(`[idem] encryption key "${id}" must be an AES-GCM CryptoKey of 128 or 256 bits`);
  const missing = usages.filter((usage) => !key.usages.includes(usage));
  if (missing.length > 0)
    throw new TypeError(`[idem] encryption key "${id}" must allow ${missing.join(' and ')}`);
  return Promise.resolve(key);
}
