import { inject } from 'vitest';

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';
// dynamodbEndpoint() in the workers then finds the instance the global setup started.
process.env['IDEM_DYNAMODB_ENDPOINT'] = inject('dynamodbEndpoint');
