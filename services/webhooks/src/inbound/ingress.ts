import type { SchemaCatalog } from '@sluice/db';
import type pg from 'pg';
import type { Logger } from 'pino';
import type { InboundSettings } from '../config';

export interface IngressDeps {
  readonly pool: pg.Pool;
  readonly logger: Logger;
  readonly catalog: () => SchemaCatalog;
  readonly settings: InboundSettings;
}

export interface Ingress {
  /** The port listened on (useful with port 0). */
  readonly port: number;
  close(): Promise<void>;
}

// PLACEHOLDER (being written): the HTTP ingress for POST /webhooks/{source}.
export async function startIngress(_deps: IngressDeps): Promise<Ingress> {
  return { port: 0, close: async () => {} };
}
