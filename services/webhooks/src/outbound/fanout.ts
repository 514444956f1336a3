import type { Database, SchemaCatalog } from '@sluice/db';
import type pg from 'pg';
import type { Logger } from 'pino';

export interface FanoutDeps {
  readonly pool: pg.Pool;
  readonly db: Database;
  readonly logger: Logger;
  readonly catalog: () => SchemaCatalog;
  /** A direct (session) connection string for the change feed's LISTEN. */
  readonly listenConnectionString: string;
}

export interface Fanout {
  close(): Promise<void>;
}

// PLACEHOLDER (being written): turns captured row changes into messages and deliveries.
export async function startFanout(_deps: FanoutDeps): Promise<Fanout> {
  return { close: async () => {} };
}
