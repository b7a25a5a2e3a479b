import { describe, expect, it } from 'vitest';
import { storedHeaderFilter } from './stored-headers.js';

describe('storedHeaderFilter', () => {
  const filter = storedHeaderFilter();

  it('drops the headers a response names in any of its Connection values', () => {
    const headers: Array<[string, string]> = [
      ['Connection', 'keep-alive'],
      ['Connection', 'X-Hop, x-other'],
      ['X-Hop', 'per-connection secret'],
      ['x-other', '1'],
      ['content-type', 'application/json'],
    ];
    expect(filter(headers)).toEqual([['content-type', 'application/json']]);
  });

  it('never stores cookies, hop-by-hop headers, proxy authentication, Date or Content-Length', () => {
    const headers: Array<[string, string]> = [
      ['Set-Cookie', 'a=1'],
      ['proxy-authentication-info', 'nextnonce="abc"'],
      ['Proxy-Authenticate', 'Basic'],
      ['Transfer-Encoding', 'chunked'],
      ['Date', 'Mon, 30 Nov 2026 03:00:00 GMT'],
      ['Content-Length', '2'],
      ['x-kept', 'yes'],
    ];
    expect(filter(headers)).toEqual([['x-kept', 'yes']]);
  });
});
