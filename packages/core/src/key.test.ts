import { describe, expect, it } from 'vitest';
import { IdempotencyError, type IdempotencyErrorCode } from './errors.js';
import { DEFAULT_MAX_KEY_LENGTH, parseIdempotencyKey } from './key.js';

function errorOf(header: string | null | undefined, maxKeyLength?: number): IdempotencyError {
  try {
    parseIdempotencyKey(header, maxKeyLength === undefined ? {} : { maxKeyLength });
  } catch (error) {
    expect(error).toBeInstanceOf(IdempotencyError);
    return error as IdempotencyError;
  }
  throw new Error(`expected ${JSON.stringify(header)} to be refused`);
}

function expectRefused(header: string | null | undefined, code: IdempotencyErrorCode, maxKeyLength?: number) {
  const error = errorOf(header, maxKeyLength);
  expect(error.code).toBe(code);
  expect(error.message).toMatch(/^\[idem\] /);
  return error;
}

describe('parseIdempotencyKey', () => {
  it.each([
    ['abc', 'abc'],
    ['"abc"', 'abc'],
    ['"a\\"b"', 'a"b'],
    ['"a\\\\b"', 'a\\b'],
    ['"\\"\\\\"', '"\\'],
    ['8e1f1c2a-5b7e-4b8e-9c3d-2f6a7b8c9d0e', '8e1f1c2a-5b7e-4b8e-9c3d-2f6a7b8c9d0e'],
    ["!#$%&'()*+,-./:;<=>?@[]^_`{|}~", "!#$%&'()*+,-./:;<=>?@[]^_`{|}~"],
    ['  abc\t', 'abc'], // optional white space around a header value is not part of it
    [' "abc" ', 'abc'],
  ])('accepts %j as %j', (header, key) => {
    expect(parseIdempotencyKey(header)).toBe(key);
  });

  it('reads the bare and the quoted form as the same key', () => {
    expect(parseIdempotencyKey('"order-42"')).toBe(parseIdempotencyKey('order-42'));
  });

  it(`accepts ${DEFAULT_MAX_KEY_LENGTH} characters and refuses ${DEFAULT_MAX_KEY_LENGTH + 1}`, () => {
    expect(DEFAULT_MAX_KEY_LENGTH).toBe(255);
    const ok = 'k'.repeat(255);
    expect(parseIdempotencyKey(ok)).toBe(ok);
    expect(parseIdempotencyKey(`"${ok}"`)).toBe(ok);
    expectRefused('k'.repeat(256), 'key_invalid');
    expectRefused(`"${'k'.repeat(256)}"`, 'key_invalid');
  });

  it('counts the length after unquoting: 255 escaped characters are fine', () => {
    const escaped = `"${'\\"'.repeat(255)}"`;
    expect(parseIdempotencyKey(escaped)).toBe('"'.repeat(255));
    expectRefused(`"${'\\"'.repeat(256)}"`, 'key_invalid');
  });

  it('refuses very long values without scanning them', () => {
    expect(errorOf('x'.repeat(1_000_000)).message).toMatch(/longer than 255/);
  });

  it('takes a configurable maximum', () => {
    expect(parseIdempotencyKey('a'.repeat(10), { maxKeyLength: 10 })).toBe('a'.repeat(10));
    expect(parseIdempotencyKey(`"${'a'.repeat(10)}"`, { maxKeyLength: 10 })).toBe('a'.repeat(10));
    expect(expectRefused('a'.repeat(11), 'key_invalid', 10).message).toMatch(/longer than 10/);
    expectRefused(`"${'a'.repeat(11)}"`, 'key_invalid', 10);
    const long = 'a'.repeat(1_000);
    expect(parseIdempotencyKey(long, { maxKeyLength: 1_000 })).toBe(long);
  });

  it.each([
    ['empty', ''],
    ['whitespace only', ' \t  '],
    ['empty quoted', '""'],
    ['a lone quote', '"'],
    ['control character NUL', 'a\u0000b'],
    ['control character TAB inside', 'a\tb'],
    ['control character DEL', 'ab\u007f'],
    ['control character in quotes', '"a\u0001b"'],
    ['newline inside', 'a\nb'],
    ['non-ASCII', 'café'],
    ['non-ASCII in quotes', '"café"'],
    ['an emoji', 'key-\u{1F600}'],
    ['a space inside', 'a b'],
    ['a space inside quotes', '"a b"'],
    ['half-quoted at the start', '"abc'],
    ['half-quoted at the end', 'abc"'],
    ['an unescaped quote inside quotes', '"a"b"'],
    ['an escape other than \\" and \\\\', '"a\\nb"'],
    ['an escaped letter', '"\\a"'],
    ['an escape at the end that eats the closing quote', '"abc\\"'],
    ['a lone backslash in quotes', '"\\"'],
  ])('refuses %s as key_invalid', (_, header) => {
    const error = expectRefused(header, 'key_invalid');
    expect(error.message).toMatch(/invalid Idempotency-Key/);
  });

  it.each([
    ['two bare keys, as a server joins a repeated header', 'a, b', /several values/],
    ['the same key twice', 'abc, abc', /several values/],
    ['two quoted keys', '"a", "b"', /several values/],
    ['a quoted key and a bare one', '"a",b', /several values/],
    ['a quoted key with a parameter', '"abc";x=1', /parameters after a quoted key/],
  ])('says what is wrong with %s', (_, header, reason) => {
    expect(expectRefused(header, 'key_invalid').message).toMatch(reason);
  });

  it('still accepts keys with commas, semicolons and quotes in them, bare or quoted with escapes', () => {
    for (const key of ['a,b', 'order;1', 'x",y', 'a"b']) expect(parseIdempotencyKey(key)).toBe(key);
    expect(parseIdempotencyKey('"a\\",b"')).toBe('a",b');
    expect(parseIdempotencyKey('"a\\";b"')).toBe('a";b');
    expect(parseIdempotencyKey('"x\\",\\"y"')).toBe('x","y');
  });

  it.each([null, undefined])('refuses a missing header (%s) as key_missing', (header) => {
    const error = expectRefused(header, 'key_missing');
    expect(error.message).toMatch(/Idempotency-Key header is required/);
  });
});

describe('parseIdempotencyKey: whitespace', () => {
  it('trims only spaces and tabs around the value, as HTTP does', () => {
    expect(parseIdempotencyKey(' \tabc\t ')).toBe('abc');
    for (const padded of ['abc\u00a0', '\ufeffabc', 'abc\u3000', '\vabc', 'abc\f']) {
      expect(() => parseIdempotencyKey(padded)).toThrow(expect.objectContaining({ code: 'key_invalid' }));
    }
  });
});
