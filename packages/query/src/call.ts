import { invalidArgument } from '@sluice/core';
import { compile, encodeValue, type StatementResult } from '@sluice/db';
import type { data } from '@sluice/proto';
import { sql } from 'kysely';
import type { Access } from './access';
import type { Plan } from './plan';
import { EMPTY_RESULT, toResultSet } from './results';

/**
 * Plans a Call of a SQL function with named arguments. Stable and immutable functions run in a
 * read-only transaction. `select * from f(...)` gives a scalar function one column named after
 * it, a composite or set-returning function its own columns; void functions return no columns.
 */
export function planCall(req: data.CallRequest, access: Access, field = ''): Plan<data.CallResponse> {
  const seen = new Set<string>();
  for (const [i, a] of req.args.entries()) {
    if (seen.has(a.name))
      throw invalidArgument(
        'SLUICE_DUPLICATE_ARGUMENT',
        `${field}args[${i}].name`,
        `Argument ${a.name} is given twice`,
      );
    seen.add(a.name);
  }
  const fn = access.function(
    req.schema,
    req.function,
    req.args.map((a) => a.name),
    `${field}function`,
    `${field}args`,
  );
  const types = access.catalog.types;
  const args = req.args.map((a, i) => {
    const arg = fn.args.find((p) => p.name === a.name);
    if (!arg)
      throw invalidArgument(
        'SLUICE_UNKNOWN_ARGUMENT',
        `${field}args[${i}].name`,
        `Unknown argument ${a.name}`,
      );
    const v = encodeValue(a.value, arg.typeOid, types, `${field}args[${i}].value`);
    return sql`${sql.id(arg.name)} => ${sql.val(v)}::${sql.raw(arg.typeSql)}`;
  });
  const callee = sql`${sql.id(fn.schema, fn.name)}(${sql.join(args)})`;
  const isVoid = fn.returnTypeSql === 'void';
  const statement = isVoid ? sql`select ${callee}` : sql`select * from ${callee}`;
  return {
    readOnly: fn.volatility !== 'volatile',
    statements: [compile(statement)],
    oneShot: true,
    finish(results: readonly StatementResult[]) {
      return { result: isVoid ? EMPTY_RESULT : toResultSet(results[0] as StatementResult, types) };
    },
  };
}
