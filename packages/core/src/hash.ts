const encoder = new TextEncoder();

interface SyncHash {
  update(data: string | Uint8Array): SyncHash;
  digest(encoding: 'hex'): string;
}

interface BuiltinCrypto {
  createHash?: (algorithm: string) => SyncHash;
  /** One-shot hash (Node 20.12+, 21.7+): no Hash object per call. */
  hash?: (algorithm: string, data: string | Uint8Array, encoding: 'hex') => string;
}

// Web Crypto's digest is asynchronous (a thread-pool round trip in Node: tens of microseconds, twice per
// request). Where the runtime offers Node's synchronous hash as a built-in module (Node 20.16+, Bun,
// Deno), use it; this is a runtime lookup, not an import, so edge runtimes keep using Web Crypto.
const builtinCrypto = (
  globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }
).process?.getBuiltinModule?.('node:crypto') as BuiltinCrypto | undefined;
const createHash = typeof builtinCrypto?.createHash === 'function' ? builtinCrypto.createHash : null;
const oneShot = typeof builtinCrypto?.hash === 'function' ? builtinCrypto.hash : null;

/**
 * SHA-256 of `data`, or of its parts one after the other (strings are hashed as UTF-8), as lower-case
 * hex. Runs on every runtime.
 */
export async function sha256Hex(...data: Array<string | Uint8Array>): Promise<string> {
  return sha256HexNow(data);
}

/**
 * {@link sha256Hex} for the request path: the digest itself where the runtime hashes synchronously,
 * a promise of it only where Web Crypto is all there is. Saves the promise and the tick per hash.
 */
export function sha256HexNow(data: ReadonlyArray<string | Uint8Array>): string | Promise<string> {
  if (oneShot && data.length === 1) return oneShot('sha256', data[0]!, 'hex');
  if (oneShot && data.every((part) => typeof part === 'string'))
    return oneShot('sha256', data.join(''), 'hex');
  if (createHash) {
    const hash = createHash('sha256');
    for (const part of data) hash.update(part);
    return hash.digest('hex');
  }
  return webCryptoSha256Hex(...data);
}

/** SHA-256 through Web Crypto (exported for tests, so both paths are checked). */
export async function webCryptoSha256Hex(...data: Array<string | Uint8Array>): Promise<string> {
  const parts = data.map((part) => (typeof part === 'string' ? encoder.encode(part) : part));
  const bytes = new Uint8Array(parts.reduce((length, part) => length + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.length;
  }
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  let hex = '';
  for (const byte of digest) hex += byte.toString(16).padStart(2, '0');
  return hex;
}

/** Default prefix of storage keys. */
export const DEFAULT_KEY_PREFIX = 'idem:';

/**
 * The key a store sees: `prefix + sha256(scope, key)`. The client's raw key never reaches a store, so
 * there is no delimiter injection, the length is bounded and a store dump does not reveal keys. Scope and
 * key are length-prefixed so that no two (scope, key) pairs hash the same input.
 */
export async function storageKey(key: string, scope = '', prefix = DEFAULT_KEY_PREFIX): Promise<string> {
  return storageKeyNow(key, scope, prefix);
}

/** {@link storageKey}, synchronous where the runtime hashes synchronously (see {@link sha256HexNow}). */
export function storageKeyNow(key: string, scope: string, prefix: string): string | Promise<string> {
  checkScope(scope);
  const digest = sha256HexNow([`${scope.length}:${scope}\n${key}`]);
  return typeof digest === 'string' ? prefix + digest : digest.then((hex) => prefix + hex);
}

/**
 * The storage key of an `idempotent()` job: like {@link storageKey}, in a namespace of its own. Its
 * hashed input starts with `job`, an HTTP request's with the scope's length (a digit), so that no
 * request can claim a job's record when both share a store and a prefix (a client sending the job's
 * key without credentials would otherwise have it refused with `key_mismatch`).
 */
export async function jobStorageKey(key: string, scope: string, prefix: string): Promise<string> {
  checkScope(scope);
  return prefix + (await sha256Hex(`job\n${scope.length}:${scope}\n${key}`));
}

/**
 * A scope must be a string, and well-formed Unicode: an object (`req.user` passed as it is) would be
 * `[object Object]` for every caller, one scope for all; a lone surrogate is hashed as U+FFFD, so that
 * scopes differing only there would share records.
 *
 * @throws TypeError otherwise.
 */
function checkScope(scope: unknown): asserts scope is string {
  if (typeof scope !== 'string')
    throw new TypeError(
      `[idem] scope must be a string (the caller's tenant or user id), got ${typeof scope}`,
    );
  const wellFormed = (scope as { isWellFormed?: () => boolean }).isWellFormed;
  if (wellFormed !== undefined && !wellFormed.call(scope))
    throw new TypeError('[idem] scope must be well-formed Unicode (it holds a lone surrogate)');
}
