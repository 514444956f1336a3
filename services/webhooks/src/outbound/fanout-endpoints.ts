import type { ChangeOp, Position } from '@sluice/changes';
import { type Identity, SluiceError } from '@sluice/core';
import type { CatalogTable, SchemaCatalog } from '@sluice/db';
import { compileMatcher, type RowMatcher } from '@sluice/events-service';
import { Filter } from '@sluice/proto';
import { Access, compileFilter } from '@sluice/query';
import type { RawBuilder } from 'kysely';
import type pg from 'pg';
import type { Logger } from 'pino';
import { parseChangePosition } from '../change-position';
import { readTableSelections } from '../stored-settings';

export type Ordering = 'none' | 'key' | 'tenant';

/** One table an endpoint receives, resolved against the catalog under its owner's role. */
export interface CompiledSelection {
  readonly table: CatalogTable;
  readonly operations: ReadonlySet<ChangeOp>;
  /** The filter in memory (the new row, the old row for DELETE); undefined: no filter. */
  readonly matches: RowMatcher | undefined;
  /** Set when `matches` cannot decide exactly: the filter as the data service's SQL. */
  readonly sqlFilter?: { readonly where: RawBuilder<unknown>; readonly key: string };
  /**
   * The columns the owner may SELECT, as a JSON object of nulls ({"id":null,…}): the payload's
   * record keeps exactly these keys (see row-payload.ts).
   */
  readonly columns: string;
}

/** An enabled endpoint with row-change selections, ready to match changes. */
export interface FanoutEndpoint {
  readonly id: string;
  readonly tenantId: string | null;
  readonly ordering: Ordering;
  readonly identity: Identity;
  /** service_role: no RLS check, old rows sent in full. */
  readonly bypassesRls: boolean;
  /** Changes at or before this position are not for it. */
  readonly start: Position;
  /** "schema.table" -> selection. */
  readonly tables: ReadonlyMap<string, CompiledSelection>;
  /**
   * Selected tables ("schema.table") the catalog does not know: created a moment ago, before the
   * catalog's reload. Their changes are not skipped but retried (fanout.ts) until it knows them.
   */
  readonly unresolved: ReadonlySet<string>;
}

// The service's pool returns every value as PostgreSQL's text (@sluice/db createPool): the
// jsonb columns are parsed here.
interface EndpointRow {
  id: string;
  tenant_id: string | null;
  tables: string;
  ordering: string;
  owner_role: string;
  owner_claims: string;
  start_position: string;
}

const ENDPOINTS_SQL = `
select id::text, tenant_id::text, tables::text, ordering, owner_role, owner_claims::text, start_position
  from sluice_webhooks.endpoints
 where enabled and jsonb_typeof(tables) = 'array' and jsonb_array_length(tables) > 0`;

interface CacheEntry {
  readonly key: string;
  readonly catalog: SchemaCatalog;
  readonly endpoint: FanoutEndpoint | undefined;
}

const ALL_OPS: readonly ChangeOp[] = ['INSERT', 'UPDATE', 'DELETE'];

/**
 * The enabled endpoints that receive row changes, read once per batch (one cheap query, so an
 * endpoint created or changed is used from the next batch on). Each endpoint's selections are
 * compiled once per (endpoint version, catalog) and kept between batches.
 *
 * A selection that no longer fits the catalog or the owner's privileges (table dropped, column
 * privilege revoked, filter on a column the owner may not read) is left out with a warning,
 * once per endpoint version: the owner must not receive what it could not SELECT.
 */
export class EndpointCache {
  #compiled = new Map<string, CacheEntry>();

  constructor(
    private readonly catalog: () => SchemaCatalog,
    private readonly logger: Logger,
  ) {}

  async load(client: pg.ClientBase): Promise<FanoutEndpoint[]> {
    const { rows } = await client.query<EndpointRow>(ENDPOINTS_SQL);
    const catalog = this.catalog();
    const next = new Map<string, CacheEntry>();
    const out: FanoutEndpoint[] = [];
    for (const row of rows) {
      // Whatever the endpoint's matching depends on, not updated_at (a writer may not bump it).
      const key = JSON.stringify([
        row.tenant_id,
        row.tables,
        row.ordering,
        row.owner_role,
        row.owner_claims,
        row.start_position,
      ]);
      // An endpoint that compiled to nothing is tried again only when it or the catalog changes.
      let entry = this.#compiled.get(row.id);
      if (entry?.key !== key || entry.catalog !== catalog)
        entry = { key, catalog, endpoint: this.#compile(row, catalog) };
      next.set(row.id, entry);
      if (entry.endpoint) out.push(entry.endpoint);
    }
    this.#compiled = next;
    return out;
  }

  #compile(row: EndpointRow, catalog: SchemaCatalog): FanoutEndpoint | undefined {
    const parsed = JSON.parse(row.owner_claims) as unknown;
    const claims =
      typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)
        ? (parsed as Record<string, unknown>)
        : {};
    const identity: Identity = {
      role: row.owner_role,
      claims,
      userId: typeof claims.sub === 'string' ? claims.sub : undefined,
      tenantId: typeof claims.tenant_id === 'string' ? claims.tenant_id : undefined,
    };
    let start: Position;
    try {
      start = parseChangePosition(row.start_position);
    } catch {
      this.logger.warn(
        { endpoint: row.id },
        'webhooks fan-out: endpoint start_position unreadable; endpoint skipped',
      );
      return undefined;
    }
    const access = new Access(catalog, identity.role);
    const tables = new Map<string, CompiledSelection>();
    const unresolved = new Set<string>();
    for (const [i, selection] of readTableSelections(JSON.parse(row.tables)).entries()) {
      const field = `tables[${i}]`;
      try {
        const table = access.table(selection.schema, selection.table, `${field}.table`, 'select');
        const key = `${table.schema}.${table.name}`;
        if (tables.has(key)) {
          this.logger.warn(
            { endpoint: row.id, table: key },
            'webhooks fan-out: table selected twice; the first selection is used',
          );
          continue;
        }
        // Every message carries the row's key (a DELETE under RLS nothing else).
        for (const name of table.primaryKey) access.column(table, name, `${field}.table`, 'select');
        const visible = access.columns(table, [], `${field}.table`, 'select');
        const filter = selection.filter === undefined ? undefined : Filter.fromJSON(selection.filter);
        const matches =
          filter === undefined
            ? undefined
            : compileMatcher(
                filter,
                table.columns.map((c) => ({ name: c.name, typeOid: c.typeOid, collation: c.collation })),
                catalog.types,
                `${field}.filter`,
                (name, f) => {
                  access.column(table, name, f, 'select');
                },
              );
        const sqlFilter =
          filter && matches && !matches.exact
            ? {
                where: compileFilter(filter, access, table, `${field}.filter`),
                key: Buffer.from(Filter.encode(filter).finish()).toString('base64'),
              }
            : undefined;
        const operations = new Set<ChangeOp>(
          selection.operations.length > 0 ? selection.operations : ALL_OPS,
        );
        const columns = JSON.stringify(Object.fromEntries(visible.map((c) => [c.name, null])));
        tables.set(key, { table, operations, matches, ...(sqlFilter ? { sqlFilter } : {}), columns });
      } catch (err) {
        if (err instanceof SluiceError && err.reason === 'SLUICE_UNKNOWN_TABLE') {
          unresolved.add(`${selection.schema}.${selection.table}`);
          continue;
        }
        this.logger.warn(
          { endpoint: row.id, err, schema: selection.schema, table: selection.table },
          'webhooks fan-out: endpoint table selection does not fit the catalog or the owner; left out',
        );
      }
    }
    if (tables.size === 0 && unresolved.size === 0) return undefined;
    return {
      id: row.id,
      tenantId: row.tenant_id,
      ordering: row.ordering === 'key' || row.ordering === 'tenant' ? row.ordering : 'none',
      identity,
      bypassesRls: identity.role === 'service_role',
      start,
      tables,
      unresolved,
    };
  }
}
