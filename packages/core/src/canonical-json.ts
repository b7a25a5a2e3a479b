/** Deepest nesting {@link canonicalJson} accepts; deeper documents are not canonicalised. */
export const MAX_JSON_DEPTH = 512;

/**
 * The canonical text of a JSON document: object members sorted by key (recursively, the last of
 * duplicate keys winning, as `JSON.parse` does), arrays kept in order, insignificant white space
 * dropped, strings re-encoded so that escapes do not matter (`"\u0041"` equals `"A"`).
 *
 * Numbers keep their exact text: `JSON.parse` would round `12345678901234567891` to the value of
 * `12345678901234567890` and make two different payloads look the same.
 *
 * @returns the canonical text, or `null` when `text` is not valid JSON or nests deeper than
 * {@link MAX_JSON_DEPTH}.
 */
export function canonicalJson(text: string): string | null {
  return viaJsonParse(text) ?? parseCanonical(text);
}

// Fast path, same result: JSON.parse is native and several times quicker than the parser below, and it
// is exact when every number lexeme survives the round trip through a double. Deep documents also take
// the slow path, which owns the depth rule. `undefined` means "not decided here".
//
// Every number lexeme that may not survive the round trip matches DOUBTFUL_NUMBER: a minus zero (where a
// number may start: after `[`, `,`, `:`, white space or at the start), a fraction, an exponent, 16 digits
// or more. A leading zero (`007`) is not JSON: JSON.parse refuses it and the exact parser decides. So
// dates, zip codes and ids inside strings (`"2026-01-05"`, `"01234"`, `"sku-0"`) do not match; most
// documents do not match at all and skip the per-lexeme check. Those that do (often for digits inside
// strings: prices, versions, long ids) have their numbers checked one by one, strings skipped.
const DOUBTFUL_NUMBER = /(?<![^[,:\s])-0(?!\d)|\d\.\d|\d[eE][+-]?\d|\d{16}/;
const FAST_PATH_DEPTH = 64;

function viaJsonParse(text: string): string | undefined {
  // Before parsing: a document the exact parser must take anyway is not parsed twice.
  if (DOUBTFUL_NUMBER.test(text) && !numbersSurvive(text)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const sorted = sortedCopy(value, 0);
  return sorted === UNDECIDED ? serializeSorted(value, 0) : JSON.stringify(sorted);
}

/**
 * Whether every number lexeme of `text` outside its strings is the text of its double. One linear pass
 * whatever the text; on text that is not JSON the answer does not matter (JSON.parse refuses it next).
 */
function numbersSurvive(text: string): boolean {
  const end = text.length;
  let i = 0;
  while (i < end) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // A string: skip to its closing quote, escapes included.
      for (i++; i < end; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c) i++;
        else if (d === 0x22) break;
      }
      i++;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      let j = i + 1;
      while (j < end && isNumberPart(text.charCodeAt(j))) j++;
      const lexeme = text.slice(i, j);
      if (String(Number(lexeme)) !== lexeme) return false;
      i = j;
    } else i++;
  }
  return true;
}

/** Digits, `.`, `e`, `E`, `+` and `-`: what may follow the first character of a number lexeme. */
function isNumberPart(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x2e || c === 0x65 || c === 0x45 || c === 0x2b || c === 0x2d;
}

const UNDECIDED = Symbol('undecided');
const IN_ORDER = Symbol('in order');

/**
 * The parsed document with every object replaced by a copy whose members were inserted in sorted
 * order (arrays, and objects whose members are already in order, are updated in place: the document is
 * JSON.parse's fresh result), for one native `JSON.stringify` (much quicker than assembling the text
 * piece by piece). Plain objects, which V8 stringifies on its fast path (objects without a prototype
 * are dictionaries, several times slower); so a `__proto__` member, which would set the prototype
 * instead, is left to {@link serializeSorted}. Engines also list integer-like keys first whatever the
 * insertion order, so an object with a key starting with a digit is left to it too.
 */
function sortedCopy(value: unknown, depth: number): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (depth >= FAST_PATH_DEPTH) return UNDECIDED;
  if (Array.isArray(value)) {
    // Should a later item be UNDECIDED, serializeSorted takes over the document with the items replaced
    // so far: each is the same value with its members in another order, so it writes the same text.
    for (let i = 0; i < value.length; i++) {
      const item = value[i];
      if (item === null || typeof item !== 'object') continue;
      const sorted = sortedCopy(item, depth + 1);
      if (sorted === UNDECIDED) return UNDECIDED;
      value[i] = sorted;
    }
    return value;
  }
  const record = value as Record<string, unknown>;
  const ownKeys = Object.keys(record);
  const keys = sortedKeys(ownKeys);
  if (keys === UNDECIDED) return UNDECIDED;
  if (keys === IN_ORDER) {
    // Members already in order (as some clients send them): updated in place, like an array's items (the
    // same loop written twice: one helper for both, its accesses then polymorphic, was 6% slower on
    // nested arrays).
    for (const key of ownKeys) {
      const member = record[key];
      if (member === null || typeof member !== 'object') continue;
      const sorted = sortedCopy(member, depth + 1);
      if (sorted === UNDECIDED) return UNDECIDED;
      record[key] = sorted;
    }
    return record;
  }
  const out: Record<string, unknown> = {};
  for (const key of keys) {
    const member = sortedCopy(record[key], depth + 1);
    if (member === UNDECIDED) return UNDECIDED;
    out[key] = member;
  }
  return out;
}

// Objects in one document often share their keys (the items of an array): the last keys seen and
// their sorted order, so that such objects are sorted and checked once.
let lastKeys: readonly string[] = [];
let lastSorted: readonly string[] | typeof UNDECIDED | typeof IN_ORDER = IN_ORDER;

/**
 * `keys` in sorted order, IN_ORDER when they already are, or UNDECIDED when one of them is left to
 * {@link serializeSorted} (see above).
 */
function sortedKeys(keys: string[]): readonly string[] | typeof UNDECIDED | typeof IN_ORDER {
  if (keys.length === lastKeys.length) {
    let same = true;
    for (let i = 0; i < keys.length; i++) {
      if (keys[i] !== lastKeys[i]) {
        same = false;
        break;
      }
    }
    if (same) return lastSorted;
  }
  lastKeys = keys.slice();
  lastSorted = UNDECIDED;
  for (const key of keys) {
    const first = key.charCodeAt(0);
    if ((first >= 0x30 && first <= 0x39) || key === '__proto__') return UNDECIDED;
  }
  // `>` and the default sort compare UTF-16 code units, as the exact parser does.
  lastSorted = IN_ORDER;
  for (let i = 1; i < keys.length; i++) {
    if (keys[i - 1]! > keys[i]!) {
      lastSorted = keys.sort();
      break;
    }
  }
  return lastSorted;
}

function serializeSorted(value: unknown, depth: number): string | undefined {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (depth >= FAST_PATH_DEPTH) return undefined;
  const parts: string[] = [];
  if (Array.isArray(value)) {
    for (const item of value) {
      const part = serializeSorted(item, depth + 1);
      if (part === undefined) return undefined;
      parts.push(part);
    }
    return `[${parts.join(',')}]`;
  }
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record).sort(compareCodeUnits)) {
    const part = serializeSorted(record[key], depth + 1);
    if (part === undefined) return undefined;
    parts.push(`${JSON.stringify(key)}:${part}`);
  }
  return `{${parts.join(',')}}`;
}

/** The exact parser behind {@link canonicalJson} (its fast path must agree with it; see the tests). */
export function parseCanonical(text: string): string | null {
  const parser = new CanonicalParser(text);
  try {
    parser.skipSpace();
    const out = parser.value(0);
    parser.skipSpace();
    return parser.pos === text.length ? out : null;
  } catch (error) {
    if (error === NOT_JSON) return null;
    throw error;
  }
}

const NOT_JSON = Symbol('not json');
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
// A JSON string with its escapes (raw control characters are not allowed in JSON strings), checked by
// the regex and decoded by JSON.parse.
// biome-ignore lint/suspicious/noControlCharactersInRegex: excluding control characters is the point
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
// What JSON.stringify may write differently from the text: escapes, and surrogates (a lone one is
// escaped). A string token without either is its own canonical form.
const NEEDS_REENCODING = /[\\\ud800-\udfff]/;
const LITERALS = ['true', 'false', 'null'] as const;

/** An object member: its decoded key (for sorting) and its canonical `"key":value` text. */
interface Member {
  key: string;
  text: string;
}

function byKey(a: Member, b: Member): number {
  return compareCodeUnits(a.key, b.key);
}

/** The canonical text of a string token: the token itself, or its value re-encoded by JSON.stringify. */
function canonicalString(token: string): string {
  return NEEDS_REENCODING.test(token) ? JSON.stringify(JSON.parse(token)) : token;
}

class CanonicalParser {
  pos = 0;
  constructor(private readonly text: string) {}

  skipSpace(): void {
    const { text } = this;
    while (this.pos < text.length) {
      const c = text.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return;
      this.pos++;
    }
  }

  /** `depth`: how many objects and arrays enclose the value. */
  value(depth: number): string {
    const { text, pos } = this;
    const c = text.charCodeAt(pos);
    if (c === 0x7b || c === 0x5b) {
      if (depth >= MAX_JSON_DEPTH) throw NOT_JSON;
      return c === 0x7b ? this.object(depth) : this.array(depth);
    }
    if (c === 0x22) return canonicalString(this.match(STRING));
    for (const literal of LITERALS) {
      if (text.startsWith(literal, pos)) {
        this.pos += literal.length;
        return literal;
      }
    }
    return this.match(NUMBER);
  }

  private match(pattern: RegExp): string {
    pattern.lastIndex = this.pos;
    const found = pattern.exec(this.text);
    if (!found) throw NOT_JSON;
    this.pos += found[0].length;
    return found[0];
  }

  private expect(char: string): void {
    if (this.text[this.pos] !== char) throw NOT_JSON;
    this.pos++;
  }

  private object(depth: number): string {
    const { text } = this;
    this.pos++;
    this.skipSpace();
    if (text.charCodeAt(this.pos) === 0x7d) {
      this.pos++;
      return '{}';
    }
    const members: Member[] = [];
    for (;;) {
      this.skipSpace();
      if (text.charCodeAt(this.pos) !== 0x22) throw NOT_JSON;
      const token = this.match(STRING);
      const plain = !NEEDS_REENCODING.test(token);
      const key = plain ? token.slice(1, -1) : (JSON.parse(token) as string);
      this.skipSpace();
      this.expect(':');
      this.skipSpace();
      const value = this.value(depth + 1);
      members.push({ key, text: `${plain ? token : JSON.stringify(key)}:${value}` });
      this.skipSpace();
      if (text.charCodeAt(this.pos) === 0x7d) break;
      this.expect(',');
    }
    this.pos++;
    // A stable sort: of duplicate keys, the one last in the text is last among its equals, and it wins,
    // as in JSON.parse.
    members.sort(byKey);
    // Concatenated, not joined: `join` copies its parts into a new string at every level, so a deep
    // document cost its depth times its size (a 1 MiB body 511 levels deep: ~0.3 s of blocked event
    // loop); concatenation links the parts, and the text is copied once, when it is hashed.
    let out = '{';
    for (let i = 0; i < members.length; i++) {
      const member = members[i]!;
      if (i + 1 < members.length && members[i + 1]!.key === member.key) continue;
      out += out.length === 1 ? member.text : `,${member.text}`;
    }
    return `${out}}`;
  }

  private array(depth: number): string {
    this.pos++;
    this.skipSpace();
    if (this.text[this.pos] === ']') {
      this.pos++;
      return '[]';
    }
    // Concatenated, not joined (see object).
    let out = '[';
    for (;;) {
      this.skipSpace();
      out += out.length === 1 ? this.value(depth + 1) : `,${this.value(depth + 1)}`;
      this.skipSpace();
      if (this.text[this.pos] === ']') break;
      this.expect(',');
    }
    this.pos++;
    return `${out}]`;
  }
}

function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
