/** Password the test cluster gives the service's login role (embedded clusters use password auth). */
export const AUTHENTICATOR_PASSWORD = 'sluice-test-authenticator';

/** Replaces the database name of a PostgreSQL URL. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** The same URL, logging in as the service's role sluice_authenticator. */
export function asAuthenticator(url: string): string {
  const u = new URL(url);
  u.username = 'sluice_authenticator';
  u.password = AUTHENTICATOR_PASSWORD;
  return u.toString();
}
