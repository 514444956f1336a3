import type pg from 'pg';
import { readSourceSettings, type SourceKind, type SourceSettings } from '../stored-settings';

/**
 * Secrets a request is checked against at most, the newest: each costs a pass over the body,
 * and rotations within the grace period (up to 30 days) could otherwise pile up hundreds that
 * every forged request pays for.
 */
export const MAX_VERIFY_SECRETS = 16;

/** A source as the ingress needs it: its row and the secrets valid now. */
export interface InboundSource {
  readonly id: string;
  readonly name: string;
  readonly tenantId: string | null;
  readonly kind: Exclude<SourceKind, 'operational'>;
  readonly settings: SourceSettings;
  /** Secrets not expired, newest first, at most MAX_VERIFY_SECRETS. */
  readonly secrets: readonly string[];
}

interface Entry {
  /** undefined: no enabled HTTP source of that name. */
  readonly source: InboundSource | undefined;
  readonly loadedAt: number;
}

// One statement: the source and its unexpired secrets. The pool returns text for every column.
const LOAD_SQL = `
select s.id::text, s.tenant_id::text, s.kind, s.settings::text,
       coalesce(json_agg(k.secret order by k.created_at desc, k.id desc) filter (where k.id is not null), '[]')::text as secrets
  from sluice_webhooks.sources s
  left join sluice_webhooks.secrets k
         on k.source_id = s.id and (k.expires_at is null or k.expires_at > now())
 where s.name = $1 and s.enabled and s.kind <> 'operational'
 group by s.id`;

/**
 * Sources by name, cached for `ttlMs` so a busy source costs no query per request, and re-read
 * after that: a source disabled or a secret added, rotated or expired takes effect within the
 * TTL. Unknown names are cached too (a flood of them costs one query per name per TTL), apart
 * from the sources found: each kind holds at most `maxEntries` names, so a flood of made-up
 * names (anyone can send them) never pushes the real sources out. Concurrent misses for one
 * name share one query.
 */
export class SourceCache {
  private readonly found = new Map<string, Entry>();
  private readonly missing = new Map<string, Entry>();
  private readonly loading = new Map<string, Promise<Entry>>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly ttlMs = 2_000,
    private readonly maxEntries = 10_000,
  ) {}

  /**
   * The enabled HTTP source `name`, or undefined.
   *
   * @param maxAgeMs accept a cached answer at most this old (default: the TTL).
   * @throws the pool's error when the database cannot be asked.
   */
  async get(name: string, maxAgeMs = this.ttlMs): Promise<InboundSource | undefined> {
    const cached = this.cached(name);
    if (cached && Date.now() - cached.loadedAt <= Math.min(maxAgeMs, this.ttlMs)) return cached.source;
    let pending = this.loading.get(name);
    if (!pending) {
      pending = this.load(name).finally(() => this.loading.delete(name));
      this.loading.set(name, pending);
    }
    return (await pending).source;
  }

  /** How old the cached answer for `name` is, in ms (Infinity when none). */
  age(name: string): number {
    const cached = this.cached(name);
    return cached ? Date.now() - cached.loadedAt : Number.POSITIVE_INFINITY;
  }

  private cached(name: string): Entry | undefined {
    return this.found.get(name) ?? this.missing.get(name);
  }

  private async load(name: string): Promise<Entry> {
    const loadedAt = Date.now();
    const { rows } = await this.pool.query<{
      id: string;
      tenant_id: string | null;
      kind: InboundSource['kind'];
      settings: string;
      secrets: string;
    }>({ text: LOAD_SQL, values: [name] });
    const row = rows[0];
    const entry: Entry = {
      loadedAt,
      source: row && {
        id: row.id,
        name,
        tenantId: row.tenant_id,
        kind: row.kind,
        settings: readSourceSettings(JSON.parse(row.settings)),
        secrets: (JSON.parse(row.secrets) as string[]).slice(0, MAX_VERIFY_SECRETS),
      },
    };
    const [into, other] = entry.source ? [this.found, this.missing] : [this.missing, this.found];
    other.delete(name);
    if (into.size >= this.maxEntries) this.evictOld(into);
    into.set(name, entry);
    return entry;
  }

  private evictOld(entries: Map<string, Entry>): void {
    const now = Date.now();
    for (const [name, entry] of entries) if (now - entry.loadedAt > this.ttlMs) entries.delete(name);
    // Still full (a flood within one TTL): start again rather than grow.
    if (entries.size >= this.maxEntries) entries.clear();
  }
}
