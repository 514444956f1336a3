import { invalidArgument, Reason, SluiceError } from '@sluice/core';
import { compile, type Database, mapPgError, type SchemaCatalog } from '@sluice/db';
import { compileMatcher } from '@sluice/events-service';
import { Filter, webhooks } from '@sluice/proto';
import { Access, compileFilter } from '@sluice/query';
import { sql } from 'kysely';
import type pg from 'pg';
import { changePositionNow } from '../change-position';
import type { OutboundSettings } from '../config';
import { generateSecret, secretKey } from '../secrets';
import { type ChangeOperation, readTableSelections, type StoredTableSelection } from '../stored-settings';
import {
  type Context,
  callerTenant,
  checkDescription,
  graceInterval,
  HEADER_NAME,
  HEADER_VALUE,
  invalid,
  isServiceRole,
  listByCreation,
  notFound,
  rowsOf,
  SERVICE_ROLE,
  scopeOf,
  timestampOf,
  uuidField,
} from './common';
import { EVENT_TYPE, readMessages } from './messages';

/**
 * Endpoints: the outbound half of the admin API. An endpoint is owned by an identity (role and
 * claims) whose RLS filters the row changes it receives; the caller owns what it creates, and
 * only service_role may name a tenant user as owner.
 */

export interface EndpointHandlersDeps {
  readonly db: Database;
  readonly pool: pg.Pool;
  readonly catalog: () => SchemaCatalog;
  readonly outbound: OutboundSettings;
}

const MAX_URL_LENGTH = 2048;
const MAX_HEADERS = 50;
const MAX_HEADER_VALUE = 4096;
const MAX_TABLES = 100;
const MAX_EVENT_TYPES = 100;

/** Headers the service sets itself (signature, body framing, host) or that belong to the connection. */
const RESERVED_HEADERS = new Set([
  'content-type',
  'content-length',
  'host',
  'connection',
  'transfer-encoding',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'traceparent',
  'tracestate',
]);

/** Claims that describe the token rather than who it is: not kept with an owner. */
const TOKEN_CLAIMS = ['exp', 'iat', 'nbf', 'jti', 'aud', 'iss'];

const OPERATIONS: Readonly<Record<number, ChangeOperation>> = {
  [webhooks.Operation.OPERATION_INSERT]: 'INSERT',
  [webhooks.Operation.OPERATION_UPDATE]: 'UPDATE',
  [webhooks.Operation.OPERATION_DELETE]: 'DELETE',
};

const ORDERINGS: Readonly<Record<number, string>> = {
  [webhooks.Ordering.ORDERING_UNSPECIFIED]: 'none',
  [webhooks.Ordering.ORDERING_NONE]: 'none',
  [webhooks.Ordering.ORDERING_KEY]: 'key',
  [webhooks.Ordering.ORDERING_TENANT]: 'tenant',
};

const COLUMNS = sql`id, tenant_id, url, description, headers::text as headers, tables::text as tables,
  to_jsonb(event_types)::text as event_types, ordering, send_traceparent, owner_role, owner_claims::text as owner_claims,
  enabled, disabled_reason, failing_since, created_at, updated_at`;

export function checkUrl(url: string, field: string, settings: OutboundSettings): string {
  if (url === '') throw invalid(field, 'a URL is required', Reason.invalidArgument);
  if (url.length > MAX_URL_LENGTH) throw invalid(field, `at most ${MAX_URL_LENGTH} characters`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid(field, 'not an absolute URL');
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw invalid(field, 'http or https only');
  if (settings.httpsOnly && parsed.protocol !== 'https:')
    throw invalid(field, 'https only (WEBHOOKS_HTTPS_ONLY)');
  if (parsed.username !== '' || parsed.password !== '')
    throw invalid(field, 'credentials in the URL are not allowed (use headers)');
  if (parsed.hostname === '') throw invalid(field, 'a host is required');
  if (parsed.hash !== '') throw invalid(field, 'no fragment (#…)');
  return url;
}

export function checkHeaders(
  headers: Readonly<Record<string, string>>,
  field: string,
): Record<string, string> {
  const entries = Object.entries(headers);
  if (entries.length > MAX_HEADERS) throw invalid(field, `at most ${MAX_HEADERS} headers`);
  const out: Record<string, string> = {};
  for (const [name, value] of entries) {
    const f = `${field}[${JSON.stringify(name)}]`;
    if (!HEADER_NAME.test(name)) throw invalid(f, 'header names are lower-case HTTP tokens');
    if (name.startsWith('webhook-') || RESERVED_HEADERS.has(name))
      throw invalid(f, `${name} is set by the service and cannot be configured`);
    if (value.length > MAX_HEADER_VALUE || !HEADER_VALUE.test(value))
      throw invalid(f, `one line of at most ${MAX_HEADER_VALUE} characters`);
    out[name] = value;
  }
  return out;
}

export function checkEventTypes(types: readonly string[], field: string): string[] {
  if (types.length > MAX_EVENT_TYPES) throw invalid(field, `at most ${MAX_EVENT_TYPES} event types`);
  types.forEach((t, i) => {
    if (t !== '*' && !EVENT_TYPE.test(t))
      throw invalid(`${field}[${i}]`, "an event type (letters, digits, '.', '_', '-') or *");
  });
  return [...new Set(types)];
}

/** The owner an endpoint is created with, and the tenant it belongs to. */
interface OwnerOf {
  readonly role: string;
  readonly claims: Record<string, unknown>;
  readonly tenant: string | null;
}

function ownerFor(context: Context, req: webhooks.CreateEndpointRequest): OwnerOf {
  const requested = req.owner;
  const named = requested && (requested.role !== '' || requested.subject !== '' || requested.tenantId !== '');
  const endpointTenant = req.endpoint?.tenantId ?? '';
  if (!isServiceRole(context)) {
    if (named) {
      throw new SluiceError('PERMISSION_DENIED', 'Only service_role may name an endpoint owner', {
        reason: Reason.permissionDenied,
        violations: [{ field: 'owner', description: 'the caller owns the endpoints it creates' }],
      });
    }
    const own = callerTenant(context);
    if (endpointTenant !== '' && endpointTenant.toLowerCase() !== own) {
      throw new SluiceError('PERMISSION_DENIED', 'Only service_role may act for another tenant', {
        reason: Reason.permissionDenied,
        violations: [{ field: 'endpoint.tenant_id', description: 'not the tenant of the caller' }],
      });
    }
    const claims: Record<string, unknown> = Object.fromEntries(
      Object.entries(context.identity.claims).filter(([k]) => !TOKEN_CLAIMS.includes(k)),
    );
    // The tenant as the row stores it (the policy compares the owner's claim with it as text).
    if (own !== null) claims.tenant_id = own;
    return { role: context.identity.role, claims, tenant: own };
  }
  if (!named) {
    // A service_role-owned endpoint receives every tenant's rows: it is service-level only.
    if (endpointTenant !== '')
      throw invalid(
        'owner',
        "a tenant's endpoint needs its owner (role authenticated, subject, tenant_id)",
        Reason.invalidArgument,
      );
    return { role: SERVICE_ROLE, claims: { role: SERVICE_ROLE }, tenant: null };
  }
  if (requested.role !== '' && requested.role !== 'authenticated')
    throw invalid('owner.role', 'a named owner is a tenant user: role authenticated');
  if (requested.subject === '')
    throw invalid('owner.subject', 'the subject (sub) of the owner is required', Reason.invalidArgument);
  if (requested.subject.length > 255) throw invalid('owner.subject', 'at most 255 characters');
  const tenant = uuidField(requested.tenantId, 'owner.tenant_id');
  if (endpointTenant !== '' && endpointTenant.toLowerCase() !== tenant)
    throw invalid('endpoint.tenant_id', 'must be the tenant of the owner (or empty)');
  return {
    role: 'authenticated',
    claims: { sub: requested.subject, role: 'authenticated', tenant_id: tenant },
    tenant,
  };
}

export function toEndpoint(row: Record<string, string | null>): webhooks.Endpoint {
  const claims = JSON.parse(row.owner_claims ?? '{}') as Record<string, unknown>;
  const ordering = Object.entries(ORDERINGS).find(([k, v]) => v === row.ordering && k !== '0');
  return {
    id: row.id ?? '',
    tenantId: row.tenant_id ?? '',
    url: row.url ?? '',
    description: row.description ?? '',
    headers: JSON.parse(row.headers ?? '{}') as Record<string, string>,
    tables: readTableSelections(JSON.parse(row.tables ?? '[]')).map((t) => ({
      schema: t.schema,
      table: t.table,
      operations: t.operations.map((o) =>
        Number(Object.entries(OPERATIONS).find(([, n]) => n === o)?.[0] ?? 0),
      ),
      filter: t.filter === undefined ? undefined : Filter.fromJSON(t.filter),
    })),
    eventTypes: JSON.parse(row.event_types ?? '[]') as string[],
    ordering: (ordering ? Number(ordering[0]) : 0) as webhooks.Ordering,
    sendTraceparent: row.send_traceparent === 't',
    enabled: row.enabled === 't',
    disabledReason: row.disabled_reason ?? '',
    failingSince: timestampOf(row.failing_since),
    owner: {
      role: row.owner_role ?? '',
      subject: typeof claims.sub === 'string' ? claims.sub : '',
      tenantId: typeof claims.tenant_id === 'string' ? claims.tenant_id : '',
    },
    createdAt: timestampOf(row.created_at),
    updatedAt: timestampOf(row.updated_at),
  };
}

export function endpointHandlers(deps: EndpointHandlersDeps) {
  const { db } = deps;

  async function capturedTables(): Promise<Set<string>> {
    // sluice.captured_tables is the service login's to read, not the callers'.
    const { rows } = await deps.pool
      .query<{ schema: string; table: string }>('select schema, "table" from sluice.captured_tables')
      .catch((error: unknown) => {
        throw mapPgError(error);
      });
    return new Set(rows.map((r) => `${r.schema}.${r.table}`));
  }

  /**
   * Validates table selections as the events service validates a Subscribe: the table exists,
   * the owner's role may select it, its changes are captured, the filter compiles against it.
   */
  async function tablesOf(
    selections: readonly webhooks.TableSelection[],
    ownerRole: string,
    field: string,
  ): Promise<StoredTableSelection[]> {
    if (selections.length > MAX_TABLES) throw invalid(field, `at most ${MAX_TABLES} tables`);
    if (selections.length === 0) return [];
    const access = new Access(deps.catalog(), ownerRole);
    const captured = await capturedTables();
    const seen = new Set<string>();
    return selections.map((t, i) => {
      const f = `${field}[${i}]`;
      const table = access.table(t.schema || 'public', t.table, `${f}.table`, 'select');
      const key = `${table.schema}.${table.name}`;
      if (seen.has(key)) throw invalidArgument(Reason.duplicateTable, `${f}.table`, `${key} is listed twice`);
      seen.add(key);
      if (!captured.has(key)) {
        throw new SluiceError(
          'FAILED_PRECONDITION',
          `Change capture is not enabled for ${key} (sluice.enable_changes)`,
          {
            reason: Reason.captureDisabled,
            violations: [{ field: `${f}.table`, description: 'change capture is not enabled' }],
          },
        );
      }
      const operations = t.operations.map((op, j) => {
        const name = OPERATIONS[op as number];
        if (!name)
          throw invalidArgument(Reason.unknownOperation, `${f}.operations[${j}]`, `Unknown operation ${op}`);
        return name;
      });
      if (t.filter) {
        // As a Subscribe filter: what the fan-out evaluates in memory must compile there, and
        // what it leaves to PostgreSQL must compile as the data service's SQL.
        const matcher = compileMatcher(
          t.filter,
          table.columns.map((c) => ({ name: c.name, typeOid: c.typeOid, collation: c.collation })),
          access.catalog.types,
          `${f}.filter`,
          (name, field) => {
            access.column(table, name, field, 'select');
          },
        );
        if (!matcher.exact) compileFilter(t.filter, access, table, `${f}.filter`);
      }
      return {
        schema: table.schema,
        table: table.name,
        operations: [...new Set(operations)],
        ...(t.filter ? { filter: Filter.toJSON(t.filter) } : {}),
      };
    });
  }

  function orderingOf(ordering: webhooks.Ordering, field: string): string {
    const name = ORDERINGS[ordering as number];
    if (!name) throw invalid(field, `unknown ordering ${ordering}`);
    return name;
  }

  async function getRow(context: Context, id: string): Promise<Record<string, string | null>> {
    const [result] = await db.run(scopeOf(context, true), [
      compile(sql`select ${COLUMNS} from sluice_webhooks.endpoints where id = ${id}::uuid`),
    ]);
    const row = rowsOf(result)[0];
    if (!row) throw notFound('endpoint', id);
    return row;
  }

  return {
    async createEndpoint(
      req: webhooks.CreateEndpointRequest,
      context: Context,
    ): Promise<webhooks.CreateEndpointResponse> {
      const e = req.endpoint;
      if (!e) throw invalid('endpoint', 'an endpoint is required', Reason.invalidArgument);
      const url = checkUrl(e.url, 'endpoint.url', deps.outbound);
      const description = checkDescription(e.description, 'endpoint.description');
      const headers = checkHeaders(e.headers, 'endpoint.headers');
      const eventTypes = checkEventTypes(e.eventTypes, 'endpoint.event_types');
      const ordering = orderingOf(e.ordering, 'endpoint.ordering');
      if (req.secret !== '' && !secretKey(req.secret))
        throw invalid('secret', 'whsec_ followed by the base64 of 24 to 64 bytes');
      const secret = req.secret === '' ? generateSecret() : req.secret;
      const owner = ownerFor(context, req);
      const tables = await tablesOf(e.tables, owner.role, 'endpoint.tables');
      // Only a fallback for a database whose fan-out has never run: the start position is the
      // fan-out's own, read in the insert's transaction and held (FOR SHARE) until it commits, so
      // the fan-out cannot pass a change this endpoint should get before the endpoint is visible.
      const fallbackStart = await changePositionNow(deps.pool).catch((error: unknown) => {
        throw mapPgError(error, context.sluice.signal);
      });
      const row = await db.transaction(scopeOf(context, false), async (tx) => {
        const inserted = rowsOf(
          await tx.query(
            compile(sql`insert into sluice_webhooks.endpoints
                (tenant_id, url, description, headers, tables, event_types, ordering, send_traceparent,
                 owner_role, owner_claims, start_position)
              values (${owner.tenant}::uuid, ${url}, ${description}, ${JSON.stringify(headers)}::jsonb,
                 ${JSON.stringify(tables)}::jsonb, ${eventTypes}::text[], ${ordering}, ${e.sendTraceparent},
                 ${owner.role}, ${JSON.stringify(owner.claims)}::jsonb,
                 coalesce(sluice_webhooks.endpoint_start_position(), ${fallbackStart}))
              returning ${COLUMNS}`),
          ),
        )[0];
        if (!inserted) throw new Error('insert returned no row');
        await tx.query(
          compile(
            sql`select sluice_webhooks.set_secret(null, ${inserted.id}::uuid, ${secret}, interval '0')`,
          ),
        );
        return inserted;
      });
      return { endpoint: toEndpoint(row), secret };
    },

    async getEndpoint(
      req: webhooks.GetEndpointRequest,
      context: Context,
    ): Promise<webhooks.GetEndpointResponse> {
      return { endpoint: toEndpoint(await getRow(context, uuidField(req.id, 'id'))) };
    },

    async listEndpoints(
      req: webhooks.ListEndpointsRequest,
      context: Context,
    ): Promise<webhooks.ListEndpointsResponse> {
      const { page, nextPageToken } = await listByCreation(
        db,
        context,
        req,
        { table: sql`sluice_webhooks.endpoints`, columns: COLUMNS },
        // An endpoint's headers and filters can reach hundreds of KB each.
        (r) => Buffer.byteLength(r.headers ?? '') + Buffer.byteLength(r.tables ?? ''),
      );
      return { endpoints: page.map(toEndpoint), nextPageToken };
    },

    async updateEndpoint(
      req: webhooks.UpdateEndpointRequest,
      context: Context,
    ): Promise<webhooks.UpdateEndpointResponse> {
      const id = uuidField(req.id, 'id');
      const url = req.url === undefined ? undefined : checkUrl(req.url, 'url', deps.outbound);
      const description =
        req.description === undefined ? undefined : checkDescription(req.description, 'description');
      const headers = req.setHeaders ? checkHeaders(req.headers, 'headers') : undefined;
      const eventTypes = req.setEventTypes ? checkEventTypes(req.eventTypes, 'event_types') : undefined;
      const ordering = req.ordering === 0 ? undefined : orderingOf(req.ordering, 'ordering');
      // Tables are checked against the owner's role, which the row holds.
      const current = await getRow(context, id);
      const tables = req.setTables
        ? await tablesOf(req.tables, current.owner_role ?? '', 'tables')
        : undefined;
      const sets = [sql`updated_at = now()`];
      if (url !== undefined) sets.push(sql`url = ${url}`);
      if (description !== undefined) sets.push(sql`description = ${description}`);
      if (headers !== undefined) sets.push(sql`headers = ${JSON.stringify(headers)}::jsonb`);
      if (tables !== undefined) sets.push(sql`tables = ${JSON.stringify(tables)}::jsonb`);
      if (eventTypes !== undefined) sets.push(sql`event_types = ${eventTypes}::text[]`);
      if (ordering !== undefined) sets.push(sql`ordering = ${ordering}`);
      if (req.sendTraceparent !== undefined) sets.push(sql`send_traceparent = ${req.sendTraceparent}`);
      if (req.enabled === true) sets.push(sql`enabled = true, disabled_reason = null, failing_since = null`);
      if (req.enabled === false)
        sets.push(
          sql`enabled = false, disabled_reason = case when enabled then 'manual' else disabled_reason end`,
        );
      const [result] = await db.run(scopeOf(context, false), [
        compile(
          sql`update sluice_webhooks.endpoints set ${sql.join(sets, sql`, `)} where id = ${id}::uuid returning ${COLUMNS}`,
        ),
      ]);
      const row = rowsOf(result)[0];
      if (!row) throw notFound('endpoint', id);
      return { endpoint: toEndpoint(row) };
    },

    async deleteEndpoint(
      req: webhooks.DeleteEndpointRequest,
      context: Context,
    ): Promise<webhooks.DeleteEndpointResponse> {
      const id = uuidField(req.id, 'id');
      const [result] = await db.run(scopeOf(context, false), [
        compile(sql`delete from sluice_webhooks.endpoints where id = ${id}::uuid returning id`),
      ]);
      if (!result?.rowCount) throw notFound('endpoint', id);
      return {};
    },

    async rotateEndpointSecret(
      req: webhooks.RotateEndpointSecretRequest,
      context: Context,
    ): Promise<webhooks.RotateEndpointSecretResponse> {
      const id = uuidField(req.id, 'id');
      const grace = graceInterval(req.graceSeconds, 'grace_seconds');
      await getRow(context, id);
      const secret = generateSecret();
      const [result] = await db.run(scopeOf(context, false), [
        compile(
          sql`select sluice_webhooks.set_secret(null, ${id}::uuid, ${secret}, ${grace}::interval) as until`,
        ),
      ]);
      return { secret, previousValidUntil: timestampOf(rowsOf(result)[0]?.until) };
    },

    async sendTestMessage(
      req: webhooks.SendTestMessageRequest,
      context: Context,
    ): Promise<webhooks.SendTestMessageResponse> {
      const id = uuidField(req.endpointId, 'endpoint_id');
      return db.transaction(scopeOf(context, false), async (tx) => {
        const found = rowsOf(
          await tx.query(compile(sql`select id from sluice_webhooks.endpoints where id = ${id}::uuid`)),
        );
        if (found.length === 0) throw notFound('endpoint', id);
        // The message names its endpoint, so the publish trigger leaves it alone; the function
        // queues its one delivery (callers may not insert deliveries themselves).
        const queued = rowsOf(
          await tx.query(compile(sql`select sluice_webhooks.queue_test_message(${id}::uuid) as id`)),
        )[0];
        const [message] = await readMessages(tx, [queued?.id ?? '']);
        return { message };
      });
    },
  };
}
