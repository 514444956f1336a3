export { loseChangeWindows } from './change-log';
export { createTestDatabase, type TestDatabase } from './database';
export { ACME, GLOBEX, TEST_JWT_SECRET, USERS } from './demo-data';
export { announceSkip, type Daemon, findExecutable, startDaemon, waitFor } from './external-tool';
export { freePort } from './global-setup';
export { type LokiLine, type LokiPush, type LokiReceiver, startLokiReceiver } from './loki-receiver';
export { type OtlpExport, type OtlpReceiver, type OtlpSpan, startOtlpReceiver } from './otlp-receiver';
export { REFERENCE_MIGRATIONS_DIR, SEED_FILE } from './template';
export { AUTHENTICATOR_PASSWORD, asAuthenticator, withDatabase } from './urls';
