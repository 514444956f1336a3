import type { Logger } from 'pino';

/**
 * Who a request runs as, from a verified token (or the anonymous role). `role` is always one
 * of the configured allowlist; `claims` is what `request.jwt.claims` carries into PostgreSQL.
 */
export interface Identity {
  readonly role: string;
  readonly claims: Readonly<Record<string, unknown>>;
  readonly userId: string | undefined;
  readonly tenantId: string | undefined;
}

/**
 * Everything a handler knows about its call besides the request message. `signal` aborts on
 * client cancel, deadline or server shutdown; `deadline` is the client's deadline, if it sent one.
 */
export interface RequestContext {
  readonly signal: AbortSignal;
  readonly deadline: Date | undefined;
  readonly requestId: string;
  readonly method: string;
  readonly logger: Logger;
}
