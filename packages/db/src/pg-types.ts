/**
 * What Sluice knows about each PostgreSQL type it may meet in a result or a parameter: loaded
 * from pg_type with the schema catalog. Decoding and encoding look types up by OID only.
 */
export interface PgType {
  readonly oid: number;
  /** Schema-qualified when not in pg_catalog, e.g. `int8`, `public.mood`. */
  readonly name: string;
  /** pg_type.typcategory: 'A' array, 'B' bool, 'N' numeric, 'S' string, 'D' datetime, 'U' user… */
  readonly category: string;
  /** For arrays, the element type's OID; 0 otherwise. */
  readonly elementOid: number;
  /** Enum labels in order, for enum types. */
  readonly enumValues: readonly string[];
  /** For domains, the base type's OID; 0 otherwise. */
  readonly baseOid: number;
}

/** The base type names the codec treats specially. Anything else travels as its text form. */
export type TypeKind =
  | 'bool'
  | 'int'
  | 'float'
  | 'numeric'
  | 'timestamptz'
  | 'timestamp'
  | 'json'
  | 'bytea'
  | 'array'
  | 'text';

const KIND_BY_NAME: Readonly<Record<string, TypeKind>> = {
  bool: 'bool',
  int2: 'int',
  int4: 'int',
  int8: 'int',
  oid: 'int',
  float4: 'float',
  float8: 'float',
  numeric: 'numeric',
  timestamptz: 'timestamptz',
  timestamp: 'timestamp',
  json: 'json',
  jsonb: 'json',
  bytea: 'bytea',
};

/** OID -> type, with the kind of each resolved through domains. */
export class TypeRegistry {
  private readonly byOid = new Map<number, PgType>();

  constructor(types: Iterable<PgType>) {
    for (const t of types) this.byOid.set(t.oid, t);
  }

  get(oid: number): PgType | undefined {
    return this.byOid.get(oid);
  }

  /** The type a domain stands for (a plain type is its own base). */
  base(oid: number): PgType | undefined {
    let t = this.byOid.get(oid);
    for (let depth = 0; t && t.baseOid !== 0 && depth < 10; depth++) t = this.byOid.get(t.baseOid);
    return t;
  }

  kind(oid: number): TypeKind {
    const t = this.base(oid);
    if (!t) return 'text';
    if (t.category === 'A' && t.elementOid !== 0) return 'array';
    return KIND_BY_NAME[t.name] ?? 'text';
  }

  name(oid: number): string {
    return this.byOid.get(oid)?.name ?? `oid:${oid}`;
  }
}
