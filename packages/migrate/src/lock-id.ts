import { crc32 } from 'node:zlib';

/** golang-migrate's `advisoryLockIdSalt` (database/util.go). */
const ADVISORY_LOCK_ID_SALT = 1486364155;

/**
 * The `pg_advisory_lock` key golang-migrate computes (`database.GenerateAdvisoryLockId`), so Sluice
 * and the `migrate` CLI exclude each other: crc32 (IEEE) of `databaseName`, then each additional
 * name preceded by a NUL byte, multiplied by the salt in uint32 arithmetic (wrapping).
 *
 * golang-migrate's postgres driver calls it as `(databaseName, schemaName, tableName)`.
 * Returns a decimal string, as golang-migrate passes it, because the value is a uint32 that
 * PostgreSQL reads as a bigint.
 */
export function advisoryLockId(databaseName: string, ...additionalNames: string[]): string {
  const key = [databaseName, ...additionalNames].join('\x00');
  const sum = crc32(Buffer.from(key, 'utf8'));
  return String(Math.imul(sum, ADVISORY_LOCK_ID_SALT) >>> 0);
}
