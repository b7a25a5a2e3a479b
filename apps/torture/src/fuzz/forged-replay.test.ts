import { encryptedStore, fingerprint, type Store, type StoredResponse, storageKey } from '@idem/core';
import { memoryStore } from '@idem/memory';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendRaw } from './raw-http.js';
import { BINDINGS, type FuzzServer, startFuzzServer } from './servers.js';

/**
 * Header injection through a replay. A record's headers come from the route's own response, filtered
 * when stored; these tests plant records directly in the store (as someone with write access to it
 * could, or a damaged record), and replay them through every binding:
 * - headers HTTP refuses (CR/LF, NUL, a space in a name, non-Latin-1) must never reach the wire, nor
 *   crash or hang the server;
 * - what idem never replays (Set-Cookie, hop-by-hop headers, Content-Length) is not replayed from a
 *   planted record either;
 * - with `encryptedStore`, a planted record is refused (`record_corrupt`) and nothing of it is sent.
 */

const body = new TextEncoder().encode('<script>planted()</script>');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Complete a record for `POST /echo` with `key` (no body, no Authorization) holding `response`. */
async function plant(store: Store, key: string, response: StoredResponse): Promise<void> {
  const storage = await storageKey(key, '');
  const print = await fingerprint({
    method: 'POST',
    path: '/echo',
    body: new Uint8Array(0),
    contentType: null,
  });
  const token = crypto.randomUUID();
  await store.delete(storage);
  expect(
    (await store.acquire(storage, { fingerprint: print, token, leaseMs: 60_000, ttlMs: 60_000 })).acquired,
  ).toBe(true);
  expect(await store.complete(storage, token, response, 60_000)).toBe(true);
}

const replay = (server: FuzzServer, key: string) =>
  sendRaw(
    server.port,
    { method: 'POST', path: '/echo', headers: [['Idempotency-Key', key]], body: new Uint8Array(0) },
    2_000,
  );

/** The raw header section, lower-cased, to look for injected lines. */
const headerText = (headers: Array<[string, string]>) =>
  headers
    .map(([name, value]) => `${name}: ${value}`)
    .join('\n')
    .toLowerCase();

const unsendable: Array<[string, Array<[string, string]>]> = [
  ['a CR LF in a value', [['x-note', 'a\r\nset-cookie: planted=1']]],
  ['a bare LF in a value', [['x-note', 'a\nset-cookie: planted=1']]],
  ['a NUL in a value', [['x-note', 'a\u0000b']]],
  ['a space in a name', [['x note', 'a']]],
  ['a name with a colon', [['set-cookie: planted=1\r\nx', 'a']]],
  ['a value beyond Latin-1', [['x-note', 'ключ']]],
];

describe.each(BINDINGS)('planted records replayed through %s', (binding) => {
  let server: FuzzServer;
  const store = memoryStore();
  beforeAll(async () => {
    server = await startFuzzServer(binding, store);
  });
  afterAll(async () => {
    await server?.close();
  });

  it.concurrent.for(unsendable)(
    'with %s: never sent, never a crash or a hang',
    async ([, headers], { expect }) => {
      const key = `planted-${crypto.randomUUID()}`;
      await plant(store, key, { status: 200, headers, body });
      const response = await replay(server, key);
      expect(response.status).toBeGreaterThanOrEqual(500);
      expect(headerText(response.headers)).not.toContain('planted');
      expect(response.body.toString()).not.toContain('planted()');
      await sleep(10);
      expect((await fetch(`${server.url}/health`)).status).toBe(200);
    },
  );

  it('never replays Set-Cookie or hop-by-hop headers, even when the store holds them', async () => {
    const key = `planted-${crypto.randomUUID()}`;
    await plant(store, key, {
      status: 200,
      headers: [
        ['content-type', 'text/plain'],
        ['set-cookie', 'session=planted'],
        ['transfer-encoding', 'chunked'],
        ['content-length', '0'],
        ['connection', 'keep-alive, x-hop'],
        ['x-hop', 'planted'],
      ],
      body,
    });
    const response = await replay(server, key);
    const names = response.headers.map(([name]) => name);
    expect(names).not.toContain('set-cookie');
    expect(names).not.toContain('x-hop');
    // One framing only, and the body it announces.
    expect(names.includes('transfer-encoding') && names.includes('content-length')).toBe(false);
    expect(response.body.toString()).toBe('<script>planted()</script>');
  });
});

describe.each(BINDINGS)('planted records behind encryptedStore through %s', (binding) => {
  let server: FuzzServer;
  const inner = memoryStore();
  const store = encryptedStore(inner, {
    keys: [{ id: 'k1', key: crypto.getRandomValues(new Uint8Array(32)) }],
  });
  beforeAll(async () => {
    server = await startFuzzServer(binding, store);
  });
  afterAll(async () => {
    await server?.close();
  });

  it('refuses a record planted in the clear, or sealed for another key, with 500 record_corrupt', async () => {
    const plaintext = `planted-${crypto.randomUUID()}`;
    await plant(inner, plaintext, { status: 200, headers: [['set-cookie', 'session=planted']], body });
    // A genuine sealed response, moved to another caller's key.
    const genuine = `genuine-${crypto.randomUUID()}`;
    const first = await replay(server, genuine);
    expect(first.status).toBe(201);
    const moved = `moved-${crypto.randomUUID()}`;
    const sealed = (await inner.get(await storageKey(genuine, '')))!.response!;
    await plant(inner, moved, sealed);

    for (const key of [plaintext, moved]) {
      const response = await replay(server, key);
      expect(response.status).toBe(500);
      expect(response.headers.find(([name]) => name === 'content-type')?.[1]).toBe(
        'application/problem+json',
      );
      expect(JSON.parse(response.body.toString()).code).toBe('record_corrupt');
      expect(headerText(response.headers)).not.toContain('planted');
    }
    const again = await replay(server, genuine);
    expect(again.body.equals(first.body)).toBe(true);
  });
});
