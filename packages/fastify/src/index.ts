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
  FastifyReply,
  FastifyRequest,
  onErrorHookHandler,
  onResponseHookHandler,
  onSendHookHandler,
  preHandlerHookHandler,
  preParsingHookHandler,
} from 'fastify';
import fp from 'fastify-plugin';
import { captureReply, headerPairs, restoreHead, sendResponse } from './reply-payload.js';
import { bufferRequestBody } from './request-body.js';

export {
  type HttpIdempotencyOptions,
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
export interface FastifyIdempotencyOptions
  extends Omit<HttpIdempotencyOptions, 'scope' | 'fingerprint' | 'prefix'> {
  /**
   * Who is asking: the same key from two scopes is two operations, and a response is never replayed to
   * another scope. Runs after the route's other `preHandler` hooks, so `request.user` and the like are
   * set. Default: the `Authorization` header. Set it to your tenant or user id.
   */
  scope?: ((request: FastifyRequest) => string | Promise<string>) | undefined;
  /** Replace the fingerprint (default: method, path, `fingerprintHeaders` and the raw body bytes). */
  fingerprint?: ((request: FastifyRequest, body: Uint8Array) => string | Promise<string>) | undefined;
  /**
   * Cover every route registered after the plugin (default `true`). When `false`, only routes whose
   * `config.idempotency` is `true` or an object are covered.
   */
  global?: boolean | undefined;
  /**
   * The hook in which idem decides (replay, problem or run). `'preHandler'` (default): last before the
   * handler, after the route's other `preHandler` hooks, so `scope` sees what your auth hooks set.
   * `'preParsing'`: as soon as the raw body is read, so replays and problems skip body parsing,
   * validation, the `preValidation` and `preHandler` hooks and the handler; `scope` and `fingerprint`
   * then see only what `onRequest` hooks set. Choose it only when authentication runs in `onRequest`
   * (or the default scope, the `Authorization` header, is enough): a replay answered there does not go
   * through later hooks.
   */
  decideIn?: 'preHandler' | 'preParsing' | undefined;
  /**
   * Prefix of storage keys. Default `"idem:"`. A `string` only, not `undefined`: Fastify's own register
   * options declare `prefix?: string`, and `fastify.register(idempotency, options)` takes both at once.
   */
  prefix?: string;
}

/**
 * A route's `config.idempotency`: `false` leaves the route alone, `true` covers it with the plugin's
 * options, an object covers it with those options overriding the plugin's (e.g. `{ required: false }`).
 */
export type RouteIdempotencyConfig =
  | boolean
  | {
      [Name in keyof Omit<FastifyIdempotencyOptions, 'global'>]?:
        | Omit<FastifyIdempotencyOptions, 'global'>[Name]
        | undefined;
    };

declare module 'fastify' {
  interface FastifyContextConfig {
    /** idem for this route: `false` to disable, `true` to enable, or options overriding the plugin's. */
    idempotency?: RouteIdempotencyConfig | undefined;
  }
  interface FastifyRequest {
    /** The idempotent operation this request runs under; `null` when idem does not cover the request. */
    idempotency: IdempotencyContext | null;
  }
}

/** Where a covered request keeps its {@link Exchange} (a request property: cheaper than a WeakMap). */
const EXCHANGE = Symbol('@idem/fastify exchange');

type ExchangeCarrier = FastifyRequest & { [EXCHANGE]: Exchange | null };

/** One covered request on its way through the hooks. */
class Exchange {
  /** Where the request is: body read and not yet decided, route running, idem answered, route answered. */
  phase: 'deciding' | 'running' | 'answered' | 'settled' = 'deciding';
  /** Where the layer is: not called yet, deciding or running the route, done with the record. */
  layer: 'idle' | 'busy' | 'done' = 'idle';
  resolve: (response: CapturedResponse) => void = noop;
  reject: (error: unknown) => void = noop;
  /** idem's onSend holds a response (until the record is completed): Fastify has not written it yet. */
  holding = false;
  /** The route's response as onSend first saw it, and whether a second send came while it was held. */
  captured: CapturedResponse | undefined = undefined;
  sentTwice = false;
  /** onSend continuations waiting for the layer to be done with the record. */
  private waiting: Array<() => void> | undefined;

  constructor(readonly body: Uint8Array) {}

  /** The route's response, as onSend (or onError, onResponse) will report it. */
  run(): Promise<CapturedResponse> {
    this.phase = 'running';
    return new Promise<CapturedResponse>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /** Call `then` once the record is completed, released, or was never claimed. */
  whenDone(then: () => void): void {
    if (this.layer !== 'busy') then();
    else if (this.waiting) this.waiting.push(then);
    else this.waiting = [then];
  }

  done(): void {
    this.layer = 'done';
    const waiting = this.waiting;
    this.waiting = undefined;
    if (waiting) for (const then of waiting) then();
  }
}

/** The request as the layer sees it (and, through `request`, as `scope` and `fingerprint` see it). */
class FastifyHttpRequest implements HttpRequest {
  readonly method: string;
  readonly path: string;

  constructor(
    readonly request: FastifyRequest,
    private readonly bytes: Uint8Array,
  ) {
    this.method = request.method;
    this.path = request.originalUrl;
  }

  header(name: string): string | undefined {
    const value = this.request.headers[name];
    return Array.isArray(value) ? value.join(', ') : value;
  }

  body(): Uint8Array {
    return this.bytes;
  }
}

function noop() {}

const exchangeOf = (request: FastifyRequest) => (request as ExchangeCarrier)[EXCHANGE];

/** The name of idem's onSend hook, kept by the copy Fastify binds to its instance (`bound <name>`). */
const ON_SEND_NAME = '@idem/fastify onSend';

type RouteContext = { onSend: Array<{ readonly name: string }> | null };

/**
 * `putFirst(request, capture)` makes `capture` the first onSend hook of the request's route, before the
 * app's. Fastify runs the hooks of `app.addHook('onSend')` before a route's own and offers no way to go
 * first: without this, idem would store a payload they already rewrote, and a replay would go through
 * them again. It reaches the route's context, whose `onSend` list Fastify runs on each send, through
 * Fastify's `kRouteContext` symbol (not exported; found on the first covered request, once per
 * registration, since two copies of Fastify have two symbols). Done on the route's first covered
 * request; after that, a property read and a comparison per covered request.
 */
function createPutFirst() {
  let contextKey: symbol | null | undefined;
  return (request: FastifyRequest, capture: onSendHookHandler<unknown>): void => {
    if (contextKey === undefined) {
      const symbols = Object.getOwnPropertySymbols(request);
      contextKey = symbols.find((symbol) => symbol.description === 'fastify.context') ?? null;
      if (contextKey === null)
        request.log.warn(
          "@idem/fastify: cannot run its onSend hook before the app's on this Fastify version: an " +
            'app-level onSend hook that rewrites the payload is applied twice to replays',
        );
    }
    if (contextKey === null) return;
    const context = (request as unknown as Record<symbol, RouteContext | undefined>)[contextKey];
    const hooks = context?.onSend;
    if (!context || !hooks || hooks[0] === capture) return;
    const bound = `bound ${ON_SEND_NAME}`;
    context.onSend = [capture, ...hooks.filter((hook) => hook !== capture && hook.name !== bound)];
  };
}

const plugin: FastifyPluginAsync<FastifyIdempotencyOptions> = async (fastify, options) => {
  const pluginLayer = createIdempotencyHandler(layerOptions(options));
  const putFirst = createPutFirst();

  // Fastify has no single "run the route" callback: the layer's `handle(request, run)` starts in
  // preHandler (preParsing with `decideIn: 'preParsing'`), and `run` resolves in onSend (the route's
  // response) or rejects in onError.
  // Callback-style hooks throughout: an async hook costs a promise per hook per request.
  function hooksFor(layer: IdempotencyHandler) {
    /**
     * Decide for a covered request and go on with `proceed` (Fastify's `done` of the deciding hook) when
     * the route is to run or the request passes through; a replay or problem is sent instead.
     */
    const decide = (
      request: FastifyRequest,
      reply: FastifyReply,
      exchange: Exchange,
      proceed: (error?: Error) => void,
      answered?: () => void,
    ) => {
      exchange.layer = 'busy';
      layer
        .handle(new FastifyHttpRequest(request, exchange.body), (context) => {
          // Answered while idem decided (Fastify's handlerTimeout, a timer of another plugin): that answer
          // goes out once the claim is given back, and the route does not run.
          if (exchange.holding) {
            exchange.phase = 'answered';
            return Promise.reject(new Error('@idem/fastify: the request was answered before its route ran'));
          }
          const response = exchange.run();
          request.idempotency = context;
          proceed();
          return response;
        })
        .then(
          (result) => {
            exchange.done();
            if (result.action === 'next') proceed();
            if (result.action !== 'respond') return;
            exchange.phase = 'answered';
            sendResponse(reply, result.response);
            answered?.();
          },
          // Once the route ran, its error is Fastify's to answer (and the record is released).
          (error) => {
            exchange.done();
            if (exchange.phase === 'deciding') proceed(error);
          },
        );
    };

    // Reads the raw body for the fingerprint and hands Fastify an identical stream. With `decides`
    // (decideIn: 'preParsing'), decides at once; when idem answers, whatever is left of the body (past
    // maxRequestBytes) is drained, so that the connection can carry the answer.
    const preParsingHook =
      (decides: boolean): preParsingHookHandler =>
      (request, reply, payload, done) => {
        if (!layer.covers(request.method)) return done(null, payload);
        putFirst(request, onSend);
        bufferRequestBody(payload, layer.maxRequestBytes, (error, buffered) => {
          if (error !== null || buffered === undefined) return done(error ?? undefined);
          const exchange = new Exchange(buffered.bytes);
          (request as ExchangeCarrier)[EXCHANGE] = exchange;
          if (!decides) return done(null, buffered.payload);
          decide(
            request,
            reply,
            exchange,
            (failure) => (failure === undefined ? done(null, buffered.payload) : done(failure)),
            () => buffered.payload.resume(),
          );
        });
      };

    // Callback style on purpose: an async hook that replies still lets the chain run on while onSend
    // hooks are pending, and the route would run after a replay.
    const preHandler: preHandlerHookHandler = (request, reply, done) => {
      const exchange = exchangeOf(request);
      if (!exchange) return done();
      decide(request, reply, exchange, done);
    };

    // First of all the route's onSend hooks (putFirst): it stores the route's own payload, before
    // any hook rewrites or compresses it, and replays go through all of those hooks as the original did.
    const onSend: onSendHookHandler<unknown> = (request, reply, payload, done) => {
      const exchange = exchangeOf(request);
      if (!exchange) return done(null, payload);
      if (exchange.holding) {
        // A second send while the first is held. Fastify sends again what an async handler resolves
        // with (`undefined` when it sent without returning `reply`) as long as the reply does not look
        // sent, which a held one does not; its write would fail once the first went out. Dropped, as
        // Fastify drops a send after the response was written (and warns, unless it is that undefined).
        if (payload !== undefined)
          reply.log.warn(
            `@idem/fastify: a second response to ${request.method} ${request.url} was dropped: the reply was already sent (return reply after reply.send in an async handler)`,
          );
        // Its way here (an error thrown after the send) may have set another status and headers.
        exchange.sentTwice = true;
        return;
      }
      if (exchange.phase === 'running') {
        exchange.phase = 'settled';
        exchange.captured = captureReply(reply, payload, layer.maxResponseBytes);
        exchange.resolve(exchange.captured);
      }
      // Hold the response until the record is completed, so that a client who got it and retries is
      // replayed, never told "in flight".
      exchange.holding = true;
      exchange.whenDone(() => {
        exchange.holding = false;
        if (exchange.sentTwice && exchange.captured) restoreHead(reply, exchange.captured);
        done(null, payload);
      });
    };
    Object.defineProperty(onSend, 'name', { value: ON_SEND_NAME });

    const onError: onErrorHookHandler = (request, _reply, error, done) => {
      const exchange = exchangeOf(request);
      if (exchange?.phase === 'running') {
        exchange.phase = 'settled';
        exchange.reject(error);
      }
      done();
    };

    // A hijacked reply never reaches onSend: record that the route ran, with its body unknown.
    const onResponse: onResponseHookHandler = (request, reply, done) => {
      const exchange = exchangeOf(request);
      if (exchange?.phase === 'running') {
        exchange.phase = 'settled';
        const headers = headerPairs(reply.raw.getHeaders());
        exchange.resolve({ status: reply.raw.statusCode, headers, body: null, omitted: 'streaming' });
      }
      done();
    };

    return {
      preParsing: preParsingHook(false),
      decidingPreParsing: preParsingHook(true),
      preHandler,
      onSend,
      onError,
      onResponse,
    };
  }

  fastify.decorateRequest('idempotency', null);
  fastify.decorateRequest(EXCHANGE, null);
  fastify.addHook('onRoute', (route) => {
    const setting = route.config?.idempotency ?? options.global ?? true;
    if (setting === false) return;
    const routeOptions = setting === true ? options : withRouteSettings(options, setting);
    const layer = setting === true ? pluginLayer : createIdempotencyHandler(layerOptions(routeOptions));
    if (![route.method].flat().some((method) => layer.covers(method))) return;
    const hooks = hooksFor(layer);
    // Last before the handler (after auth hooks, which `scope` may need). onSend first among the route's
    // own hooks, where Fastify lets a plugin put it; the route's first covered request moves it before
    // the app's as well (putFirst), and this copy is then dropped.
    const decidesEarly = routeOptions.decideIn === 'preParsing';
    route.preParsing = [
      ...hookList(route.preParsing),
      decidesEarly ? hooks.decidingPreParsing : hooks.preParsing,
    ];
    if (!decidesEarly) route.preHandler = [...hookList(route.preHandler), hooks.preHandler];
    route.onSend = [hooks.onSend, ...hookList(route.onSend)];
    route.onError = [...hookList(route.onError), hooks.onError];
    route.onResponse = [...hookList(route.onResponse), hooks.onResponse];
  });
};

/** A route's hooks of one kind as a list (a route option holds one hook or an array of them). */
function hookList<Hook>(hooks: Hook | Hook[] | undefined): Hook[] {
  if (!hooks) return [];
  return Array.isArray(hooks) ? hooks : [hooks];
}

/**
 * The plugin's options with a route's settings over them. A setting given as `undefined` keeps the
 * plugin's value (a spread would replace it with `undefined`, that is with the default).
 */
function withRouteSettings(
  options: FastifyIdempotencyOptions,
  setting: Exclude<RouteIdempotencyConfig, boolean>,
): FastifyIdempotencyOptions {
  const merged: Record<string, unknown> = { ...options };
  for (const [name, value] of Object.entries(setting)) if (value !== undefined) merged[name] = value;
  return merged as unknown as FastifyIdempotencyOptions;
}

function layerOptions(options: FastifyIdempotencyOptions): HttpIdempotencyOptions {
  const { scope, fingerprint, global: _global, decideIn: _decideIn, ...rest } = options;
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
