import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { withSession } from '@sluice/db';
import { changePositionNow, verifySignature } from '@sluice/webhooks-service';
import pg from 'pg';
import type { Logger } from 'pino';
import { localSecret } from './local-secrets';

/**
 * The webhooks demo of `npm start` on the embedded database: an inbound source "demo"
 * (Standard Webhooks) to post to and a consumer "demo" that keeps what arrives for
 * examples/webhooks-consume.ts, and an outbound endpoint owned by alice (admin of Acme) that
 * receives Acme's post changes and every published message, pointing at a small receiver in
 * this process that verifies each request's signature and prints it. Local development only.
 */
export interface DemoWebhooks {
  /** The demo source's secret (whsec_…), for the printed curl. */
  readonly sourceSecret: string;
  /** host:port of the demo receiver (the endpoint's URL). */
  readonly receiverAddress: string;
  close(): Promise<void>;
}

const DEMO_ENDPOINT_ID = '00000000-0000-4000-8000-00000000d3e0';
const ACME = '11111111-1111-1111-1111-111111111111';
const ALICE = 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa';

/** A whsec_ secret derived from this checkout's local secret (stable across restarts). */
function demoSecret(projectRoot: string, name: string): string {
  const key = createHash('sha256').update(localSecret(projectRoot, name)).digest().subarray(0, 24);
  return `whsec_${key.toString('base64')}`;
}

/**
 * Starts the receiver on `receiverAddress` (host:port; port 0 picks one) and makes sure the demo
 * source and endpoint exist in the database at `superuserUrl` (idempotent: created once, their
 * URL and secrets refreshed on each start).
 */
export async function startDemoWebhooks(options: {
  readonly superuserUrl: string;
  readonly projectRoot: string;
  readonly receiverAddress: string;
  readonly logger: Logger;
}): Promise<DemoWebhooks> {
  const sourceSecret = demoSecret(options.projectRoot, 'demo-source-secret');
  const endpointSecret = demoSecret(options.projectRoot, 'demo-endpoint-secret');
  const server = await listen(options.receiverAddress, endpointSecret);
  const { address, port } = server.address() as AddressInfo;
  const receiverAddress = `${address}:${port}`;
  // Where a new demo endpoint starts: changes committed from now on.
  const pool = new pg.Pool({ connectionString: options.superuserUrl, max: 1 });
  const start = await changePositionNow(pool).finally(() => pool.end());
  await withSession(
    { connectionString: options.superuserUrl, applicationName: 'sluice-launcher' },
    (client) =>
      ensureDemoRows(client, { sourceSecret, endpointSecret, url: `http://${receiverAddress}/`, start }),
  );
  return {
    sourceSecret,
    receiverAddress,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function ensureDemoRows(
  client: pg.ClientBase,
  demo: {
    readonly sourceSecret: string;
    readonly endpointSecret: string;
    readonly url: string;
    readonly start: string;
  },
): Promise<void> {
  await client.query('begin');
  try {
    const source = await client.query<{ id: string }>(
      `insert into sluice_webhooks.sources (name, kind, description)
       values ('demo', 'standard-webhooks', 'npm start demo: POST /webhooks/demo (Standard Webhooks)')
       on conflict (name) do update set enabled = true
       returning id`,
    );
    const sourceId = source.rows[0]?.id;
    // The consumer examples/webhooks-consume.ts reads as (service_role, every source), made now
    // so that a webhook posted before the example first runs is kept for it (a consumer created
    // later starts after what was already received).
    await client.query(
      `insert into sluice_webhooks.consumers (tenant_id, name, sources)
       select null, 'demo', '{}' where not exists (
         select 1 from sluice_webhooks.consumers where tenant_id is null and name = 'demo')`,
    );
    await client.query('delete from sluice_webhooks.secrets where source_id = $1', [sourceId]);
    await client.query('insert into sluice_webhooks.secrets (source_id, secret) values ($1, $2)', [
      sourceId,
      demo.sourceSecret,
    ]);
    await client.query(
      `insert into sluice_webhooks.endpoints
         (id, tenant_id, url, description, tables, event_types, owner_role, owner_claims, start_position)
       values ($1, $2, $3, 'npm start demo receiver (prints what it gets)',
               '[{"schema": "public", "table": "posts", "operations": []}]', '{*}',
               'authenticated', $4, $5)
       on conflict (id) do update set url = excluded.url, enabled = true, disabled_reason = null,
                                      failing_since = null`,
      [
        DEMO_ENDPOINT_ID,
        ACME,
        demo.url,
        JSON.stringify({ sub: ALICE, role: 'authenticated', tenant_id: ACME, tenant_role: 'admin' }),
        demo.start,
      ],
    );
    await client.query('delete from sluice_webhooks.secrets where endpoint_id = $1', [DEMO_ENDPOINT_ID]);
    await client.query('insert into sluice_webhooks.secrets (endpoint_id, secret) values ($1, $2)', [
      DEMO_ENDPOINT_ID,
      demo.endpointSecret,
    ]);
    await client.query('commit');
  } catch (error) {
    await client.query('rollback');
    throw error;
  }
}

function listen(address: string, secret: string): Promise<Server> {
  const m = /^(\[[^\]]+\]|[^:]*):(\d+)$/.exec(address);
  const host = (m?.[1] ?? '127.0.0.1').replace(/^\[|\]$/g, '');
  const port = Number(m?.[2] ?? 0);
  const server = createServer((req, res) => {
    void readBody(req).then((body) => {
      const verified = verifySignature(
        { kind: 'standard-webhooks', secrets: [secret], toleranceSeconds: 300 },
        { body, headers: req.headers, now: Date.now() },
      );
      const text = body.toString('utf8');
      process.stdout.write(
        `[demo endpoint] ${req.headers['webhook-id'] ?? '?'} signature ${verified.ok ? 'verified' : `REFUSED (${verified.failure})`}: ${
          text.length > 2000 ? `${text.slice(0, 2000)}…` : text
        }\n`,
      );
      res.writeHead(verified.ok ? 204 : 401).end();
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
