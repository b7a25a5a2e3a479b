import {
  type CapturedResponse,
  createIdempotencyHandler,
  type HttpIdempotencyOptions,
  type HttpRequest,
  type IdempotencyContext,
  type IdempotencyHandler,
} from '@idem/core';
import type {
  FastifyPluginAsync,
  FastifyRequest,
  onErrorAsyncHookHandler,
  onResponseAsyncHookHandler,
  onSendAsyncHookHandler,
  preHandlerHookHandler,
  preParsingAsyncHookHandler,
} from 'fastify';
import fp from 'fastify-plugin';
import { captureReply, headerPairs, sendResponse } from './reply-payload.js';
import { bufferRequestBody } from './request-body.js';

export {
  type IdempotencyContext,
  IdempotencyError,
  type IdempotencyErrorCode,
  type IdempotencyEvent,
  isIdempotencyError,
  type Operation,
  type ProblemDetails,
  type Store,
  type StoredHeadersOptions,
} from '@idem/core';

/** Options of the plugin: those of `@idem/core`'s HTTP layer, with `scope` and `fingerprint` over Fastify requests. */
export interface FastifyIdempotencyOptions extends Omit<HttpIdempotencyOptions, 'scope' | 'fingerprint'> {
  /**
   * Who is asking: the same key from two scopes is two operations, and a response is never replayed to
   * another scope. Runs after the route's other `preHandler` hooks, so `request.user` and the like are
   * set. Default: the `Authorization` header. Set it to your tenant or user id.
   */
  scope?: (request: FastifyRequest) => string | Promise<string>;
  /** Replace the fingerprint (default: method, path, `fingerprintHeaders` and the raw body bytes). */
  fingerprint?: (request: FastifyRequest, body: Uint8Array) => string | Promise<string>;
  /**
   * Cover every route registered after the plugin (default `true`). When `false`, only routes whose
   * `config.idempotency` is `true` or an object are covered.
   */
  global?: boolean;
}

/**
 * A route's `config.idempotency`: `false` leaves the route alone, `true` covers it with the plugin's
 * options, an object covers it with those options overriding the plugin's (e.g. `{ required: false }`).
 */
export type RouteIdempotencyConfig = boolean | Partial<Omit<FastifyIdempotencyOptions, 'global'>>;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** idem for this route: `false` to disable, `true` to enable, or options overriding the plugin's. */
    idempotency?: RouteIdempotencyConfig;
  }
  interface FastifyRequest {
    /** The idempotent operation this request runs under; `null` when idem does not cover the request. */
    idempotency: IdempotencyContext | null;
  }
}

/** One covered request on its way through the hooks. */
interface Exchange {
  body: Uint8Array;
  phase: 'parsed' | 'running' | 'answered' | 'settled';
  /** Settles once the layer is done with the record (completed, released, or never claimed). */
  settled?: Promise<unknown>;
  resolve(response: CapturedResponse): void;
  reject(error: unknown): void;
}

interface FastifyHttpRequest extends HttpRequest {
  readonly request: FastifyRequest;
}

const noop = () => {};

const plugin: FastifyPluginAsync<FastifyIdempotencyOptions> = async (fastify, options) => {
  const exchanges = new WeakMap<FastifyRequest, Exchange>();
  const pluginLayer = createIdempotencyHandler(layerOptions(options));

  // Fastify has no single "run the route" callback: the layer's `handle(request, run)` starts in
  // preHandler, and `run` resolves in onSend (the route's response) or rejects in onError.
  function hooksFor(layer: IdempotencyHandler) {
    const preParsing: preParsingAsyncHookHandler = async (request, _reply, payload) => {
      if (!layer.covers(request.method)) return payload;
      const { bytes, payload: parsed } = await bufferRequestBody(payload, layer.maxRequestBytes);
      exchanges.set(request, { body: bytes, phase: 'parsed', resolve: noop, reject: noop });
      return parsed;
    };

    // Callback style on purpose: an async hook that replies still lets the chain run on while onSend
    // hooks are pending, and the route would run after a replay.
    const preHandler: preHandlerHookHandler = (request, reply, done) => {
      const exchange = exchanges.get(request);
      if (!exchange) return done();
      const http: FastifyHttpRequest = {
        request,
        method: request.method,
        path: request.originalUrl,
        header: (name) => {
          const value = request.headers[name];
          return Array.isArray(value) ? value.join(', ') : value;
        },
        body: async () => exchange.body,
      };
      const handled = layer.handle(http, (context) => {
        const response = new Promise<CapturedResponse>((resolve, reject) => {
          Object.assign(exchange, { phase: 'running', resolve, reject });
        });
        request.idempotency = context;
        done();
        return response;
      });
      exchange.settled = handled.then(noop, noop);
      handled.then(
        (result) => {
          if (result.action === 'next') done();
          if (result.action !== 'respond') return;
          exchange.phase = 'answered';
          sendResponse(reply, result.response);
        },
        // Once the route ran, its error is Fastify's to answer (and the record is released).
        (error) => exchange.phase === 'parsed' && done(error),
      );
    };

    const onSend: onSendAsyncHookHandler<unknown> = async (request, reply, payload) => {
      const exchange = exchanges.get(request);
      if (exchange?.phase === 'running') {
        exchange.phase = 'settled';
        exchange.resolve(captureReply(reply, payload, layer.maxResponseBytes));
      }
      // Hold the response until the record is completed, so that a client who got it and retries is
      // replayed, never told "in flight".
      await exchange?.settled;
      return payload;
    };

    const onError: onErrorAsyncHookHandler = async (request, _reply, error) => {
      const exchange = exchanges.get(request);
      if (exchange?.phase !== 'running') return;
      exchange.phase = 'settled';
      exchange.reject(error);
    };

    // A hijacked reply never reaches onSend: record that the route ran, with its body unknown.
    const onResponse: onResponseAsyncHookHandler = async (request, reply) => {
      const exchange = exchanges.get(request);
      if (exchange?.phase !== 'running') return;
      exchange.phase = 'settled';
      const headers = headerPairs(reply.raw.getHeaders());
      exchange.resolve({ status: reply.raw.statusCode, headers, body: null, omitted: 'streaming' });
    };

    return { preParsing, preHandler, onSend, onError, onResponse };
  }

  fastify.decorateRequest('idempotency', null);
  fastify.addHook('onRoute', (route) => {
    const setting = route.config?.idempotency ?? options.global ?? true;
    if (setting === false) return;
    const layer =
      setting === true ? pluginLayer : createIdempotencyHandler(layerOptions({ ...options, ...setting }));
    if (![route.method].flat().some((method) => layer.covers(method))) return;
    const hooks = hooksFor(layer);
    // Last before the handler (after auth hooks, which `scope` may need); onSend first, to capture the
    // route's own payload before other hooks (compression, ...) transform it.
    route.preParsing = [...[route.preParsing ?? []].flat(), hooks.preParsing];
    route.preHandler = [...[route.preHandler ?? []].flat(), hooks.preHandler];
    route.onSend = [hooks.onSend, ...[route.onSend ?? []].flat()];
    route.onError = [...[route.onError ?? []].flat(), hooks.onError];
    route.onResponse = [...[route.onResponse ?? []].flat(), hooks.onResponse];
  });
};

function layerOptions(options: FastifyIdempotencyOptions): HttpIdempotencyOptions {
  const { scope, fingerprint, global: _global, ...rest } = options;
  const fastifyRequest = (http: HttpRequest) => (http as FastifyHttpRequest).request;
  return {
    ...rest,
    ...(scope && { scope: (http) => scope(fastifyRequest(http)) }),
    ...(fingerprint && { fingerprint: (http, body) => fingerprint(fastifyRequest(http), body) }),
  };
}

/**
 * The idem plugin: `fastify.register(idempotency, { store })`. Covers POST and PATCH routes registered
 * after it (see `methods`, `global` and the route's `config.idempotency`); replays completed requests,
 * answers conflicts and problems itself, and gives handlers `request.idempotency`.
 */
export const idempotency = fp(plugin, { fastify: '5.x', name: '@idem/fastify' });
