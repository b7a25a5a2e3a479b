import { describe, expect, it } from 'vitest';
import { pathOf, toWebResponse, webHttpRequest } from './web.js';

describe('pathOf', () => {
  it('is pathname + search of a serialised URL, as new URL gives them', () => {
    for (const url of [
      'http://127.0.0.1:3000/orders',
      'http://127.0.0.1:3000/orders?dry=1&x=%20',
      'https://example.com',
      'https://example.com/',
      'https://user:pass@example.com:8443/a/b?c=http://d/e',
      'http://example.com/orders?',
      'http://example.com/orders?#top',
      'http://example.com/orders?a?b',
      'http://example.com/orders#top',
      'http://example.com/a%2Fb/../c?q=%E2%82%AC',
    ]) {
      const serialised = new URL(url).href;
      const parsed = new URL(serialised);
      expect(pathOf(serialised), url).toBe(parsed.pathname + parsed.search);
    }
  });
});

describe('webHttpRequest', () => {
  it('reads method, path, headers and the body (kept for the route)', async () => {
    const request = webHttpRequest(
      new Request('http://example.com/orders?dry=1', {
        method: 'POST',
        headers: { 'Idempotency-Key': 'k1' },
        body: 'hello',
      }),
    );
    expect(request.method).toBe('POST');
    expect(request.path).toBe('/orders?dry=1');
    expect(request.header('idempotency-key')).toBe('k1');
    expect(request.bodyBytes()).toBeNull();
    expect(new TextDecoder().decode(await request.body(100))).toBe('hello');
    expect(new TextDecoder().decode(request.bodyBytes()!)).toBe('hello');
  });
});

describe('toWebResponse', () => {
  it('builds a body-less response for the statuses that may not have one (205 included)', async () => {
    for (const status of [204, 205, 304]) {
      const response = toWebResponse({ status, headers: [['x-run', '1']], body: new Uint8Array(0) });
      expect(response.status).toBe(status);
      expect(response.body).toBeNull();
      expect(response.headers.get('x-run')).toBe('1');
    }
    const created = toWebResponse({ status: 201, headers: [], body: new TextEncoder().encode('{}') });
    expect(await created.text()).toBe('{}');
  });
});
