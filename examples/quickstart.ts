// The README's five-minute tour as a script: `SLUICE_TOKEN=<alice's token> npx tsx examples/quickstart.ts`
// (npm start prints the token). Reads and writes as alice, under Row Level Security.
import { createDataClient, toObjects, v } from '@sluice/client';
import { data, Operator } from '@sluice/proto';

const ACME = '11111111-1111-1111-1111-111111111111';
const client = createDataClient(process.env.SLUICE_ADDRESS ?? '127.0.0.1:50051', {
  token: process.env.SLUICE_TOKEN,
});

// Select: the five newest posts alice can see (RLS limits her to Acme).
const posts = await client.select({
  table: 'posts',
  columns: ['id', 'title', 'status', 'view_count'],
  order: [{ column: 'id', direction: data.SortDirection.SORT_DIRECTION_DESC }],
  limit: 5,
  count: data.CountMode.COUNT_MODE_EXACT,
});
console.log(`alice sees ${posts.count} posts; the newest five:`, toObjects(posts.result));

// Insert with returning: a draft post in Acme (alice is an admin there).
const inserted = await client.insert({
  table: 'posts',
  columns: ['tenant_id', 'title', 'tags'],
  rows: [{ values: [v.string(ACME), v.string('Hello from the quickstart'), v.list([v.string('demo')])] }],
  returning: ['id', 'title', 'created_at'],
});
const [row] = toObjects(inserted.result);
console.log('inserted', row);

// Update it, guarded: fail rather than touch more than one row.
await client.update({
  table: 'posts',
  set: [{ column: 'status', value: v.string('published') }],
  filter: {
    kind: {
      $case: 'condition',
      value: { column: 'id', op: Operator.OPERATOR_EQ, value: v.int(row?.id as bigint) },
    },
  },
  maxAffected: 1n,
});

// Call a SQL function, then delete the post again, all or nothing in one transaction.
const tx = await client.transaction({
  operations: [
    {
      kind: {
        $case: 'call',
        value: {
          schema: '',
          function: 'tenant_post_count',
          args: [{ name: 'p_tenant_id', value: v.string(ACME) }],
        },
      },
    },
    {
      kind: {
        $case: 'delete',
        value: data.DeleteRequest.fromPartial({
          table: 'posts',
          filter: {
            kind: {
              $case: 'condition',
              value: { column: 'id', op: Operator.OPERATOR_EQ, value: v.int(row?.id as bigint) },
            },
          },
        }),
      },
    },
  ],
  dryRun: false,
});
console.log(
  'transaction committed:',
  tx.committed,
  'post count was',
  toObjects(tx.results[0]?.kind?.value?.result as never),
);
