import { webhooks } from '@sluice/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ACME,
  GLOBEX,
  rejection,
  startWebhooksStack,
  type WebhooksClient,
  type WebhooksStack,
} from './helpers';

let stack: WebhooksStack;
let service: WebhooksClient;
let acme: WebhooksClient;
let globex: WebhooksClient;
let alice: WebhooksClient;
let anon: WebhooksClient;

beforeAll(async () => {
  stack = await startWebhooksStack();
  service = stack.client(await stack.token('service'));
  acme = stack.client(await stack.token({ admin: ACME }));
  globex = stack.client(await stack.token({ admin: GLOBEX }));
  alice = stack.client(await stack.token('alice'));
  anon = stack.client();
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

const source = (name: string, extra: Partial<webhooks.Source> = {}) =>
  ({
    source: { name, kind: webhooks.SourceKind.SOURCE_KIND_STANDARD_WEBHOOKS, ...extra },
  }) as webhooks.CreateSourceRequest;

describe('sources under RLS', () => {
  it('a tenant admin creates in its tenant and sees, changes and deletes only its own', async () => {
    const a = await acme.createSource(source('acme-hooks', { description: 'Acme' }));
    const g = await globex.createSource(source('globex-hooks'));
    const s = await service.createSource(source('service-hooks'));
    expect(a.source?.tenantId).toBe(ACME);
    expect(g.source?.tenantId).toBe(GLOBEX);
    expect(s.source?.tenantId).toBe('');
    expect(a.path).toBe('/webhooks/acme-hooks');
    const gid = g.source?.id ?? '';

    // Besides their own, tenant admins see the operational source (their endpoints' events).
    expect((await acme.listSources({})).sources.map((x) => x.name)).toEqual([
      'sluice-operational',
      'acme-hooks',
    ]);
    expect((await globex.listSources({})).sources.map((x) => x.name)).toEqual([
      'sluice-operational',
      'globex-hooks',
    ]);
    const operational = (await acme.listSources({})).sources[0]?.id ?? '';
    expect((await rejection(acme.updateSource({ id: operational, enabled: false }))).code).toBe('NOT_FOUND');
    expect((await rejection(acme.deleteSource({ id: operational }))).code).toBe('NOT_FOUND');
    expect((await rejection(acme.rotateSourceSecret({ id: operational }))).code).toBe('INVALID_ARGUMENT');
    expect((await service.listSources({})).sources.map((x) => x.name).sort()).toEqual(
      ['acme-hooks', 'globex-hooks', 'service-hooks', 'sluice-operational'].sort(),
    );

    expect((await rejection(acme.getSource({ id: gid }))).code).toBe('NOT_FOUND');
    expect((await rejection(acme.updateSource({ id: gid, description: 'mine' }))).code).toBe('NOT_FOUND');
    expect((await rejection(acme.rotateSourceSecret({ id: gid }))).code).toBe('NOT_FOUND');
    expect((await rejection(acme.deleteSource({ id: gid }))).code).toBe('NOT_FOUND');
    // Creating in another tenant is refused outright.
    expect((await rejection(acme.createSource(source('acme-in-globex', { tenantId: GLOBEX })))).code).toBe(
      'PERMISSION_DENIED',
    );
    // GLOBEX's source is untouched.
    const { rows } = await stack.pool.query('select description from sluice_webhooks.sources where id = $1', [
      gid,
    ]);
    expect(rows).toEqual([{ description: '' }]);

    // Its own: update only what is present, then delete.
    const aid = a.source?.id ?? '';
    const updated = await acme.updateSource({ id: aid, enabled: false, toleranceSeconds: 60 });
    expect(updated.source).toMatchObject({ description: 'Acme', enabled: false, toleranceSeconds: 60 });
    await acme.deleteSource({ id: aid });
    expect((await rejection(acme.getSource({ id: aid }))).code).toBe('NOT_FOUND');
  });

  it('service_role creates for a tenant; plain users and anon see nothing and cannot create', async () => {
    const t = await service.createSource(source('globex-by-service', { tenantId: GLOBEX }));
    expect(t.source?.tenantId).toBe(GLOBEX);
    expect((await globex.getSource({ id: t.source?.id ?? '' })).source?.name).toBe('globex-by-service');

    expect((await alice.listSources({})).sources).toEqual([]);
    expect((await rejection(alice.getSource({ id: t.source?.id ?? '' }))).code).toBe('NOT_FOUND');
    expect((await rejection(alice.createSource(source('alice-hooks')))).code).toBe('PERMISSION_DENIED');
    expect((await rejection(anon.createSource(source('anon-hooks')))).code).toBe('PERMISSION_DENIED');
    expect((await rejection(anon.listSources({}))).code).toBe('PERMISSION_DENIED');
    const { rows } = await stack.pool.query(
      "select count(*)::int as n from sluice_webhooks.sources where name in ('alice-hooks', 'anon-hooks')",
    );
    expect(rows).toEqual([{ n: 0 }]);
  });
});

describe('source secrets', () => {
  it('are shown once, never readable by the request roles, and rotation keeps the old for the grace', async () => {
    const created = await acme.createSource(source('acme-secret'));
    const id = created.source?.id ?? '';
    expect(created.secret).toMatch(/^whsec_/);
    // Get and List carry no secret.
    const shown = JSON.stringify([
      webhooks.GetSourceResponse.toJSON(await acme.getSource({ id })),
      webhooks.ListSourcesResponse.toJSON(await acme.listSources({})),
    ]);
    expect(shown).not.toContain(created.secret);
    expect(shown).not.toContain(created.secret.slice(6));

    for (const role of ['authenticated', 'service_role', 'anon']) {
      const client = await stack.pool.connect();
      try {
        await client.query('begin');
        await client.query(`set local role ${role}`);
        await expect(client.query('select * from sluice_webhooks.secrets')).rejects.toThrow(
          /permission denied/,
        );
      } finally {
        await client.query('rollback');
        client.release();
      }
    }

    const before = Date.now();
    const rotated = await acme.rotateSourceSecret({ id, graceSeconds: 3600 });
    expect(rotated.secret).toMatch(/^whsec_/);
    expect(rotated.secret).not.toBe(created.secret);
    const until = Number(rotated.previousValidUntil?.seconds) * 1000;
    expect(until).toBeGreaterThan(before + 3590_000);
    expect(until).toBeLessThan(Date.now() + 3610_000);
    const { rows } = await stack.pool.query<{ secret: string; expires_at: Date | null }>(
      'select secret, expires_at from sluice_webhooks.secrets where source_id = $1 order by id',
      [id],
    );
    expect(rows.map((r) => r.secret)).toEqual([created.secret, rotated.secret]);
    expect(Math.abs((rows[0]?.expires_at?.getTime() ?? 0) - until)).toBeLessThan(1000);
    expect(rows[1]?.expires_at).toBeNull();

    // The default grace is 24 h; a sender's own secret is taken as given.
    const stripe = await service.createSource(
      source('stripe-in', { kind: webhooks.SourceKind.SOURCE_KIND_STRIPE }),
    );
    // Standard Webhooks keys in every form the ingress verifies with.
    const key = Buffer.alloc(32, 9).toString('base64');
    for (const [i, secret] of [`whsec_${key}`, `v1,whsec_${key}`, key].entries())
      expect((await service.createSource({ ...source(`std-${i}`), secret })).secret).toBe(secret);
    const own = await service.rotateSourceSecret({
      id: stripe.source?.id ?? '',
      secret: 'whsec_from_stripe_dashboard',
    });
    expect(own.secret).toBe('whsec_from_stripe_dashboard');
    const day = Number(own.previousValidUntil?.seconds) * 1000 - Date.now();
    expect(day).toBeGreaterThan(86_390_000);
    expect(day).toBeLessThan(86_410_000);
  });
});

describe('source validation', () => {
  it('names the offending field', async () => {
    const cases: [webhooks.CreateSourceRequest, string][] = [
      [source('Bad Name'), 'source.name'],
      [source('ok-name', { kind: webhooks.SourceKind.SOURCE_KIND_UNSPECIFIED }), 'source.kind'],
      [source('ok-name', { kind: webhooks.SourceKind.SOURCE_KIND_OPERATIONAL }), 'source.kind'],
      [source('ok-name', { kind: webhooks.SourceKind.SOURCE_KIND_HMAC }), 'source.hmac'],
      [
        source('ok-name', {
          kind: webhooks.SourceKind.SOURCE_KIND_HMAC,
          hmac: { header: 'bad header', algorithm: 0, encoding: 0, prefix: '' },
        }),
        'source.hmac.header',
      ],
      [
        source('ok-name', { hmac: { header: 'x-sig', algorithm: 0, encoding: 0, prefix: '' } }),
        'source.hmac',
      ],
      [source('ok-name', { toleranceSeconds: 100_000 }), 'source.tolerance_seconds'],
      [source('ok-name', { maxBodyBytes: 10 }), 'source.max_body_bytes'],
      [source('ok-name', { keepHeaders: ['ok', 'not ok'] }), 'source.keep_headers[1]'],
      [
        source('ok-name', { dedupe: { from: { $case: 'bodyPath', value: 'a..b' } } }),
        'source.dedupe.body_path',
      ],
      [{ ...source('ok-name'), secret: 'not-a-standard-key' }, 'secret'],
    ];
    for (const [req, field] of cases) {
      expect(await rejection(service.createSource(req)), field).toEqual({
        code: 'INVALID_ARGUMENT',
        fields: [field],
      });
    }
    expect(await rejection(service.getSource({ id: 'nope' }))).toEqual({
      code: 'INVALID_ARGUMENT',
      fields: ['id'],
    });
    expect(await rejection(service.listSources({ pageToken: 'garbage' }))).toEqual({
      code: 'INVALID_ARGUMENT',
      fields: ['page_token'],
    });
    const forged = Buffer.from(JSON.stringify(['yesterday', 'someone'])).toString('base64url');
    expect(await rejection(service.listSources({ pageToken: forged }))).toEqual({
      code: 'INVALID_ARGUMENT',
      fields: ['page_token'],
    });
    expect((await rejection(service.createSource(source('service-hooks')))).code).toBe('ALREADY_EXISTS');
  });

  it('stores the kind options the ingress reads, and pages', async () => {
    const created = await service.createSource(
      source('hmac-in', {
        kind: webhooks.SourceKind.SOURCE_KIND_HMAC,
        hmac: {
          header: 'X-Signature',
          algorithm: webhooks.HmacAlgorithm.HMAC_ALGORITHM_SHA512,
          encoding: webhooks.SignatureEncoding.SIGNATURE_ENCODING_BASE64,
          prefix: 'sha512=',
        },
        dedupe: { from: { $case: 'header', value: 'X-Request-Id' } },
        keepHeaders: ['X-Shop'],
        ratePerSecond: 50,
      }),
    );
    const { rows } = await stack.pool.query('select settings from sluice_webhooks.sources where id = $1', [
      created.source?.id,
    ]);
    expect(rows[0].settings).toEqual({
      hmac: { header: 'x-signature', algorithm: 'sha512', encoding: 'base64', prefix: 'sha512=' },
      dedupe: { header: 'x-request-id' },
      keepHeaders: ['x-shop'],
      ratePerSecond: 50,
    });
    expect(created.source?.hmac?.algorithm).toBe(webhooks.HmacAlgorithm.HMAC_ALGORITHM_SHA512);

    const names: string[] = [];
    let pageToken = '';
    do {
      const page = await service.listSources({ limit: 2, pageToken });
      expect(page.sources.length).toBeLessThanOrEqual(2);
      names.push(...page.sources.map((s) => s.name));
      pageToken = page.nextPageToken;
    } while (pageToken !== '');
    const all = (await service.listSources({ limit: 1000 })).sources.map((s) => s.name);
    expect(names).toEqual(all);
    expect(new Set(names).size).toBe(names.length);
  });
});
