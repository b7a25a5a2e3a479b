import { describe, expect, it } from 'vitest';
import { sha256Hex, sha256HexNow, storageKey, storageKeyNow, webCryptoSha256Hex } from './hash.js';

describe('sha256Hex', () => {
  const vectors: Array<[string, string]> = [
    ['', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    ['abc', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
    ['caf\u00e9 \u{1F600}', ''],
  ];

  it.each(vectors.slice(0, 2))('hashes %j to the standard digest on both paths', async (input, digest) => {
    expect(await sha256Hex(input)).toBe(digest);
    expect(await webCryptoSha256Hex(input)).toBe(digest);
  });

  it('agrees between the built-in and the Web Crypto path for strings and bytes', async () => {
    const bytes = Uint8Array.from({ length: 300 }, (_, i) => (i * 31) & 0xff);
    expect(await sha256Hex(bytes)).toBe(await webCryptoSha256Hex(bytes));
    expect(await sha256Hex(vectors[2]![0])).toBe(await webCryptoSha256Hex(vectors[2]![0]));
  });
});

describe('storageKey', () => {
  it('is the prefix plus a hash, never the raw key', async () => {
    const key = await storageKey('order-1', 'tenant-a');
    expect(key).toMatch(/^idem:[0-9a-f]{64}$/);
    expect(key).not.toContain('order-1');
    expect(await storageKey('order-1', 'tenant-a', 'x:')).toMatch(/^x:[0-9a-f]{64}$/);
  });

  it('separates scopes and keys without ambiguity', async () => {
    expect(await storageKey('k', 'a')).not.toBe(await storageKey('k', 'b'));
    // Without length-prefixing, ("ab", "c") and ("a", "bc") could collide.
    expect(await storageKey('c', 'ab')).not.toBe(await storageKey('bc', 'a'));
    expect(await storageKey('k', '')).toBe(await storageKey('k'));
  });
});

describe('sha256Hex of parts', () => {
  it('hashes parts as their concatenation, on both paths', async () => {
    const whole = await sha256Hex('head\nraw:\u0001\u0002');
    expect(await sha256Hex('head\n', 'raw:', new Uint8Array([1, 2]))).toBe(whole);
    expect(await webCryptoSha256Hex('head\n', 'raw:', new Uint8Array([1, 2]))).toBe(whole);
  });
});

describe('sha256HexNow (the request path)', () => {
  it('answers synchronously on Node, with the same digest for one string, several strings and bytes', async () => {
    const bytes = new Uint8Array([0, 1, 2, 255]);
    for (const parts of [['abc'], ['head\n', 'json:{"a":1}'], ['head\n', 'raw:', bytes], [bytes]]) {
      const digest = sha256HexNow(parts);
      expect(typeof digest).toBe('string');
      expect(digest).toBe(await webCryptoSha256Hex(...parts));
    }
  });

  it('gives the same storage key as storageKey', async () => {
    expect(storageKeyNow('order-1', 'tenant-a', 'p:')).toBe(await storageKey('order-1', 'tenant-a', 'p:'));
  });
});

describe('storageKey: the scope', () => {
  it('refuses a scope that is not a string: an object would put every caller in one scope', async () => {
    await expect(storageKey('k', { tenant: 'a' } as unknown as string)).rejects.toThrow(
      /scope must be a string/,
    );
    await expect(storageKey('k', ['a'] as unknown as string)).rejects.toThrow(/scope must be a string/);
  });

  it('refuses a scope with a lone surrogate, which would hash like U+FFFD', async () => {
    await expect(storageKey('k', 'user-\ud800')).rejects.toThrow(/well-formed/);
    expect(await storageKey('k', 'user-\ufffd')).toMatch(/^idem:[0-9a-f]{64}$/);
  });
});
