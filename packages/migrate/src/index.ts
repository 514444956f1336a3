export { advisoryLockId } from './lock-id';
export {
  createMigration,
  listMigrations,
  type Migration,
  type ParsedFileName,
  parseMigrationFileName,
} from './migration-files';
export { type Applied, Migrator, type MigratorOptions, type VersionState } from './migrator';
export { type DatabaseTarget, type RunCliOptions, resolveDatabaseUrl, runCli, USAGE } from './run-cli';
