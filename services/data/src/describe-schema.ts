import { invalidArgument } from '@sluice/core';
import type { SchemaCatalog } from '@sluice/db';
import type { data } from '@sluice/proto';

/**
 * What `role` can see and do in the exposed schemas: the tables on which it holds any
 * privilege, with per-column rights, and the functions it may execute. Objects the role
 * cannot touch are left out.
 */
export function describeSchema(
  catalog: SchemaCatalog,
  role: string,
  schemas: readonly string[],
): data.DescribeSchemaResponse {
  for (const [i, s] of schemas.entries()) {
    if (!catalog.schemas.includes(s))
      throw invalidArgument(
        'SLUICE_UNKNOWN_SCHEMA',
        `schemas[${i}]`,
        `Schema ${JSON.stringify(s)} is not exposed`,
      );
  }
  const wanted = new Set(schemas.length > 0 ? schemas : catalog.schemas);
  const tables: data.TableInfo[] = [];
  for (const t of catalog.allTables()) {
    if (!wanted.has(t.schema)) continue;
    const columns = t.columns
      .map((c) => ({ c, p: c.privileges[role] }))
      .filter(({ p }) => p && (p.select || p.insert || p.update))
      .map(({ c, p }) => {
        const type = catalog.types.base(c.typeOid);
        return {
          name: c.name,
          type: catalog.types.name(c.typeOid),
          nullable: c.nullable,
          hasDefault: c.hasDefault,
          isArray: catalog.types.kind(c.typeOid) === 'array',
          enumValues: [...(type?.enumValues ?? [])],
          canSelect: p?.select ?? false,
          canInsert: (p?.insert ?? false) && !c.generated,
          canUpdate: (p?.update ?? false) && !c.generated,
        };
      });
    const p = t.privileges[role];
    if (columns.length === 0 && !p?.delete) continue;
    tables.push({
      schema: t.schema,
      name: t.name,
      columns,
      primaryKey: [...t.primaryKey],
      foreignKeys: t.foreignKeys.map((f) => ({
        ...f,
        columns: [...f.columns],
        referencedColumns: [...f.referencedColumns],
      })),
      rlsEnabled: t.rlsEnabled,
      canSelect: columns.some((c) => c.canSelect),
      canInsert: columns.some((c) => c.canInsert),
      canUpdate: columns.some((c) => c.canUpdate),
      canDelete: p?.delete ?? false,
      isView: t.isView,
      comment: t.comment,
    });
  }
  const functions = catalog
    .allFunctions()
    .filter((f) => wanted.has(f.schema) && f.executableBy.has(role))
    .map((f) => ({
      schema: f.schema,
      name: f.name,
      args: f.args.map((a) => ({
        name: a.name,
        type: catalog.types.name(a.typeOid),
        hasDefault: a.hasDefault,
      })),
      returnType: catalog.types.name(f.returnTypeOid),
      returnsSet: f.returnsSet,
      volatility: f.volatility,
    }));
  return { tables, functions };
}
