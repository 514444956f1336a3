import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

// Every relative link in README.md and docs/*.md must resolve to a file or folder in the
// repository, and a link to a heading (`file.md#heading`, `#heading`) to a heading that exists:
// a user who clones the repository has nothing else.

const root = path.resolve(import.meta.dirname, '..');

function documents(): string[] {
  const docs = readdirSync(path.join(root, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .map((name) => path.join('docs', name));
  return ['README.md', ...docs.sort()];
}

/** The text outside fenced code blocks and inline code spans, where links are links. */
function prose(markdown: string): string {
  return markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '').replace(/`[^`\n]*`/g, (code) =>
    // Inline code inside a link's text is kept as text; elsewhere it cannot hold a link.
    code.replace(/[()[\]]/g, ' '),
  );
}

/** Link targets: inline `[text](target "title")` and reference definitions `[label]: target`. */
function linkTargets(markdown: string): string[] {
  const text = prose(markdown);
  const targets: string[] = [];
  for (const m of text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) targets.push(m[1] as string);
  for (const m of text.matchAll(/^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$/gm))
    targets.push(m[1] as string);
  return targets;
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  const withoutCode = markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '');
  for (const m of withoutCode.matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const text = (m[1] as string).replace(/\[([^\]]*)\]\([^)]*\)/g, '$1');
    const slug = text
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return out;
}

/** What is wrong with `target` linked from `from` (relative to the root), or undefined. */
function problem(from: string, target: string): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//')) return undefined; // absolute URL
  const [rawPath = '', fragment] = target.split('#', 2);
  const filePath = decodeURIComponent(rawPath);
  const resolved = filePath === '' ? path.join(root, from) : path.resolve(root, path.dirname(from), filePath);
  const relative = path.relative(root, resolved);
  if (relative.startsWith('..') || path.isAbsolute(relative)) return 'points outside the repository';
  if (!existsSync(resolved)) return 'no such file';
  if (fragment === undefined || fragment === '') return undefined;
  if (!resolved.endsWith('.md') || !statSync(resolved).isFile()) return undefined; // line anchors etc.
  return anchors(readFileSync(resolved, 'utf8')).has(decodeURIComponent(fragment).toLowerCase())
    ? undefined
    : 'no such heading';
}

describe('documentation links', () => {
  it('finds the documents and their links', () => {
    const files = documents();
    expect(files).toContain('README.md');
    expect(files).toContain(path.join('docs', 'design.md'));
    expect(linkTargets(readFileSync(path.join(root, 'README.md'), 'utf8')).length).toBeGreaterThan(5);
  });

  it('derives anchors as GitHub does', () => {
    expect(
      anchors("## 5. Row visibility (and the caller's claims)\n### `npm start`\n## A b\n## A b\n"),
    ).toEqual(new Set(['5-row-visibility-and-the-callers-claims', 'npm-start', 'a-b', 'a-b-1']));
  });

  it('reports broken links', () => {
    expect(problem('README.md', '../shared/DESIGN.md')).toBe('points outside the repository');
    expect(problem('README.md', 'docs/missing.md')).toBe('no such file');
    expect(problem('README.md', 'docs/design.md#no-such-heading')).toBe('no such heading');
    expect(problem('docs/design.md', '../README.md')).toBeUndefined();
    expect(problem('README.md', 'https://example.com/x')).toBeUndefined();
  });

  it.each(documents())('every relative link in %s resolves in the repository', (file) => {
    const broken = linkTargets(readFileSync(path.join(root, file), 'utf8')).flatMap((target) => {
      const why = problem(file, target);
      return why === undefined ? [] : [`${target}: ${why}`];
    });
    expect(broken).toEqual([]);
  });
});
