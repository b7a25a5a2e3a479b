import { type Store, storageKey } from '@idem/core';
import { nodeTestServer, slowCompleting, type TestServer } from '@idem/http-test-suite';
import { memoryStore } from '@idem/memory';
import express, { type Express } from 'express';
import express4 from 'express4';
import { afterEach, describe, expect, it } from 'vitest';
import type { ExpressModule } from './conformance-app.fixture.js';
import { type ExpressIdempotencyOptions, idempotency, idempotencyErrorHandler } from './index.js';

const servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

/** Listen with an app whose routes `setup` adds after `idempotency(options)` (and express.json()). */
async function serve(
  framework: ExpressModule,
  setup: (app: Express) => void,
  options: Partial<ExpressIdempotencyOptions> = {},
  before?: (app: Express) => void,
): Promise<TestServer> {
  const app = framework();
  before?.(app);
  app.use(idempotency({ store: memoryStore(), ...options }), framework.json());
  setup(app);
  const server = await nodeTestServer(app.listen(0, '127.0.0.1'));
  servers.push(server);
  return server;
}

let counter = 0;
const newKey = () => `mw-${Date.now()}-${++counter}`;
const post = (server: TestServer, path: string, key: string, init: RequestInit = {}) =>
  fetch(server.url + path, { method: 'POST', ...init, headers: { 'idempotency-key': key, ...init.headers } });

/** A promise with its resolve function. */
function gate<T = void>() {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/**
 * A store whose `complete` and `release` wait for `open()`: the window in which idem holds the route's
 * end, made as long as a test needs.
 */
function settlingOnCue(store: Store) {
  const cue = gate();
  return {
    open: cue.open,
    store: {
      name: store.name,
      acquire: (key, claim) => store.acquire(key, claim),
      complete: (key, token, response, ttlMs) =>
        cue.promise.then(() => store.complete(key, token, response, ttlMs)),
      release: (key, token, ttlMs) => cue.promise.then(() => store.release(key, token, ttlMs)),
      extend: (key, token, leaseMs) => store.extend(key, token, leaseMs),
      get: (key) => store.get(key),
      delete: (key) => store.delete(key),
    } satisfies Store,
  };
}

/** The `code` of what `action` throws, or `'none'`. */
function codeOf(action: () => unknown): string {
  try {
    action();
    return 'none';
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

async function until(condition: () => boolean | Promise<boolean>, what: string) {
  const deadline = Date.now() + 3_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

for (const [name, framework] of [
  ['express 5', express],
  ['express 4', express4],
] as const) {
  describe(`${name}: the response as the route writes it`, () => {
    it('leaves res.locals alone: middleware before and after idem and the route share one object', async () => {
      const seen = new WeakMap<object, object>();
      const server = await serve(
        framework,
        (app) => {
          app.use((_req, res, next) => {
            res.locals['afterIdem'] = res.locals['user'];
            next();
          });
          app.post('/locals', (req, res) => {
            res.json({ locals: res.locals, same: seen.get(req) === res.locals });
          });
        },
        {},
        (app) =>
          app.use((req, res, next) => {
            res.locals['user'] = 'ada';
            seen.set(req, res.locals);
            next();
          }),
      );
      const response = await post(server, '/locals', newKey());
      expect(await response.json()).toEqual({ locals: { user: 'ada', afterIdem: 'ada' }, same: true });
    });

    it('sends the headers at the first write: a header set later fails as usual and is not replayed', async () => {
      const server = await serve(framework, (app) => {
        app.post('/late-header', (_req, res) => {
          res.status(202).setHeader('x-before', '1');
          res.write('one,');
          let code = 'none';
          try {
            res.setHeader('x-after', '2');
          } catch (error) {
            code = (error as { code: string }).code;
          }
          res.end(`two:${code}`);
        });
      });
      const key = newKey();
      for (const replayed of [null, 'true']) {
        const response = await post(server, '/late-header', key);
        expect(response.status).toBe(202);
        expect(response.headers.get('idempotent-replayed')).toBe(replayed);
        expect(response.headers.get('x-before')).toBe('1');
        expect(response.headers.has('x-after')).toBe(false);
        expect(await response.text()).toBe('one,two:ERR_HTTP_HEADERS_SENT');
      }
    });

    it('passes writes through at once: the client reads the first chunk while the route still runs', async () => {
      const resume = gate<'client' | 'timeout'>();
      const server = await serve(framework, (app) => {
        app.post('/chunks', async (_req, res) => {
          res.type('text/plain');
          res.write('first\n');
          const timer = setTimeout(() => resume.open('timeout'), 2_000);
          const by = await resume.promise;
          clearTimeout(timer);
          res.end(`second (resumed by ${by})\n`);
        });
      });
      const key = newKey();
      const response = await post(server, '/chunks', key);
      const reader = response.body!.getReader();
      const first = await reader.read();
      expect(new TextDecoder().decode(first.value)).toBe('first\n');
      resume.open('client');
      let text = 'first\n';
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
        text += new TextDecoder().decode(chunk.value);
      }
      expect(text).toBe('first\nsecond (resumed by client)\n');
      const replay = await post(server, '/chunks', key);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(await replay.text()).toBe(text);
    });

    it('captures headers given to writeHead (object and flat array forms)', async () => {
      const server = await serve(framework, (app) => {
        app.post('/object', (_req, res) => {
          res.writeHead(201, 'Made', { 'content-type': 'text/plain', 'x-head': 'a' }).end('made');
        });
        app.post('/array', (_req, res) => {
          res.writeHead(201, ['x-raw', '1', 'x-raw', '2']).end('raw');
        });
      });
      for (const path of ['/object', '/array']) {
        const key = newKey();
        const first = await post(server, path, key);
        const replay = await post(server, path, key);
        expect(replay.headers.get('idempotent-replayed')).toBe('true');
        for (const response of [first, replay]) {
          expect(response.status).toBe(201);
          if (path === '/object') {
            expect(response.headers.get('x-head')).toBe('a');
            expect(response.headers.get('content-type')).toBe('text/plain');
          } else expect(response.headers.get('x-raw')).toBe('1, 2');
        }
        expect(await replay.text()).toBe(await first.text());
      }
    });

    it('holds the end of a buffered response until the record is completed', async () => {
      const inner = memoryStore();
      // A store that is slow to complete: without the hold the client would get its answer first.
      const store = slowCompleting(inner, 150);
      const server = await serve(
        framework,
        (app) => app.post('/held', (req, res) => res.status(201).json({ key: req.idempotency!.storageKey })),
        { store },
      );
      const response = await post(server, '/held', newKey());
      expect(response.status).toBe(201);
      const { key } = (await response.json()) as { key: string };
      expect((await inner.get(key))?.state).toBe('completed');
    });

    it('gives the route the request for scope, so that tenants with one key are two operations', async () => {
      let runs = 0;
      const server = await serve(
        framework,
        (app) =>
          app.post('/scoped', (req, res) => res.json({ run: ++runs, key: req.idempotency!.storageKey })),
        { scope: (req) => req.get('x-tenant') ?? '' },
      );
      const key = newKey();
      const send = (tenant: string) => post(server, '/scoped', key, { headers: { 'x-tenant': tenant } });
      const a = await (await send('a')).json();
      const b = await (await send('b')).json();
      expect(a).toEqual({ run: 1, key: await storageKey(key, 'a') });
      expect(b).toEqual({ run: 2, key: await storageKey(key, 'b') });
      expect(await (await send('a')).json()).toEqual(a);
    });

    it('keeps the key while the route runs on after its client went away, and stores its response', async () => {
      const closed = gate();
      const resume = gate();
      let runs = 0;
      const server = await serve(
        framework,
        (app) =>
          app.post('/abandoned', async (_req, res) => {
            runs++;
            res.on('close', () => closed.open());
            await resume.promise;
            res.status(201).json({ runs });
          }),
        { wait: { timeoutMs: 3_000, pollMs: 20 } },
      );
      const key = newKey();
      const abort = new AbortController();
      const first = post(server, '/abandoned', key, { signal: abort.signal }).catch(() => null);
      await until(() => runs === 1, 'the route to start');
      abort.abort();
      await first;
      await closed.promise;
      const retry = post(server, '/abandoned', key);
      resume.open();
      const replay = await retry;
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(await replay.json()).toEqual({ runs: 1 });
      expect(runs).toBe(1);
    });

    it('completes the record without a body when the client goes away mid-stream: the route never runs twice', async () => {
      const store = memoryStore();
      const finish = gate();
      let runs = 0;
      let storage = '';
      const server = await serve(
        framework,
        (app) =>
          app.post('/cut', async (req, res) => {
            runs++;
            storage = req.idempotency!.storageKey;
            res.type('text/plain').write('partial');
            // The route goes on after its client went away (its side effects are happening).
            await finish.promise;
            res.end('rest');
          }),
        { store },
      );
      const key = newKey();
      const abort = new AbortController();
      const response = await post(server, '/cut', key, { signal: abort.signal });
      await response.body!.getReader().read();
      abort.abort();
      await until(async () => (await store.get(storage))?.state === 'completed', 'the record to complete');
      for (const running of [true, false]) {
        if (!running) finish.open();
        const retry = await post(server, '/cut', key);
        expect(retry.status).toBe(410);
        expect(await retry.json()).toMatchObject({ code: 'response_not_stored', reason: 'streaming' });
        expect(runs).toBe(1);
      }
      expect((await store.get(storage))?.response).toMatchObject({ status: 200, omitted: 'streaming' });
    });

    it('refuses a second answer after the end, as Node does: the client and the record get the first', async () => {
      const inner = memoryStore();
      const settling = settlingOnCue(inner);
      let storage = '';
      let seen: Record<string, unknown> | undefined;
      const server = await serve(
        framework,
        (app) =>
          app.post('/twice', (req, res) => {
            storage = req.idempotency!.storageKey;
            res.status(201).json({ answer: 1 });
            // idem holds this end until the record is completed (the store waits for the test's cue).
            const refused: Record<string, unknown> = { headersSent: res.headersSent };
            refused['json'] = codeOf(() => res.status(200).json({ answer: 2 }));
            refused['send'] = codeOf(() => res.send('two'));
            refused['writeHead'] = codeOf(() => res.writeHead(200));
            refused['write'] = res.write('three', (error) => {
              refused['writeError'] = (error as { code?: string } | null | undefined)?.code;
              seen = refused;
            });
            refused['end'] = res.end() === res;
          }),
        { store: settling.store },
      );
      const key = newKey();
      const response = post(server, '/twice', key);
      await until(() => seen !== undefined, 'the second answer');
      settling.open();
      const first = await response;
      expect(seen).toEqual({
        headersSent: true,
        json: 'ERR_HTTP_HEADERS_SENT',
        send: 'ERR_HTTP_HEADERS_SENT',
        writeHead: 'ERR_HTTP_HEADERS_SENT',
        write: false,
        writeError: 'ERR_STREAM_WRITE_AFTER_END',
        end: true,
      });
      expect(first.status).toBe(201);
      expect(await first.json()).toEqual({ answer: 1 });
      const record = await inner.get(storage);
      expect(record?.response?.status).toBe(201);
      expect(new TextDecoder().decode(record?.response?.body)).toBe('{"answer":1}');
      const replay = await post(server, '/twice', key);
      expect(replay.status).toBe(201);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(await replay.json()).toEqual({ answer: 1 });
    });

    it("refuses a route's late answer after a timeout middleware answered: the client gets the timeout", async () => {
      const settling = settlingOnCue(memoryStore());
      const timeout = gate();
      const late = gate();
      let lateCode = '';
      const server = await serve(
        framework,
        (app) => {
          app.use((_req, res, next) => {
            // A request timeout (fired by the test): answers 503 while the route still works.
            timeout.promise.then(() => {
              res.status(503).json({ error: 'timeout' });
              late.open();
            });
            next();
          });
          app.post('/slow', async (_req, res) => {
            timeout.open();
            await late.promise;
            lateCode = codeOf(() => res.status(201).json({ created: true }));
          });
        },
        { store: settling.store },
      );
      const response = post(server, '/slow', newKey());
      await until(() => lateCode !== '', 'the late answer');
      settling.open();
      expect(lateCode).toBe('ERR_HTTP_HEADERS_SENT');
      const answer = await response;
      expect(answer.status).toBe(503);
      expect(await answer.json()).toEqual({ error: 'timeout' });
    });
  });

  describe(`${name}: errors`, () => {
    const failing = (framework: ExpressModule, errorHandler: boolean) => {
      let runs = 0;
      return {
        runs: () => runs,
        server: serve(framework, (app) => {
          // Express 4 does not catch rejections, so the route hands the error to next() itself.
          app.post('/conflict', (_req, _res, next) => {
            runs++;
            next(Object.assign(new Error('already shipped'), { status: 409 }));
          });
          app.post('/after-headers', (_req, res, next) => {
            runs++;
            res.type('text/plain').write('partial');
            setTimeout(() => next(new Error('broke mid-stream')), 10);
          });
          app.post('/ended-then-failed', (_req, res, next) => {
            runs++;
            res.status(201).send('done');
            next(new Error('failed after the response'));
          });
          app.post('/answered-twice', (_req, res) => {
            runs++;
            res.status(201).send('first');
            res.status(200).send('second'); // throws ERR_HTTP_HEADERS_SENT, as without idem
          });
          if (errorHandler) app.use(idempotencyErrorHandler());
        }),
      };
    };

    it('with idempotencyErrorHandler, a next(err) releases the key whatever the error status', async () => {
      const { server, runs } = failing(framework, true);
      const key = newKey();
      for (const expected of [1, 2]) {
        const response = await post(await server, '/conflict', key);
        expect(response.status).toBe(409);
        expect(response.headers.get('idempotent-replayed')).toBeNull();
        expect(runs()).toBe(expected);
      }
    });

    it('without it, the error response is judged by its status (a 409 is stored and replayed)', async () => {
      const { server, runs } = failing(framework, false);
      const key = newKey();
      expect((await post(await server, '/conflict', key)).status).toBe(409);
      const replay = await post(await server, '/conflict', key);
      expect(replay.status).toBe(409);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(runs()).toBe(1);
    });

    it('releases the key when a route fails after its headers were sent', async () => {
      const { server, runs } = failing(framework, true);
      const key = newKey();
      await expect(post(await server, '/after-headers', key).then((r) => r.text())).rejects.toThrow();
      await until(async () => {
        const retry = await post(await server, '/after-headers', key).catch(() => null);
        await retry?.body?.cancel().catch(() => {});
        return runs() === 2;
      }, 'a retry to run');
    });

    it('keeps the response of a route that ended it before failing, and passes the error on', async () => {
      const { server, runs } = failing(framework, true);
      const key = newKey();
      // Express' error handling closes the connection of a response already sent.
      await post(await server, '/ended-then-failed', key)
        .then((response) => response.text())
        .catch(() => null);
      const replay = await post(await server, '/ended-then-failed', key);
      expect(replay.status).toBe(201);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(await replay.text()).toBe('done');
      expect(runs()).toBe(1);
    });

    it('sends and stores the first answer of a route that answers twice; the second throws', async () => {
      const { server, runs } = failing(framework, true);
      const key = newKey();
      // The error reaches Express' error handling, which closes the connection of a response already sent.
      const text = await post(await server, '/answered-twice', key)
        .then((response) => response.text())
        .catch(() => null);
      if (text !== null) expect(text).toBe('first');
      const replay = await post(await server, '/answered-twice', key);
      expect(replay.status).toBe(201);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(await replay.text()).toBe('first');
      expect(runs()).toBe(1);
    });

    it("passes idem's own failures (a throwing scope) to next()", async () => {
      const server = await serve(
        framework,
        (app) => app.post('/scoped', (_req, res) => res.sendStatus(201)),
        {
          scope: async () => {
            throw new Error('no tenant');
          },
        },
      );
      const response = await post(server, '/scoped', newKey());
      expect(response.status).toBe(500);
      expect(await response.text()).toContain('no tenant');
    });
  });
}
