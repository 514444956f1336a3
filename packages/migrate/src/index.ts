export { type AdvisoryLockOptions, withAdvisoryLock } from './advisory-lock';
export { runCliProcess } from './cli-process';
export { advisoryLockId } from './lock-id';
export {
  createMigration,
  listMigrations,
  type Migration,
  type ParsedFileName,
  parseMigrationFileName,
} from './migration-files';
export { type Applied, Migrator, type MigratorOptions, type VersionState } from './migrator';
export {
  type DatabaseTarget,
  type RunCliOptions,
  resolveDatabaseUrl,
  runCli,
  type UpAll,
  USAGE,
} from './run-cli';
