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
  handleOrStream,
  isNullBodyStatus,
  readBodyWithLimit,
  type StreamingCapture,
  toWebResponse,
  type WebHandler,
  type WebResponseCapture,
  webHttpRequest,
  withBody,
  withIdempotency,
} from './web.js';
