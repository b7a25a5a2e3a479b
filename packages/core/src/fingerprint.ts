import { canonicalJson } from './canonical-json.js';
import { sha256Hex } from './hash.js';

/** What a request asks for, as far as its fingerprint is concerned. */
export interface FingerprintInput {
  method: string;
  /** Path with query string, e.g. `/orders?dry=1`. */
  path: string;
  /** The request body bytes (empty when there is none). */
  body: Uint8Array;
  /** The request's content type; JSON types (`application/json`, `*+json`) are canonicalised. */
  contentType?: string | null | undefined;
  /** Header pairs the user chose to include (names lower-case), in the order they were chosen. */
  headers?: ReadonlyArray<readonly [string, string]>;
}

const decoder = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

/** Whether a content type is JSON (`application/json`, `application/problem+json`, ...). */
export function isJsonContentType(contentType: string | null | undefined): boolean {
  if (!contentType) return false;
  const essence = (contentType.split(';')[0] ?? '').trim().toLowerCase();
  return essence === 'application/json' || essence.endsWith('+json');
}

/**
 * SHA-256 over method, path, chosen headers and body. A JSON body is hashed in canonical form (keys
 * sorted, see `canonicalJson`), so `{"a":1,"b":2}` and `{"b":2,"a":1}` match; a body that claims to be
 * JSON but is not valid JSON is hashed as raw bytes.
 */
export async function fingerprint(input: FingerprintInput): Promise<string> {
  const head: string[] = [input.method.toUpperCase(), input.path];
  for (const [name, value] of input.headers ?? []) head.push(name.toLowerCase(), value);
  let body: string | Uint8Array = input.body;
  if (isJsonContentType(input.contentType) && input.body.length > 0) {
    const canonical = canonicalBody(input.body);
    if (canonical !== null) body = `json:${canonical}`;
  }
  // The head as a JSON array, one line: no path or header value can pass for another field or for the
  // start of the body, whatever characters it holds.
  const headBytes = encoder.encode(`${JSON.stringify(head)}\n`);
  const bodyBytes = typeof body === 'string' ? encoder.encode(body) : prefixRaw(body);
  const all = new Uint8Array(headBytes.length + bodyBytes.length);
  all.set(headBytes, 0);
  all.set(bodyBytes, headBytes.length);
  return sha256Hex(all);
}

function canonicalBody(body: Uint8Array): string | null {
  try {
    return canonicalJson(decoder.decode(body));
  } catch {
    return null; // not UTF-8
  }
}

// Raw bodies are marked so that a raw body can never hash like the canonical form of a JSON one.
function prefixRaw(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(body.length + 4);
  out.set([0x72, 0x61, 0x77, 0x3a], 0); // "raw:"
  out.set(body, 4);
  return out;
}
