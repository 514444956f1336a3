// The npm registry mirror this project is built against lacks some platform-specific optional
// packages of @biomejs/biome and @bufbuild/buf (macOS, Windows, Android, musl builds). npm then
// leaves them out of package-lock.json, and `npm ci` refuses the lock as "missing" entries even
// though it would skip those packages on this platform anyway. This adds the missing entries
// (version, os, cpu, libc; optional) so `npm ci` accepts the lock; it never changes an entry
// that exists. Run it after `npm install` changes the lock: `node scripts/complete-lockfile.mjs`.
import { readFileSync, writeFileSync } from 'node:fs';

const file = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(file, 'utf8'));
const PLATFORM = /-(android|darwin|linux|win32)-(arm64|x64|armv7|aarch64|ia32)(-musl)?$/;
const CPU = { arm64: 'arm64', aarch64: 'arm64', x64: 'x64', armv7: 'arm', ia32: 'ia32' };
let added = 0;
for (const [path, entry] of Object.entries(lock.packages)) {
  for (const [name, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const m = PLATFORM.exec(name);
    const key = `node_modules/${name}`;
    if (!m || lock.packages[key] || lock.packages[`${path}/${key}`]) continue;
    lock.packages[key] = {
      version,
      cpu: [CPU[m[2]]],
      ...(entry.dev ? { dev: true } : {}),
      ...(m[3] ? { libc: ['musl'] } : {}),
      optional: true,
      os: [m[1]],
    };
    added++;
  }
}
lock.packages = Object.fromEntries(
  Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b))),
);
writeFileSync(file, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`complete-lockfile: added ${added} platform entries`);
