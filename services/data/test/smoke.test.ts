import { data } from '@sluice/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStack, type TestStack } from './helpers';

let stack: TestStack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack?.close();
});

describe('smoke', () => {
  it('selects posts as alice', async () => {
    const alice = stack.client(await stack.token('alice'));
    const res = await alice.select({
      table: 'posts',
      columns: ['id', 'title', 'tenant_id', 'view_count'],
      order: [{ column: 'id' }],
      limit: 3,
    });
    console.log(JSON.stringify(data.SelectResponse.toJSON(res)).slice(0, 1000));
    expect(res.result?.rows.length).toBe(3);
  });
});
