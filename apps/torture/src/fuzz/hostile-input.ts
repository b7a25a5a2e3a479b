import {
  type IdempotencyErrorCode,
  isIdempotencyError,
  parseIdempotencyKey,
  problemTypeForCode,
} from '@idem/core';
import fc from 'fast-check';
import type { RawRequest, RawResponse } from './raw-http.js';
import { LIMITS, type RouteAnswer } from './servers.js';

/**
 * Hostile requests and the oracle that judges the answers. Every case is a raw HTTP/1.1 request (so
 * that control characters, raw bytes, duplicated and oversized headers reach the server as sent).
 *
 * The oracle, for every answer: no 5xx at all (no fuzz route answers one on purpose); an
 * `application/problem+json` answer is a 4xx whose body has the stable `type` of its `code` and the
 * response's status; any other 4xx is one a parser may send (400, 413, 415, 431); a 2xx comes from
 * the route that was asked for (or is its replay). Where the input decides the outcome exactly (a key
 * the server sees intact, a body over the limit, duplicated keys, an oversized header), the exact
 * answer is required.
 */

/** A generated case: the request and what the oracle may expect of it. */
export interface HostileCase {
  category: 'key' | 'body' | 'headers' | 'chaos';
  request: RawRequest;
  /** When set, the only acceptable outcome. */
  expect?: Expectation;
  /** Short description for the report. */
  label: string;
}

type Expectation =
  | { kind: 'problem'; status: number; code: IdempotencyErrorCode }
  /** The route ran (or was replayed) and saw this key. */
  | { kind: 'route'; key: string }
  /** A rejection before idem: Node's HTTP parser (bytes HTTP does not allow). */
  | { kind: 'parser'; status: 400 | 431 }
  | { kind: 'too-large' };

const encoder = new TextEncoder();

let uniqueKeys = 0;
/** A key (or scope) no other case uses, so that the route runs. */
const freshKey = () => `fuzz-${process.pid}-${++uniqueKeys}-${Math.random().toString(36).slice(2, 8)}`;
const latin1 = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);
/** Header values without line breaks (a line break would make the value another header line). */
const headerText = (maxLength: number) =>
  fc.string({ unit: 'binary-ascii', maxLength }).map((text) => text.replace(/[\r\n]/g, ' '));
const visible = fc.string({
  unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)),
  minLength: 1,
  maxLength: 40,
});

/** Raw bytes of hostile `Idempotency-Key` values. */
const keyBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.constant(new Uint8Array(0)),
  visible.map(latin1),
  // Any byte: control characters, DEL, obs-text.
  fc.uint8Array({ minLength: 1, maxLength: 64 }),
  fc.string({ unit: 'binary-ascii', maxLength: 64 }).map(latin1),
  // Non-ASCII text, as UTF-8.
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }).map((text) => encoder.encode(text)),
  // Quoted, half-quoted, escaped.
  visible.map((key) => latin1(`"${key.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`)),
  visible.map((key) => latin1(`"${key}`)),
  visible.map((key) => latin1(`${key}"`)),
  fc.constantFrom('"a\\"b"', '"a\\\\b"', '"a\\xb"', '"a"b"', '""', '"', '"\\"', '" a "', "'a'").map(latin1),
  // Around the length limit (255), and far beyond it.
  fc.integer({ min: 250, max: 260 }).map((n) => latin1('k'.repeat(n))),
  fc.integer({ min: 250, max: 260 }).map((n) => latin1(`"${'k'.repeat(n)}"`)),
  fc.integer({ min: 1_000, max: 40_000 }).map((n) => latin1('k'.repeat(n))),
  // Surrounded by white space, which HTTP strips.
  fc
    .tuple(fc.constantFrom(' ', '\t', '  '), visible, fc.constantFrom(' ', '\t', ''))
    .map(([a, key, b]) => latin1(`${a}${key}${b}`)),
);

/** Bytes HTTP allows in a header value as Node parses it: tab, space, visible ASCII and obs-text. */
const httpValueByte = (byte: number) => byte === 0x09 || (byte >= 0x20 && byte !== 0x7f);

/** What idem decides for a key header Node accepted: its key, or the problem it answers. */
function keyDecision(bytes: Uint8Array): Expectation {
  // Node decodes header values as Latin-1 and strips the white space around them.
  const value = Buffer.from(bytes)
    .toString('latin1')
    .replace(/^[ \t]+|[ \t]+$/g, '');
  try {
    return { kind: 'route', key: parseIdempotencyKey(value) };
  } catch (error) {
    if (isIdempotencyError(error)) return { kind: 'problem', status: 400, code: error.code };
    throw error;
  }
}

const HEADER_ROOM = 15_000; // Node refuses (431) header sections over 16 KiB; below this it never does.

function keyCase(bytes: Uint8Array): HostileCase {
  // A scope of its own: the same key sent by another case with another request would rightly get 422.
  const request: RawRequest = {
    method: 'POST',
    path: '/echo',
    headers: [
      ['Authorization', `key-case-${freshKey()}`],
      ['Idempotency-Key', bytes],
    ],
    body: new Uint8Array(0),
  };
  let expectation: Expectation | undefined;
  // A line break ends the header (what follows is another header line, or garbage): no exact outcome.
  if (bytes.includes(0x0a) || bytes.includes(0x0d)) expectation = undefined;
  else if (![...bytes].every(httpValueByte)) expectation = { kind: 'parser', status: 400 };
  else if (bytes.length > 17_000) expectation = { kind: 'parser', status: 431 };
  else if (bytes.length < HEADER_ROOM) expectation = keyDecision(bytes);
  const shown = Buffer.from(bytes.subarray(0, 40)).toString('latin1');
  return {
    category: 'key',
    request,
    ...(expectation && { expect: expectation }),
    label: `key ${JSON.stringify(shown)}${bytes.length > 40 ? `... (${bytes.length} B)` : ''}`,
  };
}

/** Hostile bodies, with the content type they come with. */
const bodies: fc.Arbitrary<{ body: Uint8Array; contentType: string | null; label: string }> = fc.oneof(
  fc
    .string({ maxLength: 200 })
    .map((text) => ({ body: encoder.encode(text), contentType: 'application/json', label: 'text as JSON' })),
  fc
    .json({ maxDepth: 6 })
    .map((text) => ({ body: encoder.encode(text), contentType: 'application/json', label: 'valid JSON' })),
  fc.tuple(fc.json({ maxDepth: 3 }), fc.integer({ min: 1, max: 20 })).map(([text, cut]) => ({
    body: encoder.encode(text.slice(0, -cut)),
    contentType: 'application/json',
    label: 'truncated JSON',
  })),
  // Deep nesting: arrays, objects, and mixed, up to 100k levels.
  fc
    .tuple(
      fc.constantFrom('[', '{"a":', '[{"a":'),
      fc.oneof(fc.constantFrom(512, 513, 10_000, 100_000), fc.integer({ min: 500, max: 100_000 })),
      fc.boolean(),
    )
    .map(([open, depth, closed]) => {
      const close = open === '[' ? ']' : open === '{"a":' ? '}' : '}]';
      const text = open.repeat(depth) + (open === '[' ? '' : '1') + (closed ? close.repeat(depth) : '');
      return {
        body: encoder.encode(text),
        contentType: 'application/json',
        label: `nested ${depth} x ${open}${closed ? '' : ' (unclosed)'}`,
      };
    }),
  fc
    .uint8Array({ maxLength: 512 })
    .map((body) => ({ body, contentType: 'application/json', label: 'binary as JSON' })),
  fc
    .uint8Array({ maxLength: 512 })
    .map((body) => ({ body, contentType: 'application/octet-stream', label: 'binary' })),
  fc
    .tuple(
      fc.json({ maxDepth: 2 }),
      fc.constantFrom(
        'text/plain',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=',
        'application/json; charset=utf-42',
        'application/json; charset=latin1',
        'application/vnd.api+json',
        '*/*',
        ';;;',
        'application/json, text/plain',
      ),
    )
    .map(([text, contentType]) => ({
      body: encoder.encode(text),
      contentType,
      label: `JSON as ${contentType}`,
    })),
  fc
    .json({ maxDepth: 2 })
    .map((text) => ({ body: encoder.encode(text), contentType: null, label: 'JSON without content type' })),
  fc
    .constantFrom(
      '{"__proto__":{"polluted":1}}',
      '{"constructor":{"prototype":{"polluted":1}}}',
      '\ufeff{}',
      '{"a":1,"a":2}',
      '1e999999',
      '-0',
      '"\\ud800"',
      '[1,]',
    )
    .map((text) => ({
      body: encoder.encode(text),
      contentType: 'application/json',
      label: `tricky JSON ${text}`,
    })),
  // Huge: just under, at, and over the request limit.
  fc.constantFrom(-1, 0, 1, 4096).map((delta) => ({
    body: new Uint8Array(LIMITS.maxRequestBytes + delta).fill(0x61),
    contentType: 'application/octet-stream',
    label: `${LIMITS.maxRequestBytes + delta} bytes`,
  })),
);

const routes = fc.constantFrom('/json', '/raw', '/echo');

function bodyCase(
  route: string,
  input: { body: Uint8Array; contentType: string | null; label: string },
  chunked: boolean,
  method: string,
): HostileCase {
  const headers: Array<[string, string]> = [['Idempotency-Key', freshKey()]];
  if (input.contentType !== null) headers.push(['Content-Type', input.contentType]);
  const tooLarge = input.body.length > LIMITS.maxRequestBytes;
  return {
    category: 'body',
    request: { method, path: route, headers, body: input.body, chunked },
    ...(tooLarge && { expect: { kind: 'too-large' as const } }),
    label: `${method} ${route} ${input.label}${chunked ? ' (chunked)' : ''}`,
  };
}

/** Duplicated and oversized headers. */
const headerCases: fc.Arbitrary<HostileCase> = fc.oneof(
  fc.tuple(visible, visible).map(
    ([a, b]): HostileCase => ({
      category: 'headers',
      request: {
        method: 'POST',
        path: '/echo',
        headers: [
          ['Idempotency-Key', a],
          ['Idempotency-Key', b],
        ],
        body: new Uint8Array(0),
      },
      // Repeated headers reach idem joined with ", ": a space, never a valid key.
      expect: { kind: 'problem', status: 400, code: 'key_invalid' },
      label: 'two Idempotency-Key headers',
    }),
  ),
  fc.integer({ min: 17_000, max: 64_000 }).map(
    (size): HostileCase => ({
      category: 'headers',
      request: {
        method: 'POST',
        path: '/echo',
        headers: [
          ['Idempotency-Key', freshKey()],
          ['X-Junk', 'j'.repeat(size)],
        ],
        body: new Uint8Array(0),
      },
      expect: { kind: 'parser', status: 431 },
      label: `a ${size} B header`,
    }),
  ),
  fc.integer({ min: 10, max: 3_000 }).map((count): HostileCase => {
    const key = freshKey();
    const headers: Array<[string, string]> = [['Idempotency-Key', key]];
    for (let i = 0; i < count; i++) headers.push([`X-H${i % 50}`, 'v']);
    return {
      category: 'headers',
      request: { method: 'POST', path: '/echo', headers, body: new Uint8Array(0) },
      ...(count * 9 < HEADER_ROOM && { expect: { kind: 'route' as const, key } }),
      label: `${count} extra headers`,
    };
  }),
  fc
    .tuple(
      fc.constantFrom('Content-Type', 'Content-Length', 'Authorization', 'Transfer-Encoding', 'Host'),
      headerText(30),
      fc.json({ maxDepth: 1 }),
    )
    .map(
      ([name, value, text]): HostileCase => ({
        category: 'headers',
        request: {
          method: 'POST',
          path: '/json',
          headers: [
            ['Idempotency-Key', freshKey()],
            ['Content-Type', 'application/json'],
            [name, value],
          ],
          body: encoder.encode(text),
        },
        label: `duplicated ${name}: ${JSON.stringify(value)}`,
      }),
    ),
  fc.integer({ min: 1_000, max: 12_000 }).map((size): HostileCase => {
    const key = freshKey();
    return {
      category: 'headers',
      request: {
        method: 'POST',
        path: '/echo',
        headers: [
          ['Idempotency-Key', key],
          ['Authorization', `Bearer ${'a'.repeat(size)}`],
        ],
        body: new Uint8Array(0),
      },
      expect: { kind: 'route', key },
      label: `a ${size} B Authorization`,
    };
  }),
);

/** Anything together: hostile key, body, content type, method, route, chunking. */
const chaosCases: fc.Arbitrary<HostileCase> = fc
  .tuple(keyBytes, bodies, routes, fc.boolean(), fc.constantFrom('POST', 'PATCH'), fc.option(headerText(40)))
  .map(([key, input, route, chunked, method, authorization]) => {
    const headers: Array<[string, string | Uint8Array]> = [['Idempotency-Key', key]];
    if (input.contentType !== null) headers.push(['Content-Type', input.contentType]);
    if (authorization !== null) headers.push(['Authorization', authorization]);
    return {
      category: 'chaos' as const,
      request: { method, path: route, headers, body: input.body, chunked },
      label: `chaos ${method} ${route} ${input.label}`,
    };
  });

/** Shown by fast-check as its label and request line (a 2 MiB body printed byte by byte helps nobody). */
function printable(hostile: HostileCase): HostileCase {
  const { request } = hostile;
  const headers = request.headers
    .map(([name, value]) => {
      const text = typeof value === 'string' ? value : Buffer.from(value).toString('latin1');
      return `${name}: ${JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}... (${text.length} chars)` : text)}`;
    })
    .join(', ');
  const body =
    request.body.length > 80
      ? `${request.body.length} B starting ${JSON.stringify(Buffer.from(request.body.subarray(0, 40)).toString('latin1'))}`
      : JSON.stringify(Buffer.from(request.body).toString('latin1'));
  return Object.assign(hostile, {
    [fc.toStringMethod]: () =>
      `${hostile.label} | ${request.method} ${request.path}${request.chunked ? ' chunked' : ''} | ${headers} | body ${body}`,
  });
}

/** Every hostile case, mixed. */
export const hostileCases: fc.Arbitrary<HostileCase> = fc
  .oneof(
    { weight: 3, arbitrary: keyBytes.map(keyCase) },
    {
      weight: 3,
      arbitrary: fc
        .tuple(routes, bodies, fc.boolean(), fc.constantFrom('POST', 'PATCH'))
        .map(([route, input, chunked, method]) => bodyCase(route, input, chunked, method)),
    },
    { weight: 2, arbitrary: headerCases },
    { weight: 2, arbitrary: chaosCases },
  )
  .map(printable);

/** Why `response` is not an acceptable answer to `hostile`, or null when it is. */
export function judge(hostile: HostileCase, response: RawResponse): string | null {
  const header = (name: string) => response.headers.find(([key]) => key === name)?.[1];
  const contentType = header('content-type') ?? '';
  const { status } = response;
  if (status >= 500) return `unexpected ${status}: ${response.body.subarray(0, 300).toString()}`;

  let problem: { type?: unknown; status?: unknown; code?: unknown } | null = null;
  if (contentType.startsWith('application/problem+json')) {
    try {
      problem = JSON.parse(response.body.toString());
    } catch {
      return `a problem+json body that is not JSON: ${response.body.subarray(0, 200).toString()}`;
    }
    if (status < 400 || status >= 500) return `problem+json with status ${status}`;
    if (
      typeof problem?.code !== 'string' ||
      problem.type !== problemTypeForCode(problem.code as IdempotencyErrorCode)
    )
      return `problem without the stable type of its code: ${response.body.toString()}`;
    if (problem.status !== status)
      return `problem status ${String(problem.status)} != response status ${status}`;
  } else if (status >= 400 && ![400, 413, 415, 431].includes(status)) {
    return `unexpected ${status} that is not a problem: ${response.body.subarray(0, 200).toString()}`;
  }

  let answer: RouteAnswer | null = null;
  if (status >= 200 && status < 300) {
    try {
      answer = JSON.parse(response.body.toString()) as RouteAnswer;
    } catch {
      return `a ${status} that is not the route's JSON: ${response.body.subarray(0, 200).toString()}`;
    }
    const route = hostile.request.path.split('?')[0]!.slice(1);
    if (answer.route !== route) return `a ${status} from route ${answer.route}, asked ${route}`;
  }

  const expected = hostile.expect;
  if (expected === undefined) return null;
  switch (expected.kind) {
    case 'problem':
      return problem?.code === expected.code && status === expected.status
        ? null
        : `expected ${expected.status} ${expected.code}, got ${status} ${response.body.subarray(0, 200).toString()}`;
    case 'route':
      return answer !== null && answer.key === expected.key
        ? null
        : `expected the route to run with key ${JSON.stringify(expected.key)}, got ${status} ${response.body.subarray(0, 200).toString()}`;
    case 'parser':
      return status === expected.status && problem === null
        ? null
        : `expected the HTTP parser's ${expected.status}, got ${status} ${response.body.subarray(0, 200).toString()}`;
    case 'too-large':
      // Refused, never run: idem's 413, or the framework's parser refusing the body first (Fastify parses
      // before its preHandler, where idem decides, so an over-long invalid JSON body gets its 400).
      if (problem !== null)
        return problem.code === 'request_too_large'
          ? null
          : `expected request_too_large, got ${String(problem.code)}`;
      return status === 413 || status === 400
        ? null
        : `expected 413 for a body over the limit, got ${status}`;
  }
}

/**
 * The cases the issue names, run first on every binding whatever the random draw: empty, huge,
 * control-character, non-ASCII, quoted and half-quoted keys; invalid, 100k-deep, huge, binary and
 * mistyped bodies; duplicated and oversized headers.
 */
export function namedCases(): HostileCase[] {
  const json = (path: string, body: string | Uint8Array, contentType = 'application/json', chunked = false) =>
    bodyCase(
      path,
      {
        body: typeof body === 'string' ? encoder.encode(body) : body,
        contentType,
        label: `named ${typeof body === 'string' ? JSON.stringify(body.slice(0, 20)) : `${body.length} B`}`,
      },
      chunked,
      'POST',
    );
  const deep = (open: string, close: string, depth: number) =>
    open.repeat(depth) + (open === '[' ? '' : '1') + close.repeat(depth);
  const cases: HostileCase[] = [
    keyCase(new Uint8Array(0)),
    keyCase(latin1('k'.repeat(255))),
    keyCase(latin1('k'.repeat(256))),
    keyCase(latin1('k'.repeat(100_000))),
    keyCase(latin1('a\u0000b')),
    keyCase(latin1('a\u0001b')),
    keyCase(latin1('a\u007fb')),
    keyCase(latin1('a\tb')),
    keyCase(latin1('a b')),
    keyCase(encoder.encode('ключ-🔑')),
    keyCase(latin1('"quoted"')),
    keyCase(latin1('"half')),
    keyCase(latin1('half"')),
    keyCase(latin1('"a\\"b"')),
    keyCase(latin1('"a\\x"')),
    json('/json', '{"a":'),
    json('/json', 'not json'),
    json('/json', deep('[', ']', 100_000)),
    json('/json', deep('{"a":', '}', 100_000)),
    json('/json', deep('[{"a":', '}]', 50_000)),
    json('/raw', deep('[', ']', 100_000)),
    json('/echo', deep('[', ']', 100_000)),
    json('/raw', new Uint8Array(2 * 1024 * 1024).fill(0x7b), 'application/octet-stream'),
    json('/json', new Uint8Array(2 * 1024 * 1024).fill(0x5b), 'application/json', true),
    json(
      '/json',
      Uint8Array.from({ length: 256 }, (_, i) => i),
    ),
    json('/json', '{"a":1}', 'text/plain'),
    json('/json', '{"__proto__":{"polluted":1}}'),
    {
      category: 'headers',
      request: {
        method: 'POST',
        path: '/echo',
        headers: [
          ['Idempotency-Key', 'a'],
          ['Idempotency-Key', 'b'],
        ],
        body: new Uint8Array(0),
      },
      expect: { kind: 'problem', status: 400, code: 'key_invalid' },
      label: 'named: two Idempotency-Key headers',
    },
    {
      category: 'headers',
      request: {
        method: 'POST',
        path: '/echo',
        headers: [
          ['Idempotency-Key', freshKey()],
          ['X-Junk', 'j'.repeat(64_000)],
        ],
        body: new Uint8Array(0),
      },
      expect: { kind: 'parser', status: 431 },
      label: 'named: a 64 KB header',
    },
  ];
  return cases.map(printable);
}
