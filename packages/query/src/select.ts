import { invalidArgument, SluiceError } from '@sluice/core';
import type { CatalogColumn, CatalogTable, RequestTransaction, StatementResult } from '@sluice/db';
import { compile } from '@sluice/db';
import { data, Filter } from '@sluice/proto';
import { type RawBuilder, sql } from 'kysely';
import type { Access } from './access';
import { compileFilter, explainTextSearchError, type TextSearchConfigs } from './filter';
import { decodePageToken, encodePageToken, queryShape } from './page-token';
import type { Plan } from './plan';
import { toResultSet } from './results';

export interface SelectLimits {
  /** Rows returned when the request sets no limit. */
  readonly defaultLimit: number;
  /** Hard cap on rows per call, whatever the request asks. */
  readonly maxRows: number;
  /** COUNT_MODE_ESTIMATED counts exactly below this planner estimate. */
  readonly estimateThreshold: number;
}

interface SortKey {
  readonly column: CatalogColumn;
  readonly desc: boolean;
  readonly nullsFirst: boolean;
}

/** The parts of a Select shared by the unary and the streaming RPC. */
export interface SelectQuery {
  readonly table: CatalogTable;
  readonly columns: readonly CatalogColumn[];
  readonly where: RawBuilder<unknown>;
  readonly order: readonly SortKey[];
  /** True when `order` ends with the primary key, all readable: keyset tokens are possible. */
  readonly keyset: boolean;
  /** Names the field behind a database error about the filter (see Plan.explain). */
  readonly explain: (error: SluiceError) => SluiceError;
}

/** Validates table, columns, filter and order of a SelectRequest against the catalog. */
export function resolveSelect(req: data.SelectRequest, access: Access, field: string): SelectQuery {
  const table = access.table(req.schema, req.table, `${field}table`, 'select');
  const columns = access.columns(table, req.columns, `${field}columns`, 'select');
  const configs: TextSearchConfigs = new Map();
  const where = req.filter ? compileFilter(req.filter, access, table, `${field}filter`, configs) : sql`true`;
  const order: SortKey[] = req.order.map((o, i) => {
    const column = access.column(table, o.column, `${field}order[${i}].column`, 'select');
    const desc = o.direction === data.SortDirection.SORT_DIRECTION_DESC;
    const nullsFirst =
      o.nulls === data.NullsOrder.NULLS_ORDER_UNSPECIFIED
        ? desc
        : o.nulls === data.NullsOrder.NULLS_ORDER_FIRST;
    return { column, desc, nullsFirst };
  });
  const pk = table.primaryKey.map((name) => table.columnsByName.get(name));
  const keyset = pk.length > 0 && pk.every((c) => c?.privileges[access.role]?.select);
  if (keyset) {
    for (const column of pk as CatalogColumn[]) {
      if (!order.some((k) => k.column.name === column.name))
        order.push({ column, desc: false, nullsFirst: false });
    }
  }
  return { table, columns, where, order, keyset, explain: (e) => explainTextSearchError(e, configs) };
}

export function selectList(columns: readonly CatalogColumn[]): RawBuilder<unknown> {
  return sql.join(columns.map((c) => sql.id(c.name)));
}

export function orderByClause(order: readonly SortKey[]): RawBuilder<unknown> {
  if (order.length === 0) return sql``;
  const keys = order.map(
    (k) =>
      sql`${sql.id(k.column.name)} ${sql.raw(k.desc ? 'desc' : 'asc')} nulls ${sql.raw(k.nullsFirst ? 'first' : 'last')}`,
  );
  return sql` order by ${sql.join(keys)}`;
}

/** Rows strictly after the row whose sort-key values are `keys`, in `order`. */
function afterKeys(order: readonly SortKey[], keys: readonly (string | null)[]): RawBuilder<unknown> {
  const value = (k: SortKey, v: string) => sql`${sql.val(v)}::${sql.raw(k.column.typeSql)}`;
  const equal = (k: SortKey, v: string | null) =>
    v === null ? sql`${sql.id(k.column.name)} is null` : sql`${sql.id(k.column.name)} = ${value(k, v)}`;
  const after = (k: SortKey, v: string | null): RawBuilder<unknown> => {
    const ref = sql.id(k.column.name);
    if (v === null) return k.nullsFirst ? sql`${ref} is not null` : sql`false`;
    const beyond = k.desc ? sql`${ref} < ${value(k, v)}` : sql`${ref} > ${value(k, v)}`;
    return k.nullsFirst ? beyond : sql`(${beyond} or ${ref} is null)`;
  };
  const branches = order.map((k, i) => {
    const prefix = order.slice(0, i).map((p, j) => equal(p, keys[j] ?? null));
    return sql`(${sql.join([...prefix, after(k, keys[i] ?? null)], sql` and `)})`;
  });
  return sql`(${sql.join(branches, sql` or `)})`;
}

/** Plans a Select: one statement for the rows and, if asked, one for the count, in one round trip. */
export function planSelect(
  req: data.SelectRequest,
  access: Access,
  limits: SelectLimits,
  field = '',
): Plan<data.SelectResponse> {
  const q = resolveSelect(req, access, field);
  if (req.pageToken !== '' && req.offset > 0) {
    throw invalidArgument(
      'SLUICE_PAGE_TOKEN_WITH_OFFSET',
      `${field}offset`,
      'Use either offset or page_token, not both',
    );
  }
  if (req.pageToken !== '' && !q.keyset) {
    throw invalidArgument(
      'SLUICE_INVALID_PAGE_TOKEN',
      `${field}page_token`,
      'This table has no readable primary key, so it cannot be paged with tokens',
    );
  }
  const limit = Math.min(req.limit === 0 ? limits.defaultLimit : req.limit, limits.maxRows);
  // Hashed only when a token is read or written: most selects need neither.
  const shape = () =>
    queryShape([
      q.table.schema,
      q.table.name,
      req.filter ? Filter.toJSON(req.filter) : null,
      q.order.map((k) => [k.column.name, k.desc, k.nullsFirst]),
    ]);
  const keyColumns = q.keyset ? q.order.map((k) => k.column) : [];
  const keys = req.pageToken
    ? decodePageToken(req.pageToken, shape(), keyColumns.length, `${field}page_token`)
    : undefined;
  const where = keys ? sql`${q.where} and ${afterKeys(q.order, keys)}` : q.where;
  const hidden = keyColumns.map((c, i) => sql`${sql.id(c.name)} as ${sql.id(`__sluice_k${i}`)}`);
  const list = sql.join([...q.columns.map((c) => sql.id(c.name)), ...hidden]);
  const fetch = q.keyset ? limit + 1 : limit;
  const rows = compile(
    sql`select ${list} from ${sql.id(q.table.schema, q.table.name)} where ${where}${orderByClause(q.order)} limit ${sql.val(fetch)} offset ${sql.val(req.offset)}`,
  );
  const from = sql`from ${sql.id(q.table.schema, q.table.name)} where ${q.where}`;
  const exact = compile(sql`select count(*) ${from}`);
  const planned = compile(sql`explain (format json) select 1 ${from}`);
  const mode = req.count;
  const statements = [rows];
  if (mode === data.CountMode.COUNT_MODE_EXACT) statements.push(exact);
  if (mode === data.CountMode.COUNT_MODE_PLANNED || mode === data.CountMode.COUNT_MODE_ESTIMATED)
    statements.push(planned);

  return {
    readOnly: true,
    statements,
    oneShot: mode !== data.CountMode.COUNT_MODE_ESTIMATED,
    explain: q.explain,
    async finish(results: readonly StatementResult[], tx: RequestTransaction | undefined) {
      const [rowsResult, countResult] = results as [StatementResult, StatementResult | undefined];
      const types = access.catalog.types;
      const more = q.keyset && rowsResult.rows.length > limit;
      const page = more ? { ...rowsResult, rows: rowsResult.rows.slice(0, limit) } : rowsResult;
      const result = toResultSet(page, types, q.columns.length);
      let nextPageToken = '';
      if (more) {
        const last = page.rows[page.rows.length - 1] ?? [];
        nextPageToken = encodePageToken(shape(), last.slice(q.columns.length));
      }
      let count: bigint | undefined;
      if (mode === data.CountMode.COUNT_MODE_EXACT) count = BigInt(countResult?.rows[0]?.[0] ?? '0');
      if (mode === data.CountMode.COUNT_MODE_PLANNED || mode === data.CountMode.COUNT_MODE_ESTIMATED) {
        count = plannedRows(countResult);
        if (mode === data.CountMode.COUNT_MODE_ESTIMATED && count < BigInt(limits.estimateThreshold)) {
          if (!tx) throw new SluiceError('INTERNAL', 'Estimated count needs a transaction');
          count = BigInt((await tx.query(exact)).rows[0]?.[0] ?? '0');
        }
      }
      return { result, nextPageToken, ...(count === undefined ? {} : { count }) };
    },
  };
}

function plannedRows(result: StatementResult | undefined): bigint {
  const plan = JSON.parse(result?.rows[0]?.[0] ?? '[]') as { Plan?: { 'Plan Rows'?: number } }[];
  return BigInt(Math.round(plan[0]?.Plan?.['Plan Rows'] ?? 0));
}
