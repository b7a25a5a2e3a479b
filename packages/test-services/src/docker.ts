import { execFile } from 'node:child_process';

/** Whether a Docker engine answers on this machine (the client alone is not enough). */
export function dockerAvailable(): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('docker', ['info', '--format', '{{.ServerVersion}}'], { timeout: 5_000 }, (error, stdout) =>
      resolve(!error && stdout.trim().length > 0),
    );
  });
}

/**
 * Start a container through testcontainers (loaded only when a Docker engine answers), returning
 * its mapped host and port. Containers are stopped by testcontainers' reaper when the process ends.
 */
export async function startContainer(
  image: string,
  port: number,
  env: Record<string, string> = {},
): Promise<{ host: string; port: number }> {
  const { GenericContainer } = await import('testcontainers');
  const container = await new GenericContainer(image).withEnvironment(env).withExposedPorts(port).start();
  return { host: container.getHost(), port: container.getMappedPort(port) };
}

/** The error a test gets when a service it needs cannot be found or started. */
export class ServiceUnavailableError extends Error {
  /** Always `'ServiceUnavailableError'`. */
  override readonly name = 'ServiceUnavailableError';
}
