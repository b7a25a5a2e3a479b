import { testHttpBinding } from '@idem/http-test-suite';
import express from 'express';
import express4 from 'express4';
import { startConformanceApp } from './conformance-app.fixture.js';

for (const [name, framework] of [
  ['express 5', express],
  ['express 4', express4],
] as const) {
  testHttpBinding({ name, start: startConformanceApp(framework, 'parsers after idem') });
  testHttpBinding({
    name: `${name}, parsers before idem`,
    start: startConformanceApp(framework, 'parsers before idem'),
  });
}
