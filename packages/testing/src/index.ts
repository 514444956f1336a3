export { createTestDatabase, type TestDatabase } from './database';
export { freePort } from './global-setup';
export { REFERENCE_MIGRATIONS_DIR, SEED_FILE } from './template';
export { AUTHENTICATOR_PASSWORD, asAuthenticator, withDatabase } from './urls';
