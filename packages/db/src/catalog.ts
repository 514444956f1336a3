import { type PgType, TypeRegistry } from './pg-types';
import { openSession } from './session';

export interface ColumnPrivileges {
  readonly select: boolean;
  readonly insert: boolean;
  readonly update: boolean;
}

export interface CatalogColumn {
  readonly name: string;
  readonly typeOid: number;
  /**
   * The type as SQL spells it (format_type) without its modifier (varchar, not varchar(50)), used
   * for parameter casts. From the catalog only.
   */
  readonly typeSql: string;
  /**
   * How the column's collation compares text: 'bytes' (C, POSIX, builtin: byte order, equality is
   * byte equality), 'deterministic' (a locale's order; equal only when the bytes are), or
   * 'nondeterministic' (equal strings may differ, e.g. case-insensitive ICU); null when the
   * type has no collation. Decides what the events service may compare in memory.
   */
  readonly collation: 'bytes' | 'deterministic' | 'nondeterministic' | null;
  /**
   * The column's collation as SQL names it (schema-qualified, quoted) when it is not its type's
   * default: a value rebuilt from text needs `COLLATE` this to compare as the column does.
   */
  readonly collateSql: string | null;
  readonly nullable: boolean;
  readonly hasDefault: boolean;
  /** Generated (stored) or identity-always columns, which take no inserted values. */
  readonly generated: boolean;
  readonly privileges: Readonly<Record<string, ColumnPrivileges>>;
}

export interface CatalogForeignKey {
  readonly name: string;
  readonly columns: readonly string[];
  readonly referencedSchema: string;
  readonly referencedTable: string;
  readonly referencedColumns: readonly string[];
}

export interface TablePrivileges {
  readonly select: boolean;
  readonly insert: boolean;
  readonly update: boolean;
  readonly delete: boolean;
}

export interface CatalogTable {
  /** pg_class oid (changes when the table is dropped and created again). */
  readonly oid: number;
  readonly schema: string;
  readonly name: string;
  readonly isView: boolean;
  readonly columns: readonly CatalogColumn[];
  readonly columnsByName: ReadonlyMap<string, CatalogColumn>;
  readonly primaryKey: readonly string[];
  readonly foreignKeys: readonly CatalogForeignKey[];
  readonly rlsEnabled: boolean;
  readonly comment: string;
  readonly privileges: Readonly<Record<string, TablePrivileges>>;
}

export interface CatalogFunctionArg {
  readonly name: string;
  readonly typeOid: number;
  readonly typeSql: string;
  readonly hasDefault: boolean;
}

export interface CatalogFunction {
  readonly schema: string;
  readonly name: string;
  readonly oid: number;
  readonly args: readonly CatalogFunctionArg[];
  readonly returnTypeOid: number;
  readonly returnTypeSql: string;
  readonly returnsSet: boolean;
  readonly volatility: 'immutable' | 'stable' | 'volatile';
  /** Roles that may execute it. */
  readonly executableBy: ReadonlySet<string>;
}

/**
 * An immutable snapshot of what the exposed schemas contain and what each allowlisted role may
 * do with it. Handlers validate every identifier against it: SQL only ever names what is here.
 */
export class SchemaCatalog {
  private readonly tables = new Map<string, CatalogTable>();
  private readonly functions = new Map<string, CatalogFunction[]>();

  constructor(
    readonly schemas: readonly string[],
    tables: readonly CatalogTable[],
    functions: readonly CatalogFunction[],
    readonly types: TypeRegistry,
    readonly loadedAt: Date = new Date(),
  ) {
    for (const t of tables) this.tables.set(`${t.schema}.${t.name}`, t);
    for (const f of functions) {
      const key = `${f.schema}.${f.name}`;
      this.functions.set(key, [...(this.functions.get(key) ?? []), f]);
    }
  }

  table(schema: string, name: string): CatalogTable | undefined {
    return this.tables.get(`${schema}.${name}`);
  }

  allTables(): IterableIterator<CatalogTable> {
    return this.tables.values();
  }

  /** Every overload of a function. */
  functionOverloads(schema: string, name: string): readonly CatalogFunction[] {
    return this.functions.get(`${schema}.${name}`) ?? [];
  }

  allFunctions(): CatalogFunction[] {
    return [...this.functions.values()].flat();
  }
}

const TYPES_SQL = `
select t.oid::int as oid,
       case when n.nspname = 'pg_catalog' then t.typname else n.nspname || '.' || t.typname end as name,
       t.typcategory as category,
       case when t.typcategory = 'A' then t.typelem::int else 0 end as element_oid,
       t.typbasetype::int as base_oid,
       coalesce((select array_agg(e.enumlabel::text order by e.enumsortorder) from pg_enum e where e.enumtypid = t.oid), '{}') as enum_values
from pg_type t join pg_namespace n on n.oid = t.typnamespace
where t.typtype in ('b', 'c', 'd', 'e', 'm', 'p', 'r') or t.typcategory = 'A'`;

const TABLES_SQL = `
select c.oid::int as oid, n.nspname as schema, c.relname as name, c.relkind in ('v', 'm') as is_view,
       c.relrowsecurity as rls_enabled, coalesce(obj_description(c.oid, 'pg_class'), '') as comment,
       (select coalesce(array_agg(a.attname::text order by k.ord), '{}')
          from pg_index i cross join lateral unnest(i.indkey) with ordinality k(attnum, ord)
          join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
         where i.indrelid = c.oid and i.indisprimary) as primary_key,
       (select json_agg(json_build_object(
                 'role', r.role,
                 'select', has_table_privilege(r.role, c.oid, 'SELECT'),
                 'insert', has_table_privilege(r.role, c.oid, 'INSERT'),
                 'update', has_table_privilege(r.role, c.oid, 'UPDATE'),
                 'delete', has_table_privilege(r.role, c.oid, 'DELETE')))
          from unnest($2::text[]) r(role)) as privileges
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where n.nspname = any($1) and c.relkind in ('r', 'p', 'v', 'm', 'f')
order by n.nspname, c.relname`;

// type_sql leaves out the type modifier: an explicit cast to varchar(50) or char(n) silently
// truncates, where storing into the column rejects an over-long value (and a filter would
// compare against the truncated value).
const COLUMNS_SQL = `
select a.attrelid::int as table_oid, a.attname as name, a.atttypid::int as type_oid,
       format_type(a.atttypid, null) as type_sql, not a.attnotnull as nullable,
       (select case
                 when not co.collisdeterministic then 'nondeterministic'
                 when p.provider = 'b' or (p.provider = 'c' and p.locale in ('C', 'POSIX')) then 'bytes'
                 else 'deterministic' end
          from pg_collation co
          cross join lateral (
            -- The database default: its provider (PostgreSQL 15+; libc before) and libc locale.
            select case when co.collprovider = 'd'
                        then coalesce((select to_jsonb(d) ->> 'datlocprovider' from pg_database d where d.datname = current_database()), 'c')
                        else co.collprovider::text end as provider,
                   case when co.collprovider = 'd'
                        then (select d.datcollate::text from pg_database d where d.datname = current_database())
                        else co.collcollate::text end as locale
          ) p
         where co.oid = a.attcollation) as collation,
       (select format('%I.%I', cn.nspname, co.collname)
          from pg_collation co join pg_namespace cn on cn.oid = co.collnamespace
         where co.oid = a.attcollation
           and a.attcollation <> (select t.typcollation from pg_type t where t.oid = a.atttypid)) as collate_sql,
       (a.atthasdef or a.attidentity <> '') as has_default,
       (a.attgenerated <> '' or a.attidentity = 'a') as generated,
       (select json_agg(json_build_object(
                 'role', r.role,
                 'select', has_column_privilege(r.role, a.attrelid, a.attnum, 'SELECT'),
                 'insert', has_column_privilege(r.role, a.attrelid, a.attnum, 'INSERT'),
                 'update', has_column_privilege(r.role, a.attrelid, a.attnum, 'UPDATE')))
          from unnest($2::text[]) r(role)) as privileges
from pg_attribute a
join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
where n.nspname = any($1) and c.relkind in ('r', 'p', 'v', 'm', 'f') and a.attnum > 0 and not a.attisdropped
order by a.attrelid, a.attnum`;

const FOREIGN_KEYS_SQL = `
select co.conrelid::int as table_oid, co.conname as name,
       (select array_agg(a.attname::text order by k.ord) from unnest(co.conkey) with ordinality k(attnum, ord)
          join pg_attribute a on a.attrelid = co.conrelid and a.attnum = k.attnum) as columns,
       rn.nspname as referenced_schema, rc.relname as referenced_table,
       (select array_agg(a.attname::text order by k.ord) from unnest(co.confkey) with ordinality k(attnum, ord)
          join pg_attribute a on a.attrelid = co.confrelid and a.attnum = k.attnum) as referenced_columns
from pg_constraint co
join pg_class c on c.oid = co.conrelid join pg_namespace n on n.oid = c.relnamespace
join pg_class rc on rc.oid = co.confrelid join pg_namespace rn on rn.oid = rc.relnamespace
where co.contype = 'f' and n.nspname = any($1)`;

const FUNCTIONS_SQL = `
select p.oid::int as oid, n.nspname as schema, p.proname as name,
       coalesce(p.proallargtypes::int[], p.proargtypes::int[]) as arg_types,
       coalesce(p.proargmodes::text[], '{}') as arg_modes,
       coalesce(p.proargnames, '{}') as arg_names,
       (select coalesce(array_agg(format_type(u.t, null) order by u.o), '{}')
          from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) with ordinality u(t, o)) as arg_type_sqls,
       p.pronargdefaults as n_defaults,
       p.prorettype::int as return_type_oid, format_type(p.prorettype, null) as return_type_sql,
       p.proretset as returns_set, p.provolatile as volatility,
       (select coalesce(array_agg(r.role), '{}') from unnest($2::text[]) r(role)
         where has_function_privilege(r.role, p.oid, 'EXECUTE')) as executable_by
from pg_proc p join pg_namespace n on n.oid = p.pronamespace
where n.nspname = any($1) and p.prokind = 'f'
  and p.prorettype not in ('trigger'::regtype, 'event_trigger'::regtype)`;

interface TypeRow {
  oid: number;
  name: string;
  category: string;
  element_oid: number;
  base_oid: number;
  enum_values: string[];
}

/**
 * Reads the schema catalog of `schemas` and the privileges of each of `roles`. Runs as
 * ordinary catalog queries (any role can read pg_catalog), outside request transactions.
 */
export async function loadCatalog(
  connectionString: string,
  schemas: readonly string[],
  roles: readonly string[],
): Promise<SchemaCatalog> {
  // Pipelined: the five catalog queries go out together. A session connection (session.ts), so
  // the server dropping it mid-load fails the load instead of crashing the process.
  const client = await openSession({ connectionString, applicationName: 'sluice-catalog', pipeline: true });
  try {
    const params = [schemas, roles];
    const [types, tables, columns, fks, functions] = await Promise.all([
      client.query<TypeRow>(TYPES_SQL),
      client.query(TABLES_SQL, params),
      client.query(COLUMNS_SQL, params),
      client.query(FOREIGN_KEYS_SQL, [schemas]),
      client.query(FUNCTIONS_SQL, params),
    ]);
    const registry = new TypeRegistry(buildTypes(types.rows));
    const columnsByTable = groupBy(columns.rows, (r) => r.table_oid as number);
    const fksByTable = groupBy(fks.rows, (r) => r.table_oid as number);
    const catalogTables: CatalogTable[] = tables.rows.map((t) => {
      const cols: CatalogColumn[] = (columnsByTable.get(t.oid) ?? []).map((c) => ({
        name: c.name,
        typeOid: c.type_oid,
        typeSql: c.type_sql,
        collation: c.collation,
        collateSql: c.collate_sql,
        nullable: c.nullable,
        hasDefault: c.has_default,
        generated: c.generated,
        privileges: byRole<ColumnPrivileges>(c.privileges),
      }));
      return {
        oid: t.oid,
        schema: t.schema,
        name: t.name,
        isView: t.is_view,
        columns: cols,
        columnsByName: new Map(cols.map((c) => [c.name, c])),
        primaryKey: t.primary_key,
        foreignKeys: (fksByTable.get(t.oid) ?? []).map((f) => ({
          name: f.name,
          columns: f.columns,
          referencedSchema: f.referenced_schema,
          referencedTable: f.referenced_table,
          referencedColumns: f.referenced_columns,
        })),
        rlsEnabled: t.rls_enabled,
        comment: t.comment,
        privileges: byRole<TablePrivileges>(t.privileges),
      };
    });
    const catalogFunctions = functions.rows.map(buildFunction);
    return new SchemaCatalog(schemas, catalogTables, catalogFunctions, registry);
  } finally {
    await client.end().catch(() => {});
  }
}

function buildTypes(rows: readonly TypeRow[]): PgType[] {
  const byOid = new Map(rows.map((r) => [r.oid, r]));
  return rows.map((r) => {
    const element = r.category === 'A' ? byOid.get(r.element_oid) : undefined;
    return {
      oid: r.oid,
      name: element ? `${element.name}[]` : r.name,
      category: r.category,
      elementOid: r.element_oid,
      enumValues: r.enum_values,
      baseOid: r.base_oid,
    };
  });
}

// biome-ignore lint/suspicious/noExplicitAny: catalog rows are untyped query results.
function buildFunction(f: any): CatalogFunction {
  const argTypes: number[] = f.arg_types;
  const modes: string[] = f.arg_modes;
  const names: string[] = f.arg_names;
  const typeSqls: string[] = f.arg_type_sqls;
  const inputs = argTypes
    .map((typeOid, i) => ({
      typeOid,
      typeSql: typeSqls[i] ?? 'unknown',
      mode: modes[i] ?? 'i',
      name: names[i] ?? '',
    }))
    .filter((a) => a.mode === 'i' || a.mode === 'b' || a.mode === 'v');
  const firstDefault = inputs.length - (f.n_defaults as number);
  return {
    schema: f.schema,
    name: f.name,
    oid: f.oid,
    args: inputs.map((a, i) => ({
      name: a.name,
      typeOid: a.typeOid,
      typeSql: a.typeSql,
      hasDefault: i >= firstDefault,
    })),
    returnTypeOid: f.return_type_oid,
    returnTypeSql: f.return_type_sql,
    returnsSet: f.returns_set,
    volatility: f.volatility === 'i' ? 'immutable' : f.volatility === 's' ? 'stable' : 'volatile',
    executableBy: new Set(f.executable_by),
  };
}

function byRole<T>(rows: readonly ({ role: string } & T)[] | null): Record<string, T> {
  const out: Record<string, T> = {};
  for (const { role, ...rest } of rows ?? []) out[role] = rest as T;
  return out;
}

function groupBy<T>(rows: readonly T[], key: (row: T) => number): Map<number, T[]> {
  const map = new Map<number, T[]>();
  for (const row of rows) {
    const k = key(row);
    const list = map.get(k);
    if (list) list.push(row);
    else map.set(k, [row]);
  }
  return map;
}
