export { createTestDatabase, type TestDatabase, withDatabase } from './database';
export { freePort } from './global-setup';
