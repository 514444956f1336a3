import { type Attributes, type Span, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { recordingTracerFor } from './tracing';

const SCOPE = '@sluice/db';

/**
 * Starts a CLIENT span for one SQL statement beneath the active span, or answers undefined when
 * tracing is off or the active span is not sampled (its children would not be either).
 *
 * The span carries what the statement is, never what it was given: `db.query.summary` (e.g.
 * `SELECT public.posts`), the operation and the table, taken from the statement's text with its
 * string literals removed. Sluice's statements are parameterized, and the parameters (row values,
 * claims) are never recorded; neither is the full SQL text.
 */
export function startSqlSpan(sql: string): Span | undefined {
  const tracer = recordingTracerFor(SCOPE);
  if (!tracer) return undefined;
  const s = summarize(sql);
  return tracer.startSpan(s.summary, { kind: SpanKind.CLIENT, attributes: s.attributes });
}

/**
 * Ends `span` (when there is one) as `result` settles: with the row count on success, with the
 * SQLSTATE on failure (not the message, which can quote values). Returns `result` itself.
 */
export function trackSqlSpan<
  T extends { readonly rowCount: number | null; readonly rows?: readonly unknown[] },
>(span: Span | undefined, result: Promise<T>): Promise<T> {
  if (!span) return result;
  result.then(
    (r) => endSqlSpan(span, r.rowCount ?? r.rows?.length ?? 0),
    (error: unknown) => endSqlSpan(span, undefined, error),
  );
  return result;
}

/** Ends a SQL span with its row count, or with the failure's SQLSTATE as `error.type`. */
export function endSqlSpan(span: Span | undefined, rows: number | undefined, error?: unknown): void {
  if (!span) return;
  if (error !== undefined) {
    const code = (error as { code?: unknown } | null)?.code;
    const type = typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : 'error';
    span.setAttribute('error.type', type);
    if (type !== 'error') span.setAttribute('db.response.status_code', type);
    span.setStatus({ code: SpanStatusCode.ERROR, message: type });
  } else if (rows !== undefined) {
    span.setAttribute('db.response.returned_rows', rows);
  }
  span.end();
}

interface Summary {
  readonly summary: string;
  readonly attributes: Attributes;
}

// Statements repeat (the data service compiles the same shapes over and over): summarize each
// text once. Bounded: cleared when full rather than tracking recency.
const summaries = new Map<string, Summary>();
const MAX_SUMMARIES = 2000;

const IDENT = String.raw`(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)`;
const TARGET_RE = new RegExp(
  String.raw`\b(?:from|into|update|join)\s+(?:only\s+)?(${IDENT}(?:\s*\.\s*${IDENT})?)`,
  'i',
);
const FIRST_WORD_RE = /^\s*(?:\/\*[\s\S]*?\*\/\s*)?([A-Za-z]+)/;

function summarize(sql: string): Summary {
  const cached = summaries.get(sql);
  if (cached) return cached;
  // String literals and dollar-quoted bodies out first: a literal could look like "from x".
  const text = sql.replace(/'(?:[^']|'')*'/g, "''").replace(/\$(\w*)\$[\s\S]*?\$\1\$/g, "''");
  const operation = (FIRST_WORD_RE.exec(text)?.[1] ?? 'SQL').toUpperCase();
  const target = TARGET_RE.exec(text)?.[1];
  const table = target
    ?.split(/\s*\.\s*/)
    .map((part) => (part.startsWith('"') ? part.slice(1, -1).replaceAll('""', '"') : part.toLowerCase()))
    .join('.')
    .slice(0, 128);
  const summary = table ? `${operation} ${table}` : operation;
  const attributes: Attributes = {
    'db.system': 'postgresql',
    'db.system.name': 'postgresql',
    'db.operation.name': operation,
    'db.query.summary': summary,
    ...(table ? { 'db.collection.name': table } : {}),
  };
  const result = { summary, attributes };
  if (summaries.size >= MAX_SUMMARIES) summaries.clear();
  summaries.set(sql, result);
  return result;
}
