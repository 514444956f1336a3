import { data } from '@sluice/proto';
import { type Channel, type Client, createChannel, createClientFactory, Metadata } from 'nice-grpc';
import { errorDetailsClientMiddleware } from 'nice-grpc-error-details';

export type DataClient = Client<typeof data.DataServiceDefinition>;

export interface DataClientOptions {
  /** A JWT sent as `authorization: Bearer …` on every call; omit to call as the anonymous role. */
  readonly token?: string;
  /** Reuse a channel (one HTTP/2 connection) across clients. */
  readonly channel?: Channel;
}

/**
 * A typed DataService client. Errors are RichClientError with google.rpc details (ErrorInfo
 * reason, BadRequest field violations). Pass `{ signal }` or `{ deadline }` per call.
 */
export function createDataClient(address: string, options: DataClientOptions = {}): DataClient {
  const channel = options.channel ?? createChannel(address);
  const metadata = Metadata(options.token ? { authorization: `Bearer ${options.token}` } : {});
  return createClientFactory()
    .use(errorDetailsClientMiddleware)
    .create(data.DataServiceDefinition, channel, { '*': { metadata } });
}
