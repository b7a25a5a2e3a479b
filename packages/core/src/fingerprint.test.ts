import { describe, expect, it } from 'vitest';
import { type FingerprintInput, fingerprint, isJsonContentType } from './fingerprint.js';

const encode = (text: string) => new TextEncoder().encode(text);

function request(overrides: Partial<FingerprintInput> = {}): FingerprintInput {
  return {
    method: 'POST',
    path: '/orders',
    body: encode('{"item":"book","qty":2}'),
    contentType: 'application/json',
    ...overrides,
  };
}

describe('fingerprint', () => {
  it('is a SHA-256 in lower-case hex, the same for the same request', async () => {
    const print = await fingerprint(request());
    expect(print).toMatch(/^[0-9a-f]{64}$/);
    expect(await fingerprint(request())).toBe(print);
  });

  it('reads an empty query (`/orders?`) as none, and tells any other query apart', async () => {
    const print = await fingerprint(request());
    expect(await fingerprint(request({ path: '/orders?' }))).toBe(print);
    for (const path of ['/orders?a', '/orders?=', '/orders??', '/orders/'])
      expect(await fingerprint(request({ path }))).not.toBe(print);
  });

  it('gives the same JSON in another key order or spacing the same fingerprint', async () => {
    const base = await fingerprint(request());
    expect(await fingerprint(request({ body: encode('{"qty":2,"item":"book"}') }))).toBe(base);
    expect(
      await fingerprint(request({ body: encode(' {\n  "qty" : 2 ,\n  "item" : "b\\u006fok"\n}\n') })),
    ).toBe(base);
    expect(
      await fingerprint(
        request({ body: encode('{"qty":2,"item":"book"}'), contentType: 'application/json; charset=utf-8' }),
      ),
    ).toBe(base);
  });

  it('canonicalises every JSON content type, and only those', () => {
    for (const type of [
      'application/json',
      'Application/JSON',
      'application/json; charset=utf-8',
      'application/problem+json',
      'application/vnd.api+json',
    ]) {
      expect(isJsonContentType(type), type).toBe(true);
    }
    for (const type of [
      undefined,
      null,
      '',
      'text/plain',
      'application/jsonx',
      'text/json5',
      'application/x-www-form-urlencoded',
    ]) {
      expect(isJsonContentType(type), String(type)).toBe(false);
    }
  });

  it('does not reorder bodies of other content types', async () => {
    const a = await fingerprint(request({ contentType: 'text/plain', body: encode('{"a":1,"b":2}') }));
    const b = await fingerprint(request({ contentType: 'text/plain', body: encode('{"b":2,"a":1}') }));
    expect(a).not.toBe(b);
  });

  it.each<[string, Partial<FingerprintInput>, Partial<FingerprintInput>]>([
    ['method', {}, { method: 'PUT' }],
    ['path', {}, { path: '/orders/1' }],
    ['query string', {}, { path: '/orders?dry=1' }],
    ['body', {}, { body: encode('{"item":"book","qty":3}') }],
    [
      'body, by a big integer',
      { body: encode('[12345678901234567890]') },
      { body: encode('[12345678901234567891]') },
    ],
    ['body, by array order', { body: encode('["a","b"]') }, { body: encode('["b","a"]') }],
    ['body, by being empty', {}, { body: new Uint8Array(0) }],
    ['chosen headers', {}, { headers: [['x-tenant', 'acme']] }],
  ])('differs when the %s differs', async (_, a, b) => {
    expect(await fingerprint(request(a))).not.toBe(await fingerprint(request(b)));
  });

  it('tells header values, names and order apart, but not the case of names or methods', async () => {
    const with_ = (headers: Array<[string, string]>) => fingerprint(request({ headers }));
    const base = await with_([['x-tenant', 'acme']]);
    expect(await with_([['x-tenant', 'other']])).not.toBe(base);
    expect(await with_([['x-account', 'acme']])).not.toBe(base);
    expect(await with_([['X-Tenant', 'acme']])).toBe(base);
    expect(await fingerprint(request({ method: 'post' }))).toBe(await fingerprint(request()));
    expect(
      await with_([
        ['a', '1'],
        ['b', '2'],
      ]),
    ).not.toBe(
      await with_([
        ['b', '2'],
        ['a', '1'],
      ]),
    );
  });

  it('cannot be fooled by separators inside a path or header value', async () => {
    const pairs: Array<[Partial<FingerprintInput>, Partial<FingerprintInput>]> = [
      [
        { path: '/a\nx:1', headers: [] },
        { path: '/a', headers: [['x', '1']] },
      ],
      [
        { headers: [['x', '1\ny:2']] },
        {
          headers: [
            ['x', '1'],
            ['y', '2'],
          ],
        },
      ],
      [{ headers: [['x:y', 'z']] }, { headers: [['x', 'y:z']] }],
      [
        { path: '/a\n\nraw:', body: new Uint8Array(0), contentType: null },
        { path: '/a', body: encode(''), contentType: null },
      ],
      [{ path: '/\ud800' }, { path: '/\ud801' }],
    ];
    for (const [a, b] of pairs) {
      expect(await fingerprint(request(a)), JSON.stringify([a, b])).not.toBe(await fingerprint(request(b)));
    }
  });

  it('hashes a body that claims JSON but is not valid JSON as raw bytes', async () => {
    for (const text of ['{"item":', 'not json', '{"a":1}{"b":2}']) {
      const asJson = await fingerprint(request({ body: encode(text) }));
      const asText = await fingerprint(request({ body: encode(text), contentType: 'text/plain' }));
      expect(asJson, text).toBe(asText);
    }
    // Invalid JSON is not canonicalised: other spacing is another request.
    expect(await fingerprint(request({ body: encode('{"a":') }))).not.toBe(
      await fingerprint(request({ body: encode('{ "a":') })),
    );
  });

  it('hashes JSON-typed bytes that are not UTF-8 as raw bytes', async () => {
    const body = new Uint8Array([0x22, 0xff, 0xfe, 0x22]);
    expect(await fingerprint(request({ body }))).toBe(
      await fingerprint(request({ body, contentType: 'text/plain' })),
    );
  });

  it('never hashes a raw body like the canonical form of a JSON one', async () => {
    const json = await fingerprint(request({ body: encode('{"b":1,"a":2}') }));
    for (const raw of ['{"a":2,"b":1}', 'json:{"a":2,"b":1}', 'raw:{"a":2,"b":1}']) {
      expect(await fingerprint(request({ body: encode(raw), contentType: 'text/plain' })), raw).not.toBe(
        json,
      );
      expect(await fingerprint(request({ body: encode(raw), contentType: undefined })), raw).not.toBe(json);
    }
  });

  it('treats an empty JSON-typed body like an empty body without a content type', async () => {
    const empty = new Uint8Array(0);
    expect(await fingerprint(request({ body: empty }))).toBe(
      await fingerprint(request({ body: empty, contentType: null })),
    );
  });
});
