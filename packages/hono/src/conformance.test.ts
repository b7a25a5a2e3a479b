import { testHttpBinding } from '@idem/http-test-suite';
import { startHonoApp } from './conformance-app.js';

testHttpBinding({ name: 'hono', start: startHonoApp });
