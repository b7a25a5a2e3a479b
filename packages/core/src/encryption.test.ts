// @idem/memory resolves from source (see vitest.config.ts): a devDependency would make the workspace cyclic.
import { memoryStore } from '@idem/memory';
import { describe, expect, it } from 'vitest';
import { ENCRYPTION_MARKER, type EncryptionKey, encryptedStore, type WebCryptoKey } from './encryption.js';
import { IdempotencyEngine } from './engine.js';
import { isIdempotencyError } from './errors.js';
import type { Claim, Store, StoredResponse } from './store.js';

const encode = (text: string) => new TextEncoder().encode(text);
const rawKey = (fill: number, length = 32) => new Uint8Array(length).fill(fill);
const keyA: EncryptionKey = { id: 'key-a', key: rawKey(1) };
const keyB: EncryptionKey = { id: 'key-b', key: rawKey(2, 16) };

let counter = 0;
const freshKey = () => `idem:encryption-test:${++counter}`;
const claim = (fingerprint = 'fp'): Claim => ({
  fingerprint,
  token: crypto.randomUUID(),
  leaseMs: 60_000,
  ttlMs: 60_000,
});

const payment: StoredResponse = {
  status: 201,
  headers: [
    ['content-type', 'application/json'],
    ['x-charge', 'ch_1'],
    ['x-charge', 'ch_2'],
  ],
  body: encode('{"card":"4242 4242 4242 4242","amount":1200}'),
};

/** Complete `response` at `key` through `store` (a fresh claim first). */
async function completeThrough(store: Store, key: string, response: StoredResponse): Promise<void> {
  const mine = claim();
  expect((await store.acquire(key, mine)).acquired).toBe(true);
  expect(await store.complete(key, mine.token, response, 60_000)).toBe(true);
}

/** Write `response` into the inner store as it is, the way someone with access to the backend could. */
async function plant(inner: Store, key: string, response: StoredResponse): Promise<void> {
  await inner.delete(key);
  await completeThrough(inner, key, response);
}

async function corruptionOf(read: Promise<unknown>): Promise<string> {
  const error = await read.then(
    () => null,
    (caught: unknown) => caught,
  );
  expect(isIdempotencyError(error, 'record_corrupt'), String(error)).toBe(true);
  return (error as Error).message;
}

describe('encryptedStore', () => {
  it('stores only ciphertext and gives back the response byte for byte (get and a refused acquire)', async () => {
    const inner = memoryStore();
    const store = encryptedStore(inner, { keys: [keyA] });
    const key = freshKey();
    await completeThrough(store, key, payment);

    const raw = (await inner.get(key))!.response!;
    expect(raw.status).toBe(201);
    expect(raw.headers).toEqual([[ENCRYPTION_MARKER, 'v1;key-a']]);
    expect(Buffer.from(raw.body).includes('4242')).toBe(false);
    expect(Buffer.from(raw.body).includes('ch_1')).toBe(false);

    expect((await store.get(key))?.response).toEqual(payment);
    const refused = await store.acquire(key, claim());
    expect(refused.acquired).toBe(false);
    expect(!refused.acquired && refused.record.response).toEqual(payment);
  });

  it('keeps omitted bodies and empty bodies, and seals each response with its own IV', async () => {
    const store = encryptedStore(memoryStore(), { keys: [keyA] });
    const omitted: StoredResponse = {
      status: 200,
      headers: [['content-type', 'text/event-stream']],
      body: new Uint8Array(0),
      omitted: 'streaming',
    };
    const empty: StoredResponse = { status: 204, headers: [], body: new Uint8Array(0) };
    const [k1, k2, k3] = [freshKey(), freshKey(), freshKey()];
    await completeThrough(store, k1, omitted);
    await completeThrough(store, k2, empty);
    await completeThrough(store, k3, empty);
    expect((await store.get(k1))?.response).toEqual(omitted);
    expect((await store.get(k2))?.response).toEqual(empty);
    expect((await store.get(k3))?.response).toEqual(empty);
  });

  it('hands back a record whose store could not keep the sealed body as not kept, not as corrupt', async () => {
    // The memory store keeps a response over its maxBytes without its body (and without its headers when
    // they alone are over it); DynamoDB does the same past its item size.
    for (const maxBytes of [200, 10]) {
      const store = encryptedStore(memoryStore({ maxBytes }), { keys: [keyA] });
      const key = freshKey();
      await completeThrough(store, key, { ...payment, body: new Uint8Array(400) });
      const expected = { status: 201, headers: [], body: new Uint8Array(0), omitted: 'too_large' };
      expect((await store.get(key))?.response).toEqual(expected);
      expect(await store.acquire(key, claim())).toMatchObject({
        acquired: false,
        record: { response: expected },
      });
    }
    // With any header but the marker it is no such record: still corrupt.
    const inner = memoryStore();
    const key = freshKey();
    await plant(inner, key, {
      status: 201,
      headers: [['content-type', 'text/plain']],
      body: new Uint8Array(0),
      omitted: 'too_large',
    });
    await corruptionOf(encryptedStore(inner, { keys: [keyA] }).get(key));
  });

  it('encrypts distinct ciphertexts for the same response', async () => {
    const inner = memoryStore();
    const store = encryptedStore(inner, { keys: [keyA] });
    const key = freshKey();
    await completeThrough(store, key, payment);
    const first = (await inner.get(key))!.response!.body;
    await inner.delete(key);
    await completeThrough(store, key, payment);
    expect(Buffer.from((await inner.get(key))!.response!.body).equals(Buffer.from(first))).toBe(false);
  });

  it('leaves in-flight and failed records, and every other operation, to the inner store', async () => {
    const store = encryptedStore(memoryStore(), { keys: [keyA] });
    const key = freshKey();
    const mine = claim();
    expect((await store.acquire(key, mine)).acquired).toBe(true);
    expect(await store.extend(key, mine.token, 60_000)).toBe(true);
    expect((await store.get(key))?.state).toBe('in_flight');
    expect(await store.release(key, mine.token, 60_000)).toBe(true);
    expect((await store.get(key))?.state).toBe('failed');
    await store.delete(key);
    expect(await store.get(key)).toBeNull();
  });

  it('rotates: the first key encrypts, every key decrypts', async () => {
    const inner = memoryStore();
    const before = encryptedStore(inner, { keys: [keyA] });
    const after = encryptedStore(inner, { keys: [keyB, keyA] });
    const [old, fresh] = [freshKey(), freshKey()];
    await completeThrough(before, old, payment);
    await completeThrough(after, fresh, payment);

    expect((await inner.get(fresh))!.response!.headers).toEqual([[ENCRYPTION_MARKER, 'v1;key-b']]);
    expect((await after.get(old))?.response).toEqual(payment);
    expect((await after.get(fresh))?.response).toEqual(payment);

    // Once the old key is dropped, what it sealed is unreadable: record_corrupt, naming the key id.
    const dropped = encryptedStore(inner, { keys: [keyB] });
    expect(await corruptionOf(dropped.get(old))).toMatch(/unknown key id "key-a"/);
    expect((await dropped.get(fresh))?.response).toEqual(payment);
  });

  it('accepts CryptoKeys', async () => {
    const generated = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, [
      'encrypt',
      'decrypt',
    ]);
    const store = encryptedStore(memoryStore(), { keys: [{ id: 'generated', key: generated }] });
    const key = freshKey();
    await completeThrough(store, key, payment);
    expect((await store.get(key))?.response).toEqual(payment);
  });

  describe('a tampered record is record_corrupt, never replayed', () => {
    async function sealed() {
      const inner = memoryStore();
      const store = encryptedStore(inner, { keys: [keyA, keyB] });
      const key = freshKey();
      await completeThrough(store, key, payment);
      return { inner, store, key, raw: (await inner.get(key))!.response! };
    }

    it('a flipped bit in the ciphertext, the IV or the tag', async () => {
      const { inner, store, key, raw } = await sealed();
      for (const position of [0, 12, 30, raw.body.length - 1]) {
        const body = new Uint8Array(raw.body);
        body[position]! ^= 0x01;
        await plant(inner, key, { ...raw, body });
        expect(await corruptionOf(store.get(key))).toMatch(/fails authentication/);
        expect(await corruptionOf(store.acquire(key, claim()))).toMatch(/fails authentication/);
      }
    });

    it('a changed status or omitted marker', async () => {
      const { inner, store, key, raw } = await sealed();
      await plant(inner, key, { ...raw, status: 200 });
      await corruptionOf(store.get(key));
      await plant(inner, key, { ...raw, omitted: 'too_large' });
      await corruptionOf(store.get(key));
    });

    it("a ciphertext moved to another key (another caller's record)", async () => {
      const { inner, store, raw } = await sealed();
      const other = freshKey();
      await plant(inner, other, raw);
      expect(await corruptionOf(store.get(other))).toMatch(/moved from another key/);
    });

    it('a marker naming another known key, an unknown key, or another format', async () => {
      const { inner, store, key, raw } = await sealed();
      await plant(inner, key, { ...raw, headers: [[ENCRYPTION_MARKER, 'v1;key-b']] });
      await corruptionOf(store.get(key));
      await plant(inner, key, { ...raw, headers: [[ENCRYPTION_MARKER, 'v1;key-z']] });
      expect(await corruptionOf(store.get(key))).toMatch(/unknown key id "key-z"/);
      await plant(inner, key, { ...raw, headers: [[ENCRYPTION_MARKER, 'v2;key-a']] });
      expect(await corruptionOf(store.get(key))).toMatch(/unknown encryption marker/);
      await plant(inner, key, { ...raw, headers: [...raw.headers, ['x-extra', '1']] });
      await corruptionOf(store.get(key));
      await plant(inner, key, { ...raw, body: raw.body.subarray(0, 20) });
      expect(await corruptionOf(store.get(key))).toMatch(/too short/);
    });

    it('a plaintext response, unless acceptPlaintext is on', async () => {
      const inner = memoryStore();
      const key = freshKey();
      await plant(inner, key, payment);
      expect(await corruptionOf(encryptedStore(inner, { keys: [keyA] }).get(key))).toMatch(/not encrypted/);
      const migrating = encryptedStore(inner, { keys: [keyA], acceptPlaintext: true });
      expect((await migrating.get(key))?.response).toEqual(payment);
    });

    it('through the engine: the retry fails with record_corrupt and the work does not run again', async () => {
      const inner = memoryStore();
      const engine = new IdempotencyEngine({ store: encryptedStore(inner, { keys: [keyA] }) });
      const request = { storageKey: freshKey(), fingerprint: 'fp' };
      let runs = 0;
      const work = async () => ++runs;
      const settle = () => payment;
      expect((await engine.run(request, work, settle)).replayed).toBe(false);
      const replay = await engine.run(request, work, settle);
      expect(replay.replayed && replay.response).toEqual(payment);

      const raw = (await inner.get(request.storageKey))!.response!;
      const body = new Uint8Array(raw.body);
      body[20]! ^= 0xff;
      await plant(inner, request.storageKey, { ...raw, body });
      await corruptionOf(engine.run(request, work, settle));
      expect(runs).toBe(1);
    });
  });

  it('refuses bad options with a TypeError', () => {
    const inner = memoryStore();
    expect(() => encryptedStore(inner, { keys: [] })).toThrow(TypeError);
    expect(() => encryptedStore(inner, { keys: [{ id: 'a b', key: rawKey(1) }] })).toThrow(/key id/);
    expect(() => encryptedStore(inner, { keys: [{ id: '', key: rawKey(1) }] })).toThrow(/key id/);
    expect(() => encryptedStore(inner, { keys: [keyA, { ...keyB, id: 'key-a' }] })).toThrow(/used twice/);
    expect(() => encryptedStore(inner, { keys: [{ id: 'short', key: rawKey(1, 24) }] })).toThrow(
      /16 or 32 bytes/,
    );
  });

  it('refuses CryptoKeys of another algorithm or without the usages it needs', async () => {
    const inner = memoryStore();
    const hmac = await crypto.subtle.generateKey({ name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    expect(() => encryptedStore(inner, { keys: [{ id: 'hmac', key: hmac as WebCryptoKey }] })).toThrow(
      /AES-GCM/,
    );
    const decryptOnly = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 128 }, false, ['decrypt']);
    expect(() => encryptedStore(inner, { keys: [{ id: 'd', key: decryptOnly }] })).toThrow(
      /must allow encrypt/,
    );
    // An older key only needs to decrypt.
    expect(() => encryptedStore(inner, { keys: [keyA, { id: 'd', key: decryptOnly }] })).not.toThrow();
  });
});
