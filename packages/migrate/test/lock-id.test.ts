import { describe, expect, it } from 'vitest';
import { advisoryLockId } from '../src/lock-id';

// A bitwise CRC-32 (IEEE, reflected, polynomial 0xEDB88320), written here independently of the
// implementation under test (which uses node:zlib).
function crc32Bitwise(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

// golang-migrate: sum * uint32(1486364155), wrapping at 2^32; computed with BigInt to be sure.
function expectedId(...names: string[]): string {
  const sum = BigInt(crc32Bitwise(new TextEncoder().encode(names.join('\x00'))));
  return ((sum * 1486364155n) % 2n ** 32n).toString();
}

describe('advisoryLockId', () => {
  it("matches golang-migrate's own test vectors (database/util_test.go)", () => {
    expect(advisoryLockId('database_name')).toBe('1764327054');
    expect(advisoryLockId('database_name', 'schema_name_1')).toBe('3244152297');
    expect(advisoryLockId('database_name', 'schema_name_2')).toBe('810103531');
  });

  it('matches an independent computation for (database, schema, table), database name first', () => {
    for (const [db, schema, table] of [
      ['/app', 'public', 'schema_migrations'],
      ['/app', 'public', 'sluice_schema_migrations'],
      ['sluice_test_0a1b2c', 'public', 'schema_migrations'],
      ['/dätabase', 'schéma', 'table'],
    ] as const) {
      expect(advisoryLockId(db, schema, table)).toBe(expectedId(db, schema, table));
    }
    // The order matters: golang-migrate writes the database name first.
    expect(advisoryLockId('/app', 'public', 'schema_migrations')).not.toBe(
      expectedId('public', 'schema_migrations', '/app'),
    );
  });

  it('is a uint32 in decimal', () => {
    const id = Number(advisoryLockId('/app', 'public', 'schema_migrations'));
    expect(Number.isInteger(id) && id >= 0 && id < 2 ** 32).toBe(true);
  });
});
