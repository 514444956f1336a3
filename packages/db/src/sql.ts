import {
  DummyDriver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type RawBuilder,
} from 'kysely';
import type { Statement } from './database';

/**
 * A Kysely instance used only to compile SQL (it has no connection): handlers build statements
 * with Kysely's `sql` template — identifiers with `sql.id` from the schema catalog, values with
 * `sql.val` as $n parameters — and Database runs the compiled text on a pipelined connection.
 */
// biome-ignore lint/suspicious/noExplicitAny: tables are only known at run time, from the catalog.
const compiler = new Kysely<any>({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (db) => new PostgresIntrospector(db),
    createQueryCompiler: () => new PostgresQueryCompiler(),
  },
});

/** Compiles a Kysely raw SQL builder into a Statement. */
export function compile(builder: RawBuilder<unknown>): Statement {
  const compiled = builder.compile(compiler);
  return { sql: compiled.sql, parameters: compiled.parameters };
}
