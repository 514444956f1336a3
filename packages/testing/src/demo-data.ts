/** Shared HS256 secret of the test stacks (tokens are signed with it). */
export const TEST_JWT_SECRET = 'test-secret-that-is-long-enough-for-hs256!';

/** The demo users of db/seed.sql (see its header); every seeded membership is accepted. */
export const USERS = {
  alice: 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa', // admin of Acme
  bob: 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb', // admin of Globex
  carol: 'cccccccc-cccc-cccc-cccc-cccccccccccc', // viewer in Acme
  dave: 'dddddddd-dddd-dddd-dddd-dddddddddddd', // editor in Acme
} as const;

/** The demo tenants of db/seed.sql. */
export const ACME = '11111111-1111-1111-1111-111111111111';
export const GLOBEX = '22222222-2222-2222-2222-222222222222';
