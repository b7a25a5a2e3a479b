export {
  createIdempotencyHandler,
  type HttpIdempotencyOptions,
  type IdempotencyHandler,
  problemResponse,
} from './handler.js';
export { type IncomingBody, type IncomingBodyResult, readIncomingBody } from './incoming-body.js';
export { type StoredHeadersOptions, storedHeaderFilter } from './stored-headers.js';
export type {
  CapturedResponse,
  HandleResult,
  HttpRequest,
  HttpResponse,
  IdempotencyContext,
} from './types.js';
export {
  captureWebResponse,
  isNullBodyStatus,
  readBodyWithLimit,
  toWebResponse,
  type WebHandler,
  webHttpRequest,
  withBody,
  withIdempotency,
} from './web.js';
