import { webhooks } from '@sluice/proto';
import { type Client, createChannel, createClientFactory, Metadata } from 'nice-grpc';
import { errorDetailsClientMiddleware } from 'nice-grpc-error-details';
import type { DataClientOptions } from './data-client';

export type WebhooksClient = Client<typeof webhooks.WebhooksServiceDefinition>;

/** A typed WebhooksService client (same options as the data client). */
export function createWebhooksClient(address: string, options: DataClientOptions = {}): WebhooksClient {
  const channel = options.channel ?? createChannel(address);
  const metadata = Metadata(options.token ? { authorization: `Bearer ${options.token}` } : {});
  return createClientFactory()
    .use(errorDetailsClientMiddleware)
    .create(webhooks.WebhooksServiceDefinition, channel, { '*': { metadata } });
}
