import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { BinaryReader, type WireType } from '@bufbuild/protobuf/wire';

/** One span as a collector decodes it, the same whichever encoding it came in. */
export interface OtlpSpan {
  /** Hex, as in W3C traceparent. */
  readonly traceId: string;
  readonly spanId: string;
  /** Empty for a root span. */
  readonly parentSpanId: string;
  readonly name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  readonly kind: number;
  readonly attributes: Readonly<Record<string, unknown>>;
  readonly links: readonly { readonly traceId: string; readonly spanId: string }[];
  /** OTLP status code: 0 unset, 1 ok, 2 error. */
  readonly status: { readonly code: number; readonly message: string };
  /** The instrumentation scope's name (e.g. "@sluice/grpc"). */
  readonly scope: string;
  readonly resource: Readonly<Record<string, unknown>>;
}

/** One export request as received. */
export interface OtlpExport {
  readonly headers: IncomingHttpHeaders;
  readonly encoding: 'json' | 'protobuf';
  /** The raw body (decompressed), to search for anything that must never be sent. */
  readonly body: Buffer;
  readonly spans: readonly OtlpSpan[];
}

export interface OtlpReceiver {
  /** The base URL, as OTEL_EXPORTER_OTLP_ENDPOINT takes it; traces go to `/v1/traces`. */
  readonly url: string;
  readonly exports: readonly OtlpExport[];
  /** Every span received so far, in arrival order. */
  spans(): OtlpSpan[];
  /** Resolves with the first received span satisfying `match` (rejects after `timeoutMs`). */
  waitFor(match: (span: OtlpSpan) => boolean, timeoutMs?: number): Promise<OtlpSpan>;
  close(): Promise<void>;
}

/**
 * A real HTTP server speaking OTLP/HTTP for traces (`POST /v1/traces`) on 127.0.0.1, any free
 * port, as a collector does: `application/json` (OTLP/JSON: hex ids, int64 as strings) and
 * `application/x-protobuf` bodies, optionally gzip-encoded. Protobuf is decoded from the wire
 * format here (the fields of opentelemetry.proto.trace.v1 Sluice's assertions need), not with
 * the exporter's own code, so the test checks what a collector would read. Answers 200 with an
 * empty ExportTraceServiceResponse, 415 for other content types, 400 for a body it cannot decode.
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const exports: OtlpExport[] = [];
  const waiters = new Set<() => void>();
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'POST' || path !== '/v1/traces') {
      res.writeHead(404).end();
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim();
      const encoding =
        type === 'application/json' ? 'json' : type === 'application/x-protobuf' ? 'protobuf' : undefined;
      if (!encoding) {
        res.writeHead(415).end();
        return;
      }
      let body: Buffer;
      let spans: OtlpSpan[];
      try {
        const raw = Buffer.concat(chunks);
        body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
        spans = encoding === 'json' ? decodeJson(body) : decodeProtobuf(body);
      } catch (error) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end(String(error));
        return;
      }
      exports.push({ headers: req.headers, encoding, body, spans });
      for (const wake of [...waiters]) wake();
      if (encoding === 'json') res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      else res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  const all = () => exports.flatMap((e) => e.spans);
  return {
    url: `http://127.0.0.1:${port}`,
    exports,
    spans: all,
    waitFor(match, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = all().find(match);
          if (!found) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(found);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching span within ${timeoutMs} ms (received ${all().length})`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

// ---- OTLP/JSON ----

interface JsonKeyValue {
  key: string;
  value?: JsonAnyValue;
}
interface JsonAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
  arrayValue?: { values?: JsonAnyValue[] };
  kvlistValue?: { values?: JsonKeyValue[] };
  bytesValue?: string;
}

function decodeJson(body: Buffer): OtlpSpan[] {
  const request = JSON.parse(body.toString('utf8')) as {
    resourceSpans?: {
      resource?: { attributes?: JsonKeyValue[] };
      scopeSpans?: {
        scope?: { name?: string };
        spans?: {
          traceId: string;
          spanId: string;
          parentSpanId?: string;
          name: string;
          kind?: number;
          attributes?: JsonKeyValue[];
          links?: { traceId: string; spanId: string }[];
          status?: { code?: number; message?: string };
        }[];
      }[];
    }[];
  };
  const out: OtlpSpan[] = [];
  for (const rs of request.resourceSpans ?? []) {
    const resource = jsonAttributes(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: jsonId(s.traceId),
          spanId: jsonId(s.spanId),
          parentSpanId: jsonId(s.parentSpanId ?? ''),
          name: s.name,
          kind: s.kind ?? 0,
          attributes: jsonAttributes(s.attributes),
          links: (s.links ?? []).map((l) => ({ traceId: jsonId(l.traceId), spanId: jsonId(l.spanId) })),
          status: { code: s.status?.code ?? 0, message: s.status?.message ?? '' },
          scope: ss.scope?.name ?? '',
          resource,
        });
      }
    }
  }
  return out;
}

/** OTLP/JSON ids are hex; base64 is accepted too (protobuf-JSON's default for bytes). */
function jsonId(id: string): string {
  if (/^(?:[\da-f]{32}|[\da-f]{16}|)$/i.test(id)) return id.toLowerCase();
  return Buffer.from(id, 'base64').toString('hex');
}

function jsonAttributes(list: JsonKeyValue[] | undefined): Record<string, unknown> {
  return Object.fromEntries((list ?? []).map((kv) => [kv.key, jsonValue(kv.value)]));
}

function jsonValue(v: JsonAnyValue | undefined): unknown {
  if (!v) return undefined;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(jsonValue);
  if (v.kvlistValue) return jsonAttributes(v.kvlistValue.values);
  if (v.bytesValue !== undefined) return Buffer.from(v.bytesValue, 'base64');
  return undefined;
}

// ---- OTLP/protobuf (opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest) ----

/** Calls `field` for every field of the message in `bytes`; unknown fields are skipped. */
function fields(bytes: Uint8Array, field: (no: number, r: BinaryReader, wt: WireType) => boolean): void {
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (!field(no, r, wt)) r.skip(wt, no);
  }
}

function decodeProtobuf(body: Buffer): OtlpSpan[] {
  const out: OtlpSpan[] = [];
  fields(body, (no, r) => {
    if (no !== 1) return false; // resource_spans
    const resourceSpans = r.bytes();
    let resource: Record<string, unknown> = {};
    const scopeSpans: Uint8Array[] = [];
    fields(resourceSpans, (n, rr) => {
      if (n === 1) {
        fields(rr.bytes(), (rn, rrr) => {
          if (rn !== 1) return false;
          const [k, v] = pbKeyValue(rrr.bytes());
          resource = { ...resource, [k]: v };
          return true;
        });
        return true;
      }
      if (n === 2) {
        scopeSpans.push(rr.bytes());
        return true;
      }
      return false;
    });
    for (const ss of scopeSpans) {
      let scope = '';
      const spans: Uint8Array[] = [];
      fields(ss, (n, rr) => {
        if (n === 1) {
          fields(rr.bytes(), (sn, sr) => {
            if (sn !== 1) return false;
            scope = sr.string();
            return true;
          });
          return true;
        }
        if (n === 2) {
          spans.push(rr.bytes());
          return true;
        }
        return false;
      });
      for (const span of spans) out.push({ ...pbSpan(span), scope, resource });
    }
    return true;
  });
  return out;
}

function pbSpan(bytes: Uint8Array): Omit<OtlpSpan, 'scope' | 'resource'> {
  let traceId = '';
  let spanId = '';
  let parentSpanId = '';
  let name = '';
  let kind = 0;
  const attributes: Record<string, unknown> = {};
  const links: { traceId: string; spanId: string }[] = [];
  const status = { code: 0, message: '' };
  fields(bytes, (no, r) => {
    switch (no) {
      case 1:
        traceId = hex(r.bytes());
        return true;
      case 2:
        spanId = hex(r.bytes());
        return true;
      case 4:
        parentSpanId = hex(r.bytes());
        return true;
      case 5:
        name = r.string();
        return true;
      case 6:
        kind = r.int32();
        return true;
      case 9: {
        const [k, v] = pbKeyValue(r.bytes());
        attributes[k] = v;
        return true;
      }
      case 13: {
        const link = { traceId: '', spanId: '' };
        fields(r.bytes(), (ln, lr) => {
          if (ln === 1) link.traceId = hex(lr.bytes());
          else if (ln === 2) link.spanId = hex(lr.bytes());
          else return false;
          return true;
        });
        links.push(link);
        return true;
      }
      case 15:
        fields(r.bytes(), (sn, sr) => {
          if (sn === 2) status.message = sr.string();
          else if (sn === 3) status.code = sr.int32();
          else return false;
          return true;
        });
        return true;
      default:
        return false;
    }
  });
  return { traceId, spanId, parentSpanId, name, kind, attributes, links, status };
}

function pbKeyValue(bytes: Uint8Array): [string, unknown] {
  let key = '';
  let value: unknown;
  fields(bytes, (no, r) => {
    if (no === 1) key = r.string();
    else if (no === 2) value = pbAnyValue(r.bytes());
    else return false;
    return true;
  });
  return [key, value];
}

function pbAnyValue(bytes: Uint8Array): unknown {
  let value: unknown;
  fields(bytes, (no, r) => {
    switch (no) {
      case 1:
        value = r.string();
        return true;
      case 2:
        value = r.bool();
        return true;
      case 3:
        value = Number(r.int64());
        return true;
      case 4:
        value = r.double();
        return true;
      case 5: {
        const list: unknown[] = [];
        fields(r.bytes(), (n, rr) => {
          if (n !== 1) return false;
          list.push(pbAnyValue(rr.bytes()));
          return true;
        });
        value = list;
        return true;
      }
      case 6: {
        const map: Record<string, unknown> = {};
        fields(r.bytes(), (n, rr) => {
          if (n !== 1) return false;
          const [k, v] = pbKeyValue(rr.bytes());
          map[k] = v;
          return true;
        });
        value = map;
        return true;
      }
      case 7:
        value = Buffer.from(r.bytes());
        return true;
      default:
        return false;
    }
  });
  return value;
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}
