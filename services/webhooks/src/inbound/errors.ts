/**
 * Why the ingress refuses a request: the `code` of its JSON error body and the `reason` label of
 * webhooks_inbound_rejected_total. A closed list, one place.
 */
export type IngressReason =
  | 'not_found'
  | 'method_not_allowed'
  | 'unknown_source'
  | 'missing_signature'
  | 'malformed_signature'
  | 'stale_timestamp'
  | 'bad_signature'
  | 'body_too_large'
  | 'unsupported_media_type'
  | 'malformed_request'
  | 'malformed_json'
  | 'missing_event_id'
  | 'invalid_change'
  | 'rate_limited'
  | 'overloaded'
  | 'database_unavailable'
  | 'source_misconfigured'
  | 'internal';

const STATUS: Readonly<Record<IngressReason, number>> = {
  not_found: 404,
  method_not_allowed: 405,
  unknown_source: 404,
  missing_signature: 401,
  malformed_signature: 401,
  stale_timestamp: 401,
  bad_signature: 401,
  body_too_large: 413,
  unsupported_media_type: 415,
  malformed_request: 400,
  malformed_json: 400,
  missing_event_id: 400,
  invalid_change: 422,
  rate_limited: 429,
  overloaded: 503,
  database_unavailable: 503,
  source_misconfigured: 500,
  internal: 500,
};

/**
 * A refusal with its HTTP status. `message` goes to the sender: it names the problem and never
 * carries a secret or the body; `field` names the payload field for invalid_change.
 */
export class IngressError extends Error {
  readonly status: number;

  constructor(
    readonly reason: IngressReason,
    message: string,
    readonly options: {
      readonly retryAfterSeconds?: number;
      readonly field?: string;
      readonly cause?: unknown;
    } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'IngressError';
    this.status = STATUS[reason];
  }

  /** The JSON answer: {"error": {"code", "message", "field"?}}. */
  body(): { error: { code: IngressReason; message: string; field?: string } } {
    return {
      error: {
        code: this.reason,
        message: this.message,
        ...(this.options.field === undefined ? {} : { field: this.options.field }),
      },
    };
  }
}
