export { changePositionNow } from './change-position';
export { loadWebhooksConfig, type WebhooksConfig } from './config';
export { verifySignature } from './inbound/verify';
export { type StartWebhooksOptions, startWebhooksServer, type WebhooksServer } from './server';
