import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SourceCache } from '../src/inbound/sources';
import { startWebhooksStack, type WebhooksStack } from './helpers';
import { createSource, newSecret, sourceName } from './inbound/helpers';

// Outside review: source names are the one thing anyone may send the ingress, each a lookup.

let stack: WebhooksStack;

beforeAll(async () => {
  stack = await startWebhooksStack();
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

describe('SourceCache under a flood of made-up names', () => {
  it('keeps the real sources it found, and stays within its bound', async () => {
    const real = sourceName('real');
    await createSource(stack, { name: real, kind: 'standard-webhooks', secrets: [newSecret()] });
    const cache = new SourceCache(stack.pool, 60_000, 20);
    expect((await cache.get(real))?.name).toBe(real);
    const age = cache.age(real);
    for (let i = 0; i < 100; i++) expect(await cache.get(`made-up-${i}`)).toBeUndefined();
    // Still the answer read before the flood, not one read again.
    expect(cache.age(real)).toBeGreaterThanOrEqual(age);
    expect(cache.age(real)).toBeLessThan(60_000);
    const sizes = cache as unknown as { found: Map<string, unknown>; missing: Map<string, unknown> };
    expect(sizes.found.size + sizes.missing.size).toBeLessThanOrEqual(40);
  });

  it('a name created after it was looked up is found once the TTL passed', async () => {
    const later = sourceName('later');
    const cache = new SourceCache(stack.pool, 200, 20);
    expect(await cache.get(later)).toBeUndefined();
    await createSource(stack, { name: later, kind: 'github', secrets: [newSecret()] });
    await new Promise((r) => setTimeout(r, 250));
    expect((await cache.get(later))?.kind).toBe('github');
  });
});

describe('a source rotated many times within the grace', () => {
  it('is verified against its newest 16 secrets only (each costs a pass over every forged body)', async () => {
    const name = sourceName('rotated');
    const id = await createSource(stack, { name, kind: 'standard-webhooks' });
    const secrets = Array.from({ length: 40 }, () => newSecret());
    for (const [i, secret] of secrets.entries())
      await stack.pool.query(
        `insert into sluice_webhooks.secrets (source_id, secret, created_at, expires_at)
         values ($1, $2, now() - make_interval(secs => $3), now() + interval '1 day')`,
        [id, secret, 100 - i],
      );
    const source = await new SourceCache(stack.pool).get(name);
    expect(source?.secrets).toEqual(secrets.slice(-16).reverse());
  });
});
