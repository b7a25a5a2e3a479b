/**
 * Counts the round trips PostgreSQL clients start through a {@link TcpForwarder} (from
 * `@idem/test-services`; give it {@link RoundTripCounter.observe}): each `Sync` or simple `Query`
 * message is one, for the client then waits for `ReadyForQuery`.
 */
export class RoundTripCounter {
  /** Round trips started since the last `reset()`. */
  roundTrips = 0;

  /** A message counter for one connection. */
  readonly observe = (): ((chunk: Buffer) => void) => frontendMessageCounter(() => this.roundTrips++);

  reset(): void {
    this.roundTrips = 0;
  }
}

/**
 * Split the client-to-server byte stream into protocol messages and call `onRoundTrip` for each
 * `Sync` ('S') and simple `Query` ('Q'). The first message (startup) has no type byte.
 */
function frontendMessageCounter(onRoundTrip: () => void): (chunk: Buffer) => void {
  let pending = Buffer.alloc(0);
  let started = false;
  return (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    for (;;) {
      if (!started) {
        if (pending.length < 4) return;
        const length = pending.readInt32BE(0);
        if (pending.length < length) return;
        pending = pending.subarray(length);
        started = true;
        continue;
      }
      if (pending.length < 5) return;
      const length = pending.readInt32BE(1);
      if (pending.length < 1 + length) return;
      const type = String.fromCharCode(pending[0]!);
      if (type === 'S' || type === 'Q') onRoundTrip();
      pending = pending.subarray(1 + length);
    }
  };
}
