export { dockerAvailable, ServiceUnavailableError } from './docker.js';
export { postgresUrl } from './postgres.js';
export { redisUrl } from './redis.js';
