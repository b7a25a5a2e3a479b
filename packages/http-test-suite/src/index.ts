export { nodeTestServer } from './node-server.js';
export { slowClaiming, slowCompleting } from './slow-store.js';
export { type HttpBindingTestOptions, type SuiteCases, testHttpBinding } from './suite.js';
export {
  bigBody,
  CHUNK_INTERVAL_MS,
  createTestApp,
  STREAM_CHUNKS,
  STREAM_EVENTS,
  type TestApp,
  type TestRoute,
  type TestServer,
} from './test-app.js';
export { unset, unsetHttpOptions } from './unset-options.js';
