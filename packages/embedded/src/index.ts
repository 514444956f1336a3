export {
  type EmbeddedPostgresOptions,
  type RunningPostgres,
  resolveDataDir,
  startEmbeddedPostgres,
} from './embedded-postgres';
