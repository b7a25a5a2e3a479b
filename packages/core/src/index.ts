export { canonicalJson, MAX_JSON_DEPTH } from './canonical-json.js';
export {
  ENCRYPTION_MARKER,
  type EncryptedStoreOptions,
  type EncryptionKey,
  encryptedStore,
  type WebCryptoKey,
} from './encryption.js';
export {
  type EngineOptions,
  IdempotencyEngine,
  type Operation,
  type RunResult,
  type Settle,
} from './engine.js';
export {
  IdempotencyError,
  type IdempotencyErrorCode,
  type IdempotencyErrorDetails,
  isIdempotencyError,
  type ProblemDetails,
  problemFor,
  problemTypeForCode,
  statusForCode,
} from './errors.js';
export type { EventListener, IdempotencyEvent } from './events.js';
export { type FingerprintInput, fingerprint, isJsonContentType } from './fingerprint.js';
export { DEFAULT_KEY_PREFIX, sha256Hex, storageKey } from './hash.js';
export * from './http/index.js';
export { type IdempotentOptions, idempotent, jsonSerializer, type ResultSerializer } from './idempotent.js';
export { DEFAULT_MAX_KEY_LENGTH, type KeyOptions, parseIdempotencyKey } from './key.js';
export { isHeaderPairs, isOmittedBody, isRecordState, recordCorrupt } from './record-checks.js';
export { type Outcome, type StateEvent, type Transition, transition } from './state-machine.js';
export type {
  AcquireResult,
  Claim,
  IdempotencyRecord,
  OmittedBody,
  RecordState,
  Store,
  StoredResponse,
} from './store.js';
