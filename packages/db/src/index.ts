export {
  CORE_MIGRATIONS_DIR,
  CORE_MIGRATIONS_TABLE,
  coreSchemaKnown,
  type MigrateAllOptions,
  migrateAll,
  migrationsCurrent,
  runReleaseCli,
  runSqlFile,
} from './bootstrap';
export {
  type BreakerSettings,
  type BreakerState,
  ConnectionBreaker,
  DEFAULT_BREAKER_SETTINGS,
  isConnectFailure,
} from './breaker';
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
export { type PgType, type TypeKind, TypeRegistry } from './pg-types';
export { createPool, type PoolConfig } from './pool';
export { type PoolSettings, poolConnectionString, readPoolSettings } from './pool-settings';
export { databaseReady, watchReadiness } from './readiness';
export {
  isConnectionError,
  isTransientConnectError,
  openSession,
  ReconnectingSession,
  type ReconnectingSessionOptions,
  releaseClient,
  type SessionOptions,
  withSession,
} from './session';
export { compile } from './sql';
export { decodeValue, encodeValue, formatTimestamp, type PgParam, parseTimestamp } from './wire-values';
