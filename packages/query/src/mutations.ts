import { invalidArgument, SluiceError } from '@sluice/core';
import { type CatalogTable, compile, encodeValue, type StatementResult } from '@sluice/db';
import { data } from '@sluice/proto';
import { type RawBuilder, sql } from 'kysely';
import type { Access } from './access';
import { compileFilter, explainTextSearchError, type TextSearchConfigs } from './filter';
import type { Plan } from './plan';
import { EMPTY_RESULT, toResultSet } from './results';

/** PostgreSQL's limit on parameters in one statement. */
const MAX_PARAMETERS = 65_535;

interface Mutation {
  readonly result: data.InsertResponse['result'];
  readonly affected: bigint;
}

function returningClause(
  table: CatalogTable,
  names: readonly string[],
  access: Access,
  field: string,
): RawBuilder<unknown> {
  if (names.length === 0) return sql``;
  const columns = access.columns(table, names, field, 'select');
  return sql` returning ${sql.join(columns.map((c) => sql.id(c.name)))}`;
}

function mutationPlan(
  statement: RawBuilder<unknown>,
  access: Access,
  returning: boolean,
  maxAffected: bigint | undefined,
  field: string,
  configs?: TextSearchConfigs,
): Plan<Mutation> {
  return {
    readOnly: false,
    ...(configs ? { explain: (e: SluiceError) => explainTextSearchError(e, configs) } : {}),
    statements: [compile(statement)],
    // A max_affected guard may reject the result, so COMMIT must wait for it.
    oneShot: maxAffected === undefined,
    finish(results: readonly StatementResult[]) {
      const r = results[0] as StatementResult;
      const affected = BigInt(r.rowCount);
      if (maxAffected !== undefined && affected > maxAffected) {
        throw new SluiceError(
          'FAILED_PRECONDITION',
          `The statement would change ${affected} rows, more than max_affected (${maxAffected}); nothing was changed`,
          {
            reason: 'SLUICE_MAX_AFFECTED_EXCEEDED',
            violations: [{ field: `${field}max_affected`, description: `${affected} rows matched` }],
            metadata: { affected: String(affected) },
          },
        );
      }
      return { result: returning ? toResultSet(r, access.catalog.types) : EMPTY_RESULT, affected };
    },
  };
}

/** Plans an Insert of many rows in one statement, optionally as an upsert. */
export function planInsert(req: data.InsertRequest, access: Access, field = ''): Plan<data.InsertResponse> {
  const table = access.table(req.schema, req.table, `${field}table`, 'insert');
  if (req.rows.length === 0)
    throw invalidArgument('SLUICE_ROWS_REQUIRED', `${field}rows`, 'Insert needs at least one row');
  if (req.columns.length === 0) {
    throw invalidArgument(
      'SLUICE_COLUMNS_REQUIRED',
      `${field}columns`,
      'Name the columns the rows give values for',
    );
  }
  const columns = access.columns(table, req.columns, `${field}columns`, 'insert');
  if (req.rows.length * columns.length > MAX_PARAMETERS) {
    throw invalidArgument(
      'SLUICE_TOO_MANY_VALUES',
      `${field}rows`,
      `One insert takes at most ${MAX_PARAMETERS} values (rows × columns); split it`,
    );
  }
  const types = access.catalog.types;
  const tuples = req.rows.map((row, r) => {
    if (row.values.length !== columns.length) {
      throw invalidArgument(
        'SLUICE_ROW_WIDTH_MISMATCH',
        `${field}rows[${r}]`,
        `Row has ${row.values.length} values for ${columns.length} columns`,
      );
    }
    const values = columns.map((c, i) => {
      const v = encodeValue(row.values[i], c.typeOid, types, `${field}rows[${r}].values[${i}]`);
      return sql`${sql.val(v)}::${sql.raw(c.typeSql)}`;
    });
    return sql`(${sql.join(values)})`;
  });
  const conflict = onConflictClause(
    req.onConflict,
    table,
    columns.map((c) => c.name),
    access,
    `${field}on_conflict`,
  );
  const statement = sql`insert into ${sql.id(table.schema, table.name)} (${sql.join(columns.map((c) => sql.id(c.name)))}) values ${sql.join(tuples)}${conflict}${returningClause(table, req.returning, access, `${field}returning`)}`;
  return mutationPlan(statement, access, req.returning.length > 0, undefined, field);
}

function onConflictClause(
  onConflict: data.OnConflict | undefined,
  table: CatalogTable,
  inserted: readonly string[],
  access: Access,
  field: string,
): RawBuilder<unknown> {
  if (!onConflict || onConflict.action === data.ConflictAction.CONFLICT_ACTION_UNSPECIFIED) return sql``;
  const targetNames = onConflict.target.length > 0 ? onConflict.target : table.primaryKey;
  if (targetNames.length === 0) {
    throw invalidArgument(
      'SLUICE_CONFLICT_TARGET_REQUIRED',
      `${field}.target`,
      'The table has no primary key: name the conflict target',
    );
  }
  const target = targetNames.map((name, i) => {
    const column = table.columnsByName.get(name);
    if (!column)
      throw invalidArgument(
        'SLUICE_UNKNOWN_COLUMN',
        `${field}.target[${i}]`,
        `Unknown column ${JSON.stringify(name)}`,
      );
    return sql.id(column.name);
  });
  if (onConflict.action === data.ConflictAction.CONFLICT_ACTION_IGNORE) {
    return sql` on conflict (${sql.join(target)}) do nothing`;
  }
  const updateNames =
    onConflict.updateColumns.length > 0
      ? onConflict.updateColumns
      : inserted.filter((n) => !targetNames.includes(n));
  if (updateNames.length === 0) {
    throw invalidArgument(
      'SLUICE_NOTHING_TO_UPDATE',
      `${field}.update_columns`,
      'A merge needs at least one column to update',
    );
  }
  const updates = access.columns(table, updateNames, `${field}.update_columns`, 'update');
  for (const [i, c] of updates.entries()) {
    if (!inserted.includes(c.name)) {
      throw invalidArgument(
        'SLUICE_UNKNOWN_COLUMN',
        `${field}.update_columns[${i}]`,
        `Column ${c.name} is not among the inserted columns`,
      );
    }
  }
  const sets = updates.map((c) => sql`${sql.id(c.name)} = excluded.${sql.id(c.name)}`);
  return sql` on conflict (${sql.join(target)}) do update set ${sql.join(sets)}`;
}

function requireFilter(filter: unknown, field: string): void {
  if (!filter) {
    throw invalidArgument(
      'SLUICE_FILTER_REQUIRED',
      field,
      'A filter is required; to touch every row, send an empty `and` filter explicitly',
    );
  }
}

/** Plans an Update of the rows matching a required filter. */
export function planUpdate(req: data.UpdateRequest, access: Access, field = ''): Plan<data.UpdateResponse> {
  const table = access.table(req.schema, req.table, `${field}table`, 'update');
  requireFilter(req.filter, `${field}filter`);
  if (req.set.length === 0)
    throw invalidArgument('SLUICE_SET_REQUIRED', `${field}set`, 'Update needs at least one assignment');
  const seen = new Set<string>();
  const sets = req.set.map((a, i) => {
    const column = access.column(table, a.column, `${field}set[${i}].column`, 'update');
    if (seen.has(column.name))
      throw invalidArgument(
        'SLUICE_DUPLICATE_COLUMN',
        `${field}set[${i}].column`,
        `Column ${column.name} is set twice`,
      );
    seen.add(column.name);
    const v = encodeValue(a.value, column.typeOid, access.catalog.types, `${field}set[${i}].value`);
    return sql`${sql.id(column.name)} = ${sql.val(v)}::${sql.raw(column.typeSql)}`;
  });
  const configs: TextSearchConfigs = new Map();
  const where = compileFilter(
    req.filter as NonNullable<typeof req.filter>,
    access,
    table,
    `${field}filter`,
    configs,
  );
  const statement = sql`update ${sql.id(table.schema, table.name)} set ${sql.join(sets)} where ${where}${returningClause(table, req.returning, access, `${field}returning`)}`;
  return mutationPlan(statement, access, req.returning.length > 0, req.maxAffected, field, configs);
}

/** Plans a Delete of the rows matching a required filter. */
export function planDelete(req: data.DeleteRequest, access: Access, field = ''): Plan<data.DeleteResponse> {
  const table = access.table(req.schema, req.table, `${field}table`, 'delete');
  requireFilter(req.filter, `${field}filter`);
  const configs: TextSearchConfigs = new Map();
  const where = compileFilter(
    req.filter as NonNullable<typeof req.filter>,
    access,
    table,
    `${field}filter`,
    configs,
  );
  const statement = sql`delete from ${sql.id(table.schema, table.name)} where ${where}${returningClause(table, req.returning, access, `${field}returning`)}`;
  return mutationPlan(statement, access, req.returning.length > 0, req.maxAffected, field, configs);
}
