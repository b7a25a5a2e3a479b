import { testHttpBinding } from '@idem/http-test-suite';
import { startSuiteServer } from './suite-routes.js';

testHttpBinding({ name: 'fastify', start: startSuiteServer });
testHttpBinding({
  name: "fastify, decideIn: 'preParsing'",
  start: (options, app) => startSuiteServer(options, app, 'preParsing'),
});
