import { events } from '@sluice/proto';
import { type Client, createChannel, createClientFactory, Metadata } from 'nice-grpc';
import { errorDetailsClientMiddleware } from 'nice-grpc-error-details';
import type { DataClientOptions } from './data-client';

export type EventsClient = Client<typeof events.EventsServiceDefinition>;

/** A typed EventsService client (same options as the data client). */
export function createEventsClient(address: string, options: DataClientOptions = {}): EventsClient {
  const channel = options.channel ?? createChannel(address);
  const metadata = Metadata(options.token ? { authorization: `Bearer ${options.token}` } : {});
  return createClientFactory()
    .use(errorDetailsClientMiddleware)
    .create(events.EventsServiceDefinition, channel, { '*': { metadata } });
}
