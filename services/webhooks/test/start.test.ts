import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWebhooksStack, type WebhooksStack } from './helpers';

let stack: WebhooksStack;

beforeAll(async () => {
  stack = await startWebhooksStack();
});

afterAll(async () => {
  await stack?.close();
});

describe('webhooks service', () => {
  it('starts on the shared runtime with its schema migrated', async () => {
    expect(stack.server.port).toBeGreaterThan(0);
    const { rows } = await stack.pool.query<{ name: string }>(
      "select name from sluice_webhooks.sources where kind = 'operational'",
    );
    expect(rows.map((r) => r.name)).toEqual(['sluice-operational']);
  });
});
