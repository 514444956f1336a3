import type { EnvReader } from '@sluice/core';

/** Where and how log lines are shipped to Loki (see `createLogger`). */
export interface LokiSettings {
  /** The push endpoint, `…/loki/api/v1/push`. */
  readonly pushUrl: string;
  /** Basic auth (Grafana Cloud: the stack's user id and an access token). */
  readonly basicAuth: { readonly username: string; readonly password: string } | undefined;
  /** Sent as `X-Scope-OrgID` (a multi-tenant Loki's tenant; not a Sluice tenant). */
  readonly tenantId: string | undefined;
  /** How long lines wait to be sent together. */
  readonly batchIntervalMs: number;
  /** How long one push may take before it counts as failed. */
  readonly timeoutMs: number;
  /** Lines held while Loki is slow or down; beyond it the oldest are dropped (and counted). */
  readonly maxBufferedLines: number;
  /** Gzip each push (Loki ≥ 2.2 accepts `Content-Encoding: gzip`; JSON logs shrink ~10×). */
  readonly gzip: boolean;
}

/** Log settings every service reads the same way. */
export interface LogSettings {
  /** Absent when `LOKI_URL` is unset: lines go to stdout only. */
  readonly loki: LokiSettings | undefined;
}

const PUSH_PATH = '/loki/api/v1/push';

/**
 * Reads LOKI_URL, LOKI_USERNAME, LOKI_PASSWORD, LOKI_TENANT_ID, LOKI_BATCH_INTERVAL_MS,
 * LOKI_TIMEOUT_MS, LOKI_MAX_BUFFERED_LINES and LOKI_GZIP through a service's EnvReader; problems are
 * recorded on the reader. LOKI_URL may be Loki's base URL or the full push URL; credentials in
 * the URL are taken as basic auth when LOKI_USERNAME is not set. Problem messages never repeat
 * a password.
 */
export function readLogSettings(r: EnvReader): LogSettings {
  const raw = r.string('LOKI_URL');
  const username = r.string('LOKI_USERNAME');
  const password = r.string('LOKI_PASSWORD');
  const tenantId = r.string('LOKI_TENANT_ID');
  const batchIntervalMs = r.int('LOKI_BATCH_INTERVAL_MS', 1000, { min: 10, max: 60_000 });
  const timeoutMs = r.int('LOKI_TIMEOUT_MS', 5000, { min: 100, max: 120_000 });
  const maxBufferedLines = r.int('LOKI_MAX_BUFFERED_LINES', 10_000, { min: 100, max: 1_000_000 });
  const gzip = r.bool('LOKI_GZIP', true);
  if (raw === undefined) {
    const stray = [
      ['LOKI_USERNAME', username],
      ['LOKI_PASSWORD', password],
      ['LOKI_TENANT_ID', tenantId],
    ].filter(([, value]) => value !== undefined);
    for (const [name] of stray) r.problem(`${name} is set but LOKI_URL is not (Loki shipping is off)`);
    return { loki: undefined };
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    r.problem('LOKI_URL must be an http(s) URL such as http://loki:3100');
    return { loki: undefined };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    r.problem(`LOKI_URL must be an http or https URL, got a ${url.protocol} URL`);
    return { loki: undefined };
  }
  let basicAuth: LokiSettings['basicAuth'];
  if (username !== undefined || password !== undefined) {
    if (username === undefined || password === undefined)
      r.problem('LOKI_USERNAME and LOKI_PASSWORD go together: set both or neither');
    else basicAuth = { username, password };
  } else if (url.username !== '') {
    basicAuth = { username: decodeURIComponent(url.username), password: decodeURIComponent(url.password) };
  }
  url.username = '';
  url.password = '';
  if (!url.pathname.endsWith(PUSH_PATH)) url.pathname = url.pathname.replace(/\/+$/, '') + PUSH_PATH;
  return {
    loki: { pushUrl: url.href, basicAuth, tenantId, batchIntervalMs, timeoutMs, maxBufferedLines, gzip },
  };
}
