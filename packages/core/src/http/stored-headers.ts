/** Which response headers are stored and replayed. */
export interface StoredHeadersOptions {
  /** Store only these headers (lower-case names); the always-dropped ones stay dropped. Default: all. */
  allow?: readonly string[] | undefined;
  /** Never store these headers (lower-case names), on top of the always-dropped ones. */
  deny?: readonly string[] | undefined;
}

// Never replayed: cookies belong to the original exchange, hop-by-hop headers to the original
// connection; Date and Content-Length are recomputed for the replay.
const ALWAYS_DROPPED = new Set([
  'set-cookie',
  'set-cookie2',
  'date',
  'content-length',
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authentication-info',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'idempotent-replayed',
]);

/** Returns the function that picks, from a response's headers, those to store (names lower-cased). */
export function storedHeaderFilter(
  options: StoredHeadersOptions = {},
): (headers: ReadonlyArray<readonly [string, string]>) => Array<[string, string]> {
  const allow = options.allow ? new Set(options.allow.map((name) => name.toLowerCase())) : null;
  const deny = new Set([...ALWAYS_DROPPED, ...(options.deny ?? []).map((name) => name.toLowerCase())]);
  return (headers) => {
    // Headers the response itself names in `Connection` (in any of its values) are hop-by-hop too.
    let named: Set<string> | null = null;
    for (const [name, value] of headers) {
      if (name.toLowerCase() !== 'connection') continue;
      named ??= new Set();
      for (const token of value.split(',')) named.add(token.trim().toLowerCase());
    }
    const kept: Array<[string, string]> = [];
    for (const [rawName, value] of headers) {
      const name = rawName.toLowerCase();
      if (deny.has(name) || named?.has(name) || (allow && !allow.has(name))) continue;
      kept.push([name, value]);
    }
    return kept;
  };
}
