import { IdempotencyError } from './errors.js';

/** Options of {@link parseIdempotencyKey}. */
export interface KeyOptions {
  /** Longest accepted key, in characters, after unquoting. Default 255. */
  maxKeyLength?: number | undefined;
}

/** Default of {@link KeyOptions.maxKeyLength}: 255 characters, counted after unquoting. */
export const DEFAULT_MAX_KEY_LENGTH = 255;

const isVisibleAscii = (code: number) => code >= 0x21 && code <= 0x7e;

/**
 * Parse an `Idempotency-Key` header value. Accepts the structured-field string form of the IETF draft
 * (`"abc"`, with `\"` and `\\` escapes) and the bare form most clients send (`abc`); both mean the key
 * `abc`. The key must be 1..`maxKeyLength` visible ASCII characters.
 *
 * @throws IdempotencyError `key_missing` when the header is absent, `key_invalid` when malformed.
 */
export function parseIdempotencyKey(header: string | null | undefined, options: KeyOptions = {}): string {
  const maxLength = options.maxKeyLength ?? DEFAULT_MAX_KEY_LENGTH;
  if (header === null || header === undefined) {
    throw new IdempotencyError('key_missing', 'the Idempotency-Key header is required for this request');
  }
  // Only HTTP's own whitespace (space, tab) around the value: JavaScript's trim() would also drop
  // NBSP, BOM or U+3000, and accept `abc\u00a0` as the key `abc`.
  const value = trimHttpWhitespace(header);
  try {
    return parseValue(value, maxLength);
  } catch (error) {
    // Said in other words when the value is not one key but looks like a list or a key with parameters.
    const shape = listOrParameters(value);
    throw shape === null ? error : invalid(shape);
  }
}

function parseValue(value: string, maxLength: number): string {
  if (value.length === 0) throw invalid('the key is empty');
  // Anything longer than the longest quoted form of a valid key is refused before scanning it.
  if (value.length > maxLength * 2 + 2) throw invalid(`the key is longer than ${maxLength} characters`);

  let key: string;
  if (value.startsWith('"') || value.endsWith('"')) {
    key = unquote(value);
  } else {
    for (let i = 0; i < value.length; i++) {
      if (!isVisibleAscii(value.charCodeAt(i))) throw invalid('the key must be visible ASCII characters');
    }
    key = value;
  }
  if (key.length === 0) throw invalid('the key is empty');
  if (key.length > maxLength) throw invalid(`the key is longer than ${maxLength} characters`);
  return key;
}

function unquote(value: string): string {
  if (value.length < 2 || !value.startsWith('"') || !value.endsWith('"')) {
    throw invalid('the key is half-quoted');
  }
  let key = '';
  for (let i = 1; i < value.length - 1; i++) {
    let code = value.charCodeAt(i);
    if (code === 0x5c) {
      i++;
      code = value.charCodeAt(i);
      if (i >= value.length - 1 || (code !== 0x22 && code !== 0x5c)) {
        throw invalid('a quoted key may only escape " and \\');
      }
    } else if (code === 0x22) {
      throw invalid('a quoted key contains an unescaped quote');
    }
    if (!isVisibleAscii(code)) throw invalid('the key must be visible ASCII characters');
    key += String.fromCharCode(code);
  }
  return key;
}

/**
 * Why a value that is not a valid key is refused, when it looks like a list (the header sent twice,
 * which servers join with ", "; or a structured-field list) or a quoted key with structured-field
 * parameters; `null` otherwise (the parse's own reason then stands).
 */
function listOrParameters(value: string): string | null {
  // A space is never part of a key, so ", " is a list; `",` only after a leading quote (`x",y` is a key).
  const quoted = value.startsWith('"');
  if (/,[ \t]/.test(value) || (quoted && /"[ \t]*,/.test(value.slice(1)))) {
    return 'the header holds several values (sent more than once?); send exactly one key';
  }
  if (quoted && /"[ \t]*;/.test(value.slice(1))) {
    return 'parameters after a quoted key (";...") are not accepted; send the key alone';
  }
  return null;
}

function invalid(reason: string): IdempotencyError {
  return new IdempotencyError('key_invalid', `invalid Idempotency-Key: ${reason}`);
}

function trimHttpWhitespace(value: string): string {
  let start = 0;
  let end = value.length;
  while (start < end && isHttpWhitespace(value.charCodeAt(start))) start++;
  while (end > start && isHttpWhitespace(value.charCodeAt(end - 1))) end--;
  return start === 0 && end === value.length ? value : value.slice(start, end);
}

function isHttpWhitespace(code: number): boolean {
  return code === 0x20 || code === 0x09;
}
