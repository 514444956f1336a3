import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { WebhooksStack } from '../helpers';

/** Helpers of the inbound tests: sources and secrets written by SQL, requests over real HTTP. */

export const newSecret = () => `whsec_${randomBytes(32).toString('base64')}`;

let counter = 0;
/** A source name unique within the test file. */
export const sourceName = (prefix: string) => `${prefix}-${++counter}-${randomBytes(3).toString('hex')}`;

export async function createSource(
  stack: WebhooksStack,
  options: {
    name: string;
    kind: string;
    settings?: object;
    tenantId?: string | null;
    enabled?: boolean;
    secrets?: readonly string[];
  },
): Promise<string> {
  const { rows } = await stack.pool.query<{ id: string }>(
    `insert into sluice_webhooks.sources (name, kind, settings, tenant_id, enabled)
     values ($1, $2, $3::jsonb, $4, $5) returning id`,
    [
      options.name,
      options.kind,
      JSON.stringify(options.settings ?? {}),
      options.tenantId ?? null,
      options.enabled ?? true,
    ],
  );
  const id = rows[0]?.id as string;
  for (const secret of options.secrets ?? []) await addSecret(stack, id, secret);
  return id;
}

export async function addSecret(stack: WebhooksStack, sourceId: string, secret: string, expiresAt?: Date) {
  await stack.pool.query(
    'insert into sluice_webhooks.secrets (source_id, secret, expires_at) values ($1, $2, $3)',
    [sourceId, secret, expiresAt ?? null],
  );
}

export interface Answer {
  readonly status: number;
  readonly headers: Headers;
  // biome-ignore lint/suspicious/noExplicitAny: JSON answers are read field by field in tests.
  readonly json: any;
}

export async function post(
  url: string,
  path: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
  method = 'POST',
): Promise<Answer> {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: method === 'GET' || method === 'HEAD' ? undefined : body,
    signal: AbortSignal.timeout(20_000),
  });
  const text = await response.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = text;
  }
  return { status: response.status, headers: response.headers, json };
}

export interface InboxRow {
  id: string;
  tenant_id: string | null;
  external_id: string;
  event_type: string | null;
  headers: Record<string, string>;
  body: Buffer;
  change: unknown;
  traceparent: string | null;
}

/** The inbox rows of a source, read on a connection of its own (so only committed rows). */
export async function inboxRows(stack: WebhooksStack, sourceId: string): Promise<InboxRow[]> {
  const client = new pg.Client({ connectionString: stack.db.url });
  await client.connect();
  try {
    const { rows } = await client.query<InboxRow>(
      `select id::text, tenant_id::text, external_id, event_type, headers, body, change, traceparent
         from sluice_webhooks.inbox where source_id = $1 order by id`,
      [sourceId],
    );
    return rows;
  } finally {
    await client.end();
  }
}

/** Polls `check` until it returns true (or throws on timeout). */
export async function eventually(
  check: () => Promise<boolean>,
  timeoutMs = 15_000,
  stepMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
