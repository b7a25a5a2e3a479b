export { dockerAvailable, ServiceUnavailableError } from './docker.js';
export {
  DYNAMODB_LOCAL_CREDENTIALS,
  DYNAMODB_LOCAL_REGION,
  dynamodbEndpoint,
  stopDynamodbLocal,
} from './dynamodb.js';
export { freePort } from './free-port.js';
export { postgresUrl } from './postgres.js';
export { redisUrl } from './redis.js';
export { RedisClusterProcesses, RedisServerProcess } from './redis-server-process.js';
export { SilentServer } from './silent-server.js';
