export {
  type EmbeddedPostgresOptions,
  type RunningPostgres,
  resolveDataDir,
  startEmbeddedPostgres,
  viaSocket,
} from './embedded-postgres';
