// `npm run build`: the production build. Bundles the launcher, the release (migrate) command and the
// OpenTelemetry preload into dist/ as ESM for Node 22, so production runs plain `node` (no tsx: the
// workspace packages export TypeScript sources, import without extensions and use TS enums, none of
// which Node's type stripping runs).
//
// - Workspace packages (@sluice/*) are bundled; every other package stays an `import` of
//   node_modules, so `npm ci --omit=dev` provides it and OpenTelemetry's loader hook can still
//   instrument it (a bundled copy of pg or grpc-js could not be patched). The build fails when an
//   external package is one `npm ci --omit=dev` would not install.
// - Code splitting keeps one copy of each module shared by the entries (the preload and the
//   launcher share @sluice/observability's state); all outputs sit in dist/ itself, so every
//   module's `import.meta.url` there is a file of dist/.
// - `new URL('<relative path>', import.meta.url)` in a workspace source is rewritten to point from
//   dist/ at the same file of the repository (migrations, the proto descriptor set, the project
//   root), so the image keeps the repository's layout for those assets; dist/assets.json lists
//   them and the build checks that the Dockerfile copies each. Any other use of import.meta.url,
//   import.meta.dirname/filename or __dirname in a workspace source fails the build.
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Metafile, type Plugin } from 'esbuild';

const root = fileURLToPath(new URL('../', import.meta.url));
/** `--outdir DIR` (tests build elsewhere); default dist/. Asset URLs are rewritten relative to it. */
const outdirFlag = process.argv.indexOf('--outdir');
const outdir = path.resolve(
  outdirFlag > 0 ? (process.argv[outdirFlag + 1] ?? 'dist') : path.join(root, 'dist'),
);

/** Output name → source. The preload is optional until packages/observability provides it. */
const ENTRIES: Record<string, { source: string; optional?: boolean }> = {
  main: { source: 'services/all/src/main.ts' },
  migrate: { source: 'services/all/src/migrate.ts' },
  register: { source: 'packages/observability/src/register.ts', optional: true },
};

/** Runtime files the bundle reads that no `new URL(…, import.meta.url)` names (main.ts builds them from the project root). */
const PROJECT_FILES = ['migrations', 'db/seed.sql'];

const URL_PATTERN = /new URL\(\s*(['"])([^'"]+)\1\s*,\s*import\.meta\.url\s*\)/g;
const FORBIDDEN = /import\.meta\.(url|dirname|filename)|\b__dirname\b|\b__filename\b/;

/** Repository-relative targets of every relocated URL (directories end with '/'). */
const assets = new Set<string>();

const relocateAssets: Plugin = {
  name: 'relocate-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, async (args) => {
      if (args.path.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
      const source = await readFile(args.path, 'utf8');
      if (!FORBIDDEN.test(source)) return undefined;
      const errors: string[] = [];
      const contents = source.replace(URL_PATTERN, (_match, quote: string, relative: string) => {
        const target = path.resolve(path.dirname(args.path), relative);
        const isDir = relative.endsWith('/');
        if (!existsSync(target)) errors.push(`${relative} (resolved to ${target}) does not exist`);
        const fromRoot = path.relative(root, target);
        if (fromRoot.startsWith('..')) errors.push(`${relative} points outside the repository`);
        if (fromRoot !== '') assets.add(`${fromRoot}${isDir ? '/' : ''}`);
        let rewritten = path.relative(outdir, target).split(path.sep).join('/') || '.';
        if (isDir) rewritten = `${rewritten.replace(/\/$/, '')}/`;
        if (!rewritten.startsWith('.')) rewritten = `./${rewritten}`;
        return `new URL(${quote}${rewritten}${quote}, import.meta.url)`;
      });
      // What is left after the rewrite is a use the bundle cannot keep pointing at the right file.
      const rest = contents.replace(/new URL\([^)]*import\.meta\.url\s*\)/g, '');
      if (FORBIDDEN.test(rest)) {
        errors.push(
          "uses import.meta.url/dirname/filename or __dirname other than new URL('<relative path>', import.meta.url)",
        );
      }
      if (errors.length > 0) {
        return { errors: errors.map((text) => ({ text: `${path.relative(root, args.path)}: ${text}` })) };
      }
      return { contents, loader: 'ts' };
    });
  },
};

/** Bundle @sluice/* (workspace sources); keep every other bare import (node:*, npm packages) external. */
const externalPackages: Plugin = {
  name: 'external-packages',
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.path.startsWith('@sluice/')) return undefined;
      return { path: args.path, external: true };
    });
  },
};

/** The package name of a bare specifier (`@scope/name/sub` → `@scope/name`), or null for node builtins. */
function packageName(specifier: string): string | null {
  if (specifier.startsWith('node:')) return null;
  const parts = specifier.split('/');
  const name = specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] as string);
  return name;
}

/** Packages the bundle imports that `npm ci --omit=dev` (from package-lock.json) would not install. */
async function missingInProduction(metafile: Metafile): Promise<string[]> {
  const lock = JSON.parse(await readFile(path.join(root, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean; optional?: boolean; devOptional?: boolean }>;
  };
  const { builtinModules } = await import('node:module');
  const builtins = new Set(builtinModules);
  const names = new Set<string>();
  for (const output of Object.values(metafile.outputs)) {
    for (const imported of output.imports) {
      if (!imported.external) continue;
      const name = packageName(imported.path);
      if (name && !builtins.has(name)) names.add(name);
    }
  }
  return [...names]
    .filter((name) => {
      const entry = lock.packages[`node_modules/${name}`];
      return !entry || entry.dev === true || entry.devOptional === true;
    })
    .sort();
}

async function main(): Promise<void> {
  const entryPoints: Record<string, string> = {};
  for (const [name, { source, optional }] of Object.entries(ENTRIES)) {
    if (existsSync(path.join(root, source))) entryPoints[name] = path.join(root, source);
    else if (optional) process.stderr.write(`build: ${source} does not exist yet; dist/${name}.js skipped\n`);
    else throw new Error(`build: entry ${source} is missing`);
  }
  await rm(outdir, { recursive: true, force: true });
  const result = await build({
    absWorkingDir: root,
    entryPoints,
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node22',
    sourcemap: true,
    // Keep names readable in stack traces and logs (class names appear in error logs).
    keepNames: true,
    chunkNames: 'chunk-[hash]',
    metafile: true,
    logLevel: 'warning',
    plugins: [externalPackages, relocateAssets],
  });

  const missing = await missingInProduction(result.metafile);
  if (missing.length > 0) {
    throw new Error(
      `build: the bundle imports packages that npm ci --omit=dev does not install: ${missing.join(', ')}. ` +
        'Make them dependencies (of the root or of the workspace package that imports them).',
    );
  }

  const files = [...[...assets].sort(), ...PROJECT_FILES];
  const dockerfile = await readFile(path.join(root, 'Dockerfile'), 'utf8').catch(() => '');
  const notCopied = files.filter((f) => !dockerfile.includes(f.replace(/\/$/, '')));
  if (notCopied.length > 0) {
    throw new Error(`build: the Dockerfile does not copy files the bundle reads: ${notCopied.join(', ')}`);
  }
  await writeFile(path.join(outdir, 'assets.json'), `${JSON.stringify({ files }, null, 2)}\n`);
  const outputs = Object.keys(result.metafile.outputs).filter((f) => f.endsWith('.js'));
  process.stdout.write(
    `build: ${outputs.length} files in ${path.relative(process.cwd(), outdir) || '.'}/ (${Object.keys(
      entryPoints,
    )
      .map((n) => `${n}.js`)
      .join(', ')}); runtime files: ${files.join(', ')}\n`,
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
