/** What the engine reports through `onEvent`, for metrics and logs. */
export interface IdempotencyEvent {
  /**
   * - `execute`: the claim succeeded and the work runs (`takeover` when it replaced a failed or
   *   lease-expired record is not distinguished: stores answer in one round trip).
   * - `replay`: a completed record was returned.
   * - `in_flight`: another holder's lease is live.
   * - `mismatch`: the key was used with another fingerprint.
   * - `store_error`: a store operation failed or timed out (`operation` says which; `failOpen` when the
   *   work ran anyway because fail-open is on).
   * - `lease_lost`: a write with our token was refused: another holder took over, the result was not
   *   stored by us.
   * - `complete_failed`: the work succeeded but no attempt to store its result was confirmed: each
   *   failed or timed out. One that timed out may still have landed (a slow store; retries then get
   *   the replay); if none did, the record stays in flight until its lease ends, and a retry after that
   *   runs the work again.
   * - `record_corrupt`: the key's record cannot be read or used (undecodable, undecryptable, a completed
   *   record without a response, a stored header no server may send); nothing ran, the client got 500.
   *   `error` says what is wrong (the problem the client gets does not).
   */
  type:
    | 'execute'
    | 'replay'
    | 'in_flight'
    | 'mismatch'
    | 'store_error'
    | 'lease_lost'
    | 'complete_failed'
    | 'record_corrupt';
  /** The storage key (a hash, never the raw client key). */
  key: string;
  /** The store's name. */
  store: string;
  /** The store operation involved, for `store_error`, `lease_lost` and (when a store reported it) `record_corrupt`. */
  operation?: 'acquire' | 'complete' | 'release' | 'extend';
  /** The underlying error, for `store_error`, `complete_failed` and `record_corrupt`. */
  error?: unknown;
  /** Set on `store_error` when fail-open let the work run without a claim. */
  failOpen?: boolean;
}

/**
 * Receives engine events. It may be async; it is not awaited. What it throws, and the rejection of a
 * promise it returns, are swallowed: observing must not break requests.
 */
export type EventListener = (event: IdempotencyEvent) => void;
