import type { Server } from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import { type HttpIdempotencyOptions, withIdempotency } from '@idem/core';
import { nodeTestServer, type TestApp, type TestServer, testHttpBinding } from '@idem/http-test-suite';

// Core's withIdempotency for plain Web handlers (Deno.serve, Bun.serve, Workers), served here by
// @hono/node-server's Node -> Web Request adapter without Hono itself.
async function startWebHandler(options: HttpIdempotencyOptions, app: TestApp): Promise<TestServer> {
  const json = (body: unknown, status = 200, headers: Record<string, string> = {}) =>
    Response.json(body, { status, headers });
  const handler = withIdempotency(async (request, context) => {
    const url = new URL(request.url);
    const route = `${request.method} ${url.pathname}`;
    switch (route) {
      case 'POST /orders': {
        const received: unknown = await request.json();
        const n = app.record('orders');
        const id = `ord_${n}`;
        return json({ id, execution: n, received }, 201, {
          'X-Order-Id': id,
          'Set-Cookie': `last_order=${id}; Path=/`,
        });
      }
      case 'GET /orders':
      case 'HEAD /orders':
        return json({ execution: app.record('get') });
      case 'POST /binary': {
        const bytes = await request.arrayBuffer();
        app.record('binary');
        return new Response(bytes, { headers: { 'Content-Type': 'application/octet-stream' } });
      }
      case 'POST /slow': {
        const n = app.record('slow');
        await new Promise((resolve) => setTimeout(resolve, Number(url.searchParams.get('ms') ?? 0)));
        return json({ execution: n }, 201);
      }
      case 'POST /fail': {
        const n = app.record('fail');
        if (app.firstFailure(context!.key)) return json({ error: 'boom', execution: n }, 500);
        return json({ execution: n }, 201);
      }
      case 'POST /throw':
        app.record('throw');
        throw new Error(app.throwMessage);
      case 'POST /big': {
        app.record('big');
        const body = app.bigBody(Number(url.searchParams.get('bytes')));
        return new Response(body as Uint8Array<ArrayBuffer>, {
          headers: { 'Content-Type': 'application/octet-stream' },
        });
      }
      case 'POST /stream': {
        app.record('stream');
        const encoder = new TextEncoder();
        const events = [...app.streamEvents];
        const body = new ReadableStream<Uint8Array>({
          async pull(controller) {
            const event = events.shift();
            if (event === undefined) return controller.close();
            controller.enqueue(encoder.encode(event));
            await new Promise((resolve) => setTimeout(resolve, 10));
          },
        });
        return new Response(body, { headers: { 'Content-Type': 'text/event-stream' } });
      }
      case 'POST /chunks': {
        app.record('chunks');
        const encoder = new TextEncoder();
        const chunks = [...app.streamChunks];
        const body = new ReadableStream<Uint8Array>({
          async pull(controller) {
            const chunk = chunks.shift();
            if (chunk === undefined) return controller.close();
            controller.enqueue(encoder.encode(chunk));
            await new Promise((resolve) => setTimeout(resolve, app.chunkIntervalMs));
          },
        });
        return new Response(body, { headers: { 'Content-Type': 'application/x-ndjson' } });
      }
      case 'POST /context':
        app.record('context');
        return json({
          context: context
            ? { key: context.key, storageKey: context.storageKey, fingerprint: context.fingerprint }
            : null,
        });
      default:
        return new Response('not found', { status: 404 });
    }
  }, options);

  // The adapter answers 500 when the handler rejects, as a bare runtime would.
  const server = createAdaptorServer({ fetch: handler }) as Server;
  server.listen(0, '127.0.0.1');
  return nodeTestServer(server);
}

testHttpBinding({ name: 'core withIdempotency (Web handler)', start: startWebHandler });
