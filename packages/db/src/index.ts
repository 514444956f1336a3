export {
  type CatalogColumn,
  type CatalogForeignKey,
  type CatalogFunction,
  type CatalogFunctionArg,
  type CatalogTable,
  type ColumnPrivileges,
  loadCatalog,
  SchemaCatalog,
  type TablePrivileges,
} from './catalog';
export { CatalogWatcher, type CatalogWatcherOptions } from './catalog-watcher';
export {
  Database,
  type DatabaseOptions,
  type RequestScope,
  type RequestTransaction,
  type ResultField,
  type Statement,
  type StatementResult,
} from './database';
export { mapPgError } from './errors';
export { type PgType, TypeRegistry, type TypeKind } from './pg-types';
export { createPool, type PoolConfig } from './pool';
export { compile } from './sql';
export { decodeValue, encodeValue, formatTimestamp, parseTimestamp, type PgParam } from './wire-values';
