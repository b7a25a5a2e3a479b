import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestServer } from './test-app.js';

/**
 * Wraps a Node `http.Server` that was asked to listen (port 0 on 127.0.0.1) as a {@link TestServer}:
 * waits until it listens, and closes it together with its keep-alive connections.
 */
export async function nodeTestServer(server: Server): Promise<TestServer> {
  if (!server.listening) {
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
  }
  const address = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${address.port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}
