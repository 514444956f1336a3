import { invalidArgument, SluiceError } from '@sluice/core';
import type { CatalogColumn, CatalogFunction, CatalogTable, SchemaCatalog } from '@sluice/db';

export type ColumnUse = 'select' | 'insert' | 'update';

/**
 * Resolves names a client sent against the schema catalog, for one role. Every identifier that
 * reaches SQL comes out of here as a catalog entry; anything else is rejected with a precise
 * error naming the request field.
 */
export class Access {
  constructor(
    readonly catalog: SchemaCatalog,
    readonly role: string,
  ) {}

  /**
   * The table `schema.name` (schema defaults to the first exposed schema), when the role has
   * any privilege on it.
   *
   * @throws INVALID_ARGUMENT SLUICE_UNKNOWN_TABLE for a table that does not exist or is not exposed;
   *   PERMISSION_DENIED SLUICE_TABLE_NOT_ALLOWED when the role may not use it for `use`.
   */
  table(
    schema: string,
    name: string,
    field: string,
    use: 'select' | 'insert' | 'update' | 'delete',
  ): CatalogTable {
    if (name === '') throw invalidArgument('SLUICE_TABLE_REQUIRED', field, 'A table name is required');
    const schemaName = schema === '' ? (this.catalog.schemas[0] ?? 'public') : schema;
    const table = this.catalog.schemas.includes(schemaName)
      ? this.catalog.table(schemaName, name)
      : undefined;
    if (!table) {
      throw invalidArgument(
        'SLUICE_UNKNOWN_TABLE',
        field,
        `Unknown table ${quote(schemaName)}.${quote(name)}`,
      );
    }
    const privileges = table.privileges[this.role];
    const anyColumn = table.columns.some((c) => c.privileges[this.role]?.[use === 'delete' ? 'select' : use]);
    const allowed = use === 'delete' ? privileges?.delete : privileges?.[use] || anyColumn;
    if (!allowed) {
      throw new SluiceError(
        'PERMISSION_DENIED',
        `Role ${this.role} may not ${use} ${table.schema}.${table.name}`,
        {
          reason: 'SLUICE_TABLE_NOT_ALLOWED',
          violations: [{ field, description: `${use} is not granted on this table` }],
        },
      );
    }
    return table;
  }

  /**
   * A column of `table` the role may use as `use`.
   *
   * @throws INVALID_ARGUMENT SLUICE_UNKNOWN_COLUMN; PERMISSION_DENIED SLUICE_COLUMN_NOT_ALLOWED;
   *   INVALID_ARGUMENT SLUICE_COLUMN_NOT_WRITABLE for generated columns on insert/update.
   */
  column(table: CatalogTable, name: string, field: string, use: ColumnUse): CatalogColumn {
    const column = table.columnsByName.get(name);
    if (!column) {
      throw invalidArgument(
        'SLUICE_UNKNOWN_COLUMN',
        field,
        `Unknown column ${quote(name)} in ${table.schema}.${table.name}`,
      );
    }
    if (use !== 'select' && column.generated) {
      throw invalidArgument(
        'SLUICE_COLUMN_NOT_WRITABLE',
        field,
        `Column ${name} is generated and cannot be written`,
      );
    }
    if (!column.privileges[this.role]?.[use]) {
      throw new SluiceError('PERMISSION_DENIED', `Role ${this.role} may not ${use} column ${name}`, {
        reason: 'SLUICE_COLUMN_NOT_ALLOWED',
        violations: [{ field, description: `${use} is not granted on this column` }],
      });
    }
    return column;
  }

  /** Columns by name, each checked, with no duplicates; empty `names` means every column allowed for `use`. */
  columns(table: CatalogTable, names: readonly string[], field: string, use: ColumnUse): CatalogColumn[] {
    if (names.length === 0) {
      const all = table.columns.filter(
        (c) => c.privileges[this.role]?.[use] && (use === 'select' || !c.generated),
      );
      if (all.length === 0) {
        throw new SluiceError(
          'PERMISSION_DENIED',
          `Role ${this.role} may not ${use} any column of ${table.name}`,
          {
            reason: 'SLUICE_TABLE_NOT_ALLOWED',
          },
        );
      }
      return all;
    }
    const seen = new Set<string>();
    return names.map((name, i) => {
      if (seen.has(name))
        throw invalidArgument(
          'SLUICE_DUPLICATE_COLUMN',
          `${field}[${i}]`,
          `Column ${quote(name)} is listed twice`,
        );
      seen.add(name);
      return this.column(table, name, `${field}[${i}]`, use);
    });
  }

  /**
   * The overload of `schema.name` that takes exactly the given named arguments (plus defaults).
   * `field` names the function in the request, `argsField` its argument list.
   */
  function(
    schema: string,
    name: string,
    argNames: readonly string[],
    field: string,
    argsField: string,
  ): CatalogFunction {
    if (name === '') throw invalidArgument('SLUICE_FUNCTION_REQUIRED', field, 'A function name is required');
    const schemaName = schema === '' ? (this.catalog.schemas[0] ?? 'public') : schema;
    const overloads = this.catalog.schemas.includes(schemaName)
      ? this.catalog.functionOverloads(schemaName, name).filter((f) => f.executableBy.has(this.role))
      : [];
    if (overloads.length === 0) {
      throw invalidArgument(
        'SLUICE_UNKNOWN_FUNCTION',
        field,
        `Unknown function ${quote(schemaName)}.${quote(name)}`,
      );
    }
    const given = new Set(argNames);
    const matches = overloads.filter(
      (f) =>
        argNames.every((n) => f.args.some((a) => a.name === n)) &&
        f.args.every((a) => a.hasDefault || given.has(a.name)),
    );
    if (matches.length !== 1) {
      const signatures = overloads
        .map((f) => `${f.name}(${f.args.map((a) => a.name || '?').join(', ')})`)
        .join('; ');
      throw invalidArgument(
        matches.length === 0 ? 'SLUICE_ARGUMENTS_MISMATCH' : 'SLUICE_AMBIGUOUS_FUNCTION',
        argsField,
        `The arguments do not match ${matches.length === 0 ? 'any' : 'exactly one'} signature of ${name}: ${signatures}`,
      );
    }
    return matches[0] as CatalogFunction;
  }
}

/** Quotes a client-supplied name for an error message (never for SQL), trimmed to a sane length. */
export function quote(name: string): string {
  return JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}…` : name);
}
