import { invalidArgument, SluiceError } from '@sluice/core';
import { type CatalogColumn, type CatalogTable, encodeValue, type TypeRegistry } from '@sluice/db';
import { type Condition, type Filter, Operator, type Value } from '@sluice/proto';
import { type RawBuilder, sql } from 'kysely';
import type { Access } from './access';

/** Bounds on a filter tree, so a request cannot make the server build an enormous statement. */
export const MAX_FILTER_DEPTH = 32;
export const MAX_FILTER_NODES = 1000;
export const MAX_IN_VALUES = 10_000;

interface FilterScope {
  readonly access: Access;
  readonly table: CatalogTable;
  readonly types: TypeRegistry;
  readonly configs: TextSearchConfigs | undefined;
  nodes: number;
}

/**
 * The text search configurations a compiled filter casts to regconfig, each with the field path
 * of (the first) MATCH condition naming it. PostgreSQL resolves the names when the statement
 * runs; when one does not exist its error names the configuration but not the field, so the
 * plan uses this to name it (see `explainTextSearchError`).
 */
export type TextSearchConfigs = Map<string, string>;

/**
 * `error` with the field behind an unknown text search configuration (SLUICE_UNKNOWN_TEXT_SEARCH_CONFIG
 * from @sluice/db's mapPgError) added as a BadRequest violation, when `configs` knows it.
 */
export function explainTextSearchError(error: SluiceError, configs: TextSearchConfigs): SluiceError {
  if (error.reason !== 'SLUICE_UNKNOWN_TEXT_SEARCH_CONFIG' || error.violations.length > 0) return error;
  const name = error.metadata.text_search_config ?? '';
  const field = configs.get(name) ?? configs.values().next().value;
  if (field === undefined) return error;
  return new SluiceError(error.code, error.message, {
    reason: error.reason,
    violations: [{ field, description: error.message }],
    metadata: error.metadata,
    cause: error.cause,
  });
}

// A regconfig name as PostgreSQL parses it: an identifier, optionally schema-qualified, each part
// plain or double-quoted. Anything else is refused before the database sees it.
const IDENTIFIER = '(?:[A-Za-z_\\u0080-\\uffff][A-Za-z0-9_$\\u0080-\\uffff]*|"(?:[^"]|"")+")';
const REGCONFIG_NAME = new RegExp(`^${IDENTIFIER}(?:\\.${IDENTIFIER})?$`);

/**
 * Compiles a filter tree into a SQL boolean expression over `table`. Columns must exist and be
 * readable by the role; operators must suit the column's type; every value becomes a parameter
 * cast to the column's catalog type.
 *
 * @throws INVALID_ARGUMENT naming the offending field path (e.g. `filter.and.filters[2].condition.value`);
 *   PERMISSION_DENIED for a column the role cannot read. The text search configurations of MATCH
 *   conditions are only checked for syntax here; `configs` collects them for the plan.
 */
export function compileFilter(
  filter: Filter,
  access: Access,
  table: CatalogTable,
  field: string,
  configs?: TextSearchConfigs,
): RawBuilder<unknown> {
  return compileNode(filter, { access, table, types: access.catalog.types, configs, nodes: 0 }, field, 0);
}

function compileNode(filter: Filter, scope: FilterScope, field: string, depth: number): RawBuilder<unknown> {
  scope.nodes++;
  if (depth > MAX_FILTER_DEPTH || scope.nodes > MAX_FILTER_NODES) {
    throw invalidArgument(
      'SLUICE_FILTER_TOO_COMPLEX',
      field,
      `Filters may nest ${MAX_FILTER_DEPTH} deep and hold ${MAX_FILTER_NODES} nodes at most`,
    );
  }
  const kind = filter.kind;
  switch (kind?.$case) {
    case 'and':
    case 'or': {
      const parts = kind.value.filters.map((f, i) =>
        compileNode(f, scope, `${field}.${kind.$case}.filters[${i}]`, depth + 1),
      );
      if (parts.length === 0) return kind.$case === 'and' ? sql`true` : sql`false`;
      return sql`(${sql.join(parts, kind.$case === 'and' ? sql` and ` : sql` or `)})`;
    }
    case 'not':
      return sql`(not ${compileNode(kind.value, scope, `${field}.not`, depth + 1)})`;
    case 'condition':
      return compileCondition(kind.value, scope, `${field}.condition`);
    default:
      throw invalidArgument('SLUICE_EMPTY_FILTER', field, 'A filter node must set and, or, not or condition');
  }
}

const COMPARISON: Partial<Record<Operator, string>> = {
  [Operator.OPERATOR_EQ]: '=',
  [Operator.OPERATOR_NEQ]: '<>',
  [Operator.OPERATOR_GT]: '>',
  [Operator.OPERATOR_GTE]: '>=',
  [Operator.OPERATOR_LT]: '<',
  [Operator.OPERATOR_LTE]: '<=',
  [Operator.OPERATOR_CONTAINS]: '@>',
  [Operator.OPERATOR_CONTAINED_BY]: '<@',
  [Operator.OPERATOR_OVERLAPS]: '&&',
};

function isNull(value: Value | undefined): boolean {
  return value?.kind === undefined || value.kind.$case === 'nullValue';
}

function compileCondition(condition: Condition, scope: FilterScope, field: string): RawBuilder<unknown> {
  const column = scope.access.column(scope.table, condition.column, `${field}.column`, 'select');
  const ref = sql.id(column.name);
  const kind = scope.types.kind(column.typeOid);
  const op = condition.op;
  const valueField = `${field}.value`;
  const param = (value: Value | undefined, f: string) =>
    sql`${sql.val(encodeValue(value, column.typeOid, scope.types, f))}::${sql.raw(column.typeSql)}`;
  const requireValue = () => {
    if (isNull(condition.value)) {
      throw invalidArgument(
        'SLUICE_VALUE_REQUIRED',
        valueField,
        'This operator needs a non-null value (use IS for null)',
      );
    }
  };
  const wrongOperator = (why: string) =>
    invalidArgument(
      'SLUICE_OPERATOR_NOT_APPLICABLE',
      `${field}.op`,
      `${Operator[op] ?? op} ${why} (column ${column.name})`,
    );

  switch (op) {
    case Operator.OPERATOR_EQ:
    case Operator.OPERATOR_NEQ:
    case Operator.OPERATOR_GT:
    case Operator.OPERATOR_GTE:
    case Operator.OPERATOR_LT:
    case Operator.OPERATOR_LTE:
      requireValue();
      return sql`${ref} ${sql.raw(COMPARISON[op] as string)} ${param(condition.value, valueField)}`;
    case Operator.OPERATOR_LIKE:
    case Operator.OPERATOR_ILIKE: {
      if (kind !== 'text') throw wrongOperator('applies to text columns only');
      requireValue();
      if (condition.value?.kind?.$case !== 'stringValue') {
        throw invalidArgument('SLUICE_WRONG_TYPE', valueField, 'LIKE and ILIKE take a string pattern');
      }
      const pattern = sql.val(condition.value.kind.value);
      return op === Operator.OPERATOR_LIKE
        ? sql`${ref}::text like ${pattern}`
        : sql`${ref}::text ilike ${pattern}`;
    }
    case Operator.OPERATOR_IN: {
      if (condition.values.length > MAX_IN_VALUES) {
        throw invalidArgument(
          'SLUICE_TOO_MANY_VALUES',
          `${field}.values`,
          `IN takes ${MAX_IN_VALUES} values at most`,
        );
      }
      if (kind === 'array') throw wrongOperator('does not apply to array columns (use CONTAINS or OVERLAPS)');
      const values = condition.values.map((v, i) =>
        encodeValue(v, column.typeOid, scope.types, `${field}.values[${i}]`),
      );
      return sql`${ref} = any(${sql.val(values)}::${sql.raw(column.typeSql)}[])`;
    }
    case Operator.OPERATOR_IS: {
      const value = condition.value;
      if (isNull(value)) return sql`${ref} is null`;
      if (value?.kind?.$case === 'boolValue') {
        if (kind !== 'bool') throw wrongOperator('with true or false applies to boolean columns only');
        return value.kind.value ? sql`${ref} is true` : sql`${ref} is false`;
      }
      throw invalidArgument('SLUICE_WRONG_TYPE', valueField, 'IS takes null, true or false');
    }
    case Operator.OPERATOR_CONTAINS:
    case Operator.OPERATOR_CONTAINED_BY:
    case Operator.OPERATOR_OVERLAPS: {
      const jsonb = scope.types.base(column.typeOid)?.name === 'jsonb';
      if (kind !== 'array' && !(jsonb && op !== Operator.OPERATOR_OVERLAPS)) {
        throw wrongOperator(
          op === Operator.OPERATOR_OVERLAPS
            ? 'applies to array columns'
            : 'applies to array and jsonb columns',
        );
      }
      requireValue();
      return sql`${ref} ${sql.raw(COMPARISON[op] as string)} ${param(condition.value, valueField)}`;
    }
    case Operator.OPERATOR_MATCH:
      return compileMatch(condition, column, scope, field);
    default:
      throw invalidArgument('SLUICE_UNKNOWN_OPERATOR', `${field}.op`, `Unknown operator ${op}`);
  }
}

function compileMatch(
  condition: Condition,
  column: CatalogColumn,
  scope: FilterScope,
  field: string,
): RawBuilder<unknown> {
  if (condition.value?.kind?.$case !== 'stringValue') {
    throw invalidArgument('SLUICE_WRONG_TYPE', `${field}.value`, 'MATCH takes a search string');
  }
  const name = condition.textSearchConfig || 'simple';
  const configField = `${field}.text_search_config`;
  if (!REGCONFIG_NAME.test(name)) {
    throw invalidArgument(
      'SLUICE_UNKNOWN_TEXT_SEARCH_CONFIG',
      configField,
      `"${name.slice(0, 80)}" is not a text search configuration name (e.g. english or pg_catalog.english)`,
    );
  }
  if (scope.configs && !scope.configs.has(name)) scope.configs.set(name, configField);
  const config = sql`${sql.val(name)}::regconfig`;
  const query = sql`websearch_to_tsquery(${config}, ${sql.val(condition.value.kind.value)})`;
  const typeName = scope.types.base(column.typeOid)?.name;
  if (typeName === 'tsvector') return sql`${sql.id(column.name)} @@ ${query}`;
  if (scope.types.kind(column.typeOid) === 'text')
    return sql`to_tsvector(${config}, ${sql.id(column.name)}::text) @@ ${query}`;
  throw invalidArgument(
    'SLUICE_OPERATOR_NOT_APPLICABLE',
    `${field}.op`,
    `MATCH applies to tsvector and text columns (column ${column.name})`,
  );
}
