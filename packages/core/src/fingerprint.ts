import { canonicalJson } from './canonical-json.js';
import { sha256HexNow } from './hash.js';

/** What a request asks for, as far as its fingerprint is concerned. */
export interface FingerprintInput {
  /** The HTTP method, any case (upper-cased before hashing). */
  method: string;
  /** Path with query string, e.g. `/orders?dry=1`. */
  path: string;
  /** The request body bytes (empty when there is none). */
  body: Uint8Array;
  /** The request's content type; JSON types (`application/json`, `*+json`) are canonicalised. */
  contentType?: string | null | undefined;
  /** Header pairs the user chose to include (names lower-case), in the order they were chosen. */
  headers?: ReadonlyArray<readonly [string, string]> | undefined;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/** Whether a content type is JSON (`application/json`, `application/problem+json`, ...). */
export function isJsonContentType(contentType: string | null | undefined): boolean {
  if (!contentType) return false;
  if (contentType === 'application/json') return true; // the common case, without the parsing below
  const essence = (contentType.split(';')[0] ?? '').trim().toLowerCase();
  return essence === 'application/json' || essence.endsWith('+json');
}

/**
 * SHA-256 over method, path, chosen headers and body. A JSON body is hashed in canonical form (keys
 * sorted, see `canonicalJson`), so `{"a":1,"b":2}` and `{"b":2,"a":1}` match; a body that claims to be
 * JSON but is not valid JSON is hashed as raw bytes.
 */
export async function fingerprint(input: FingerprintInput): Promise<string> {
  return fingerprintNow(input);
}

/** {@link fingerprint}, synchronous where the runtime hashes synchronously (the request path's version). */
export function fingerprintNow(input: FingerprintInput): string | Promise<string> {
  const fields: string[] = [input.method.toUpperCase(), withoutEmptyQuery(input.path)];
  for (const [name, value] of input.headers ?? []) fields.push(name.toLowerCase(), value);
  let body: string | Uint8Array = input.body;
  if (isJsonContentType(input.contentType) && input.body.length > 0) {
    const canonical = canonicalBody(input.body);
    if (canonical !== null) body = `json:${canonical}`;
  }
  // The head as a JSON array, one line: no path or header value can pass for another field or for the
  // start of the body, whatever characters it holds. Raw bodies are marked so that a raw body can never
  // hash like the canonical form of a JSON one.
  const head = `${JSON.stringify(fields)}\n`;
  return typeof body === 'string' ? sha256HexNow([head, body]) : sha256HexNow([head, 'raw:', body]);
}

/**
 * `/orders?` as `/orders`: an empty query asks for nothing more, and bindings read the path differently
 * (a Web `Request`'s URL drops a bare `?`, Node's raw URL keeps it).
 */
function withoutEmptyQuery(path: string): string {
  return path.endsWith('?') && path.indexOf('?') === path.length - 1 ? path.slice(0, -1) : path;
}

function canonicalBody(body: Uint8Array): string | null {
  try {
    return canonicalJson(decoder.decode(body));
  } catch {
    return null; // not UTF-8
  }
}
