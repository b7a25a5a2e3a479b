import { testStore } from '@idem/store-test-suite';
import { type MemoryStore, memoryStore } from './index.js';

testStore({
  name: 'memory',
  createStore: () => memoryStore(),
  teardown: (store) => (store as MemoryStore).close(),
});
