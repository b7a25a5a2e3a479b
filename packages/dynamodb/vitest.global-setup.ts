import { dynamodbEndpoint, stopDynamodbLocal } from '@idem/test-services';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    dynamodbEndpoint: string;
  }
}

/** Starts DynamoDB Local once (unless IDEM_DYNAMODB_ENDPOINT names one) and hands it to the test workers. */
export default async function setup(project: TestProject): Promise<() => void> {
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';
  project.provide('dynamodbEndpoint', await dynamodbEndpoint());
  return stopDynamodbLocal;
}
