import { encryptedStore } from '@idem/core';
import { memoryStore } from '@idem/memory';
import { testStore } from '@idem/store-test-suite';

// The definition of a correct store, over core's encryption wrapper (the reference model runs over
// encryptedStore(redis) in stores.model.test.ts).
testStore({
  name: 'encryptedStore(memoryStore())',
  createStore: () =>
    encryptedStore(memoryStore(), {
      keys: [
        { id: 'current', key: crypto.getRandomValues(new Uint8Array(32)) },
        { id: 'previous', key: crypto.getRandomValues(new Uint8Array(16)) },
      ],
    }),
});
