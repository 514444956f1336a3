import type pg from 'pg';
import type { Logger } from 'pino';
import type { OutboundSettings } from '../config';

export interface DeliveryWorkerDeps {
  readonly pool: pg.Pool;
  readonly logger: Logger;
  readonly settings: OutboundSettings;
  /** A direct (session) connection string for LISTEN sluice_webhooks. */
  readonly listenConnectionString: string;
}

export interface DeliveryWorker {
  close(): Promise<void>;
}

// PLACEHOLDER (being written): claims due deliveries and sends them.
export async function startDeliveryWorker(_deps: DeliveryWorkerDeps): Promise<DeliveryWorker> {
  return { close: async () => {} };
}
