export { loadWebhooksConfig, type WebhooksConfig } from './config';
export { type StartWebhooksOptions, startWebhooksServer, type WebhooksServer } from './server';
