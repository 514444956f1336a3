import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { type ErrorCode, Reason, SluiceError } from '../src/index';

// The reasons clients see are one closed list (reasons.ts). SluiceError's type enforces it where
// errors are made; this also checks the list itself and that no source file spells a reason the
// list does not have (a string passed around before it reaches a SluiceError).

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
// Environment settings that happen to start with SLUICE_, not reasons.
const SETTINGS = new Set(['SLUICE_ENV', 'SLUICE_DATA_DIR', 'SLUICE_SERVICES']);

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory())
      return ['gen', 'node_modules', '.tsbuild'].includes(entry.name) ? [] : sourceFiles(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

describe('Reason', () => {
  const values = Object.values(Reason) as string[];

  it('is a list of distinct SLUICE_ names', () => {
    expect(new Set(values).size).toBe(values.length);
    for (const v of values) expect(v).toMatch(/^SLUICE_[A-Z0-9_]+$/);
  });

  it('holds the reason of every status raised without one', () => {
    const codes: ErrorCode[] = [
      'CANCELLED',
      'INVALID_ARGUMENT',
      'DEADLINE_EXCEEDED',
      'NOT_FOUND',
      'ALREADY_EXISTS',
      'PERMISSION_DENIED',
      'RESOURCE_EXHAUSTED',
      'FAILED_PRECONDITION',
      'ABORTED',
      'OUT_OF_RANGE',
      'UNIMPLEMENTED',
      'INTERNAL',
      'UNAVAILABLE',
      'UNAUTHENTICATED',
    ];
    for (const code of codes) expect(values).toContain(new SluiceError(code, 'x').reason);
  });

  it('holds every reason the sources spell', () => {
    const spelled = new Set<string>();
    for (const base of ['packages', 'services']) {
      for (const pkg of readdirSync(path.join(ROOT, base))) {
        const src = path.join(ROOT, base, pkg, 'src');
        let files: string[] = [];
        try {
          files = sourceFiles(src);
        } catch {
          continue; // a package without src
        }
        for (const file of files) {
          for (const m of readFileSync(file, 'utf8').matchAll(/'(SLUICE_[A-Z0-9_]+)'/g))
            spelled.add(m[1] as string);
        }
      }
    }
    expect(spelled.size).toBeGreaterThan(50);
    const unknown = [...spelled].filter((r) => !values.includes(r) && !SETTINGS.has(r));
    expect(unknown).toEqual([]);
  });
});
