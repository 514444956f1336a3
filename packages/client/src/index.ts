export { createDataClient, type DataClient, type DataClientOptions } from './data-client';
export { createEventsClient, type EventsClient } from './events-client';
export { fromValue, toObjects, v } from './values';
export { createWebhooksClient, type WebhooksClient } from './webhooks-client';
