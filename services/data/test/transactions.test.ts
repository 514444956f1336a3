import { data, type Filter } from '@sluice/proto';
import { Status } from 'nice-grpc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectRejection } from './expect-rejection';
import { ACME, type DataClient, GLOBEX, startStack, type TestStack } from './helpers';
import { and, eq, type OperationReq, records, row, V } from './wire-values';

let stack: TestStack;
let service: DataClient;
let alice: DataClient;

beforeAll(async () => {
  stack = await startStack();
  service = stack.client(await stack.token('service'));
  alice = stack.client(await stack.token('alice'));
});
afterAll(async () => {
  await stack?.close();
});

async function snapshot(table: string, order = 'id') {
  const res = await service.select({ table, order: [{ column: order }], limit: 1000 });
  return records(res.result);
}

async function postsTitled(title: string) {
  return records(
    (await service.select({ table: 'posts', columns: ['id'], filter: eq('title', V.str(title)) })).result,
  );
}

const insertPost = (title: string, tenant = ACME): OperationReq => ({
  kind: {
    $case: 'insert',
    value: {
      table: 'posts',
      columns: ['tenant_id', 'title', 'author_id'],
      rows: [row(V.str(tenant), V.str(title), V.str('aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa'))],
      returning: ['id', 'title'],
    },
  },
});

describe('Transaction is all or nothing', () => {
  it('a failing second operation (unique violation) rolls back the first', async () => {
    const tenantsBefore = await snapshot('tenants');
    const rejection = await expectRejection(
      service.transaction({
        operations: [
          insertPost('tx marker 1'),
          {
            kind: {
              $case: 'insert',
              value: {
                table: 'tenants',
                columns: ['name', 'slug'],
                rows: [row(V.str('Acme 2'), V.str('acme'))],
              },
            },
          },
        ],
      }),
      { code: Status.ALREADY_EXISTS, reason: 'SLUICE_UNIQUE_VIOLATION' },
    );
    expect(rejection.metadata.operation_index).toBe('1');
    expect(rejection.message).toMatch(/^operations\[1\]: /);
    expect(rejection.fields.length).toBeGreaterThan(0);
    expect(rejection.fields.every((f) => f.startsWith('operations[1].'))).toBe(true);
    expect(await postsTitled('tx marker 1')).toEqual([]);
    expect(await snapshot('tenants')).toEqual(tenantsBefore);
  });

  it('a function raising in the second operation rolls back the first', async () => {
    const rejection = await expectRejection(
      service.transaction({
        operations: [
          insertPost('tx marker 2'),
          {
            kind: {
              $case: 'call',
              value: { function: 'fail_with', args: [{ name: 'msg', value: V.str('boom') }] },
            },
          },
        ],
      }),
      { code: Status.FAILED_PRECONDITION, reason: 'SLUICE_RAISED' },
    );
    expect(rejection.metadata.operation_index).toBe('1');
    expect(rejection.message).toContain('boom');
    expect(await postsTitled('tx marker 2')).toEqual([]);
  });

  it('a value PostgreSQL rejects in the third operation rolls back the first two', async () => {
    const before = await snapshot('posts');
    const rejection = await expectRejection(
      alice.transaction({
        operations: [
          insertPost('tx marker 3'),
          {
            kind: {
              $case: 'update',
              value: {
                table: 'posts',
                set: [{ column: 'body', value: V.str('changed') }],
                filter: eq('id', V.int(1)),
              },
            },
          },
          {
            kind: {
              $case: 'update',
              value: {
                table: 'posts',
                set: [{ column: 'status', value: V.str('bogus') }],
                filter: eq('id', V.int(2)),
              },
            },
          },
        ],
      }),
      { code: Status.FAILED_PRECONDITION, reason: 'SLUICE_CONSTRAINT_VIOLATION' },
    );
    expect(rejection.metadata.operation_index).toBe('2');
    expect(await snapshot('posts')).toEqual(before);
  });

  it('an invalid operation is reported with its index before anything runs', async () => {
    const before = await snapshot('posts');
    const rejection = await expectRejection(
      service.transaction({
        operations: [
          insertPost('tx marker 4'),
          {
            kind: {
              $case: 'update',
              value: {
                table: 'posts',
                set: [{ column: 'no_such_column', value: V.int(1) }],
                filter: eq('id', V.int(1)),
              },
            },
          },
        ],
      }),
      { code: Status.INVALID_ARGUMENT, reason: 'SLUICE_UNKNOWN_COLUMN' },
    );
    expect(rejection.fields).toEqual(['operations[1].update.set[0].column']);
    expect(await snapshot('posts')).toEqual(before);
  });

  it('an empty operation and an empty transaction are INVALID_ARGUMENT', async () => {
    const empty = await expectRejection(service.transaction({ operations: [insertPost('never'), {}] }), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_EMPTY_OPERATION',
    });
    expect(empty.fields).toEqual(['operations[1]']);
    await expectRejection(service.transaction({ operations: [] }), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_OPERATIONS_REQUIRED',
    });
    expect(await postsTitled('never')).toEqual([]);
  });

  it('later operations see the effects of earlier ones, and everything commits', async () => {
    const res = await service.transaction({
      operations: [
        insertPost('tx committed'),
        {
          kind: {
            $case: 'update',
            value: {
              table: 'posts',
              set: [{ column: 'body', value: V.str('second op saw it') }],
              filter: eq('title', V.str('tx committed')),
              returning: ['title', 'body'],
            },
          },
        },
        {
          kind: {
            $case: 'select',
            value: { table: 'posts', columns: ['body'], filter: eq('title', V.str('tx committed')) },
          },
        },
      ],
    });
    expect(res.committed).toBe(true);
    expect(res.results.map((r) => r.kind?.$case)).toEqual(['insert', 'update', 'select']);
    const selected = res.results[2]?.kind;
    expect(selected?.$case === 'select' && records(selected.value.result)).toEqual([
      { body: 'second op saw it' },
    ]);
    expect((await postsTitled('tx committed')).length).toBe(1);
  });
});

describe('dry_run', () => {
  it('returns the results but changes nothing', async () => {
    const postsBefore = await snapshot('posts');
    const res = await service.transaction({
      dryRun: true,
      operations: [
        insertPost('dry run post'),
        {
          kind: {
            $case: 'delete',
            value: { table: 'posts', filter: eq('tenant_id', V.str(GLOBEX)), returning: ['id'] },
          },
        },
        {
          kind: {
            $case: 'select',
            value: {
              table: 'posts',
              columns: ['id'],
              filter: eq('tenant_id', V.str(GLOBEX)),
              count: data.CountMode.COUNT_MODE_EXACT,
            },
          },
        },
      ],
    });
    expect(res.committed).toBe(false);
    const [ins, del, sel] = res.results.map((r) => r.kind);
    expect(ins?.$case).toBe('insert');
    if (ins?.$case !== 'insert') throw new Error('unreachable');
    expect(ins.value.affected).toBe(1n);
    const [inserted] = records(ins.value.result);
    expect(inserted?.title).toBe('dry run post');
    expect(typeof inserted?.id).toBe('bigint');
    expect(del?.$case === 'delete' && del.value.affected).toBe(10n);
    // Inside the dry run, the delete is visible to the select that follows it.
    expect(sel?.$case === 'select' && sel.value.count).toBe(0n);
    expect(await snapshot('posts')).toEqual(postsBefore);
    expect(await postsTitled('dry run post')).toEqual([]);
  });
});

describe('max_affected', () => {
  const acme = eq('tenant_id', V.str(ACME));

  it('an Update matching more rows fails with FAILED_PRECONDITION and changes nothing', async () => {
    const before = await snapshot('posts');
    const rejection = await expectRejection(
      service.update({
        table: 'posts',
        set: [{ column: 'body', value: V.str('mass edit') }],
        filter: acme,
        maxAffected: 3n,
      }),
      { code: Status.FAILED_PRECONDITION, reason: 'SLUICE_MAX_AFFECTED_EXCEEDED' },
    );
    expect(Number(rejection.metadata.affected)).toBeGreaterThan(3);
    expect(rejection.fields).toEqual(['max_affected']);
    expect(await snapshot('posts')).toEqual(before);
  });

  it('a Delete matching more rows fails with FAILED_PRECONDITION and changes nothing', async () => {
    const before = await snapshot('posts');
    await expectRejection(service.delete({ table: 'posts', filter: acme, maxAffected: 0n }), {
      code: Status.FAILED_PRECONDITION,
      reason: 'SLUICE_MAX_AFFECTED_EXCEEDED',
    });
    expect(await snapshot('posts')).toEqual(before);
  });

  it('inside a Transaction it rolls back the earlier operations too', async () => {
    const before = await snapshot('posts');
    const rejection = await expectRejection(
      service.transaction({
        operations: [
          insertPost('max affected marker'),
          { kind: { $case: 'delete', value: { table: 'posts', filter: acme, maxAffected: 1n } } },
        ],
      }),
      { code: Status.FAILED_PRECONDITION, reason: 'SLUICE_MAX_AFFECTED_EXCEEDED' },
    );
    expect(rejection.metadata.operation_index).toBe('1');
    expect(rejection.fields).toEqual(['operations[1].delete.max_affected']);
    expect(await snapshot('posts')).toEqual(before);
  });

  it('an Update within the limit goes through', async () => {
    const res = await service.update({
      table: 'posts',
      set: [{ column: 'body', value: V.str('within limit') }],
      filter: eq('id', V.int(3)),
      maxAffected: 1n,
      returning: ['id', 'body'],
    });
    expect(res.affected).toBe(1n);
    expect(records(res.result)).toEqual([{ id: 3n, body: 'within limit' }]);
  });
});

describe('Update and Delete require a filter', () => {
  it('without a filter: INVALID_ARGUMENT SLUICE_FILTER_REQUIRED, nothing changes', async () => {
    const before = await snapshot('type_samples');
    const upd = await expectRejection(
      service.update({ table: 'type_samples', set: [{ column: 'label', value: V.str('all of them') }] }),
      { code: Status.INVALID_ARGUMENT, reason: 'SLUICE_FILTER_REQUIRED' },
    );
    expect(upd.fields).toEqual(['filter']);
    const del = await expectRejection(service.delete({ table: 'type_samples' }), {
      code: Status.INVALID_ARGUMENT,
      reason: 'SLUICE_FILTER_REQUIRED',
    });
    expect(del.fields).toEqual(['filter']);
    const inTx = await expectRejection(
      service.transaction({ operations: [{ kind: { $case: 'delete', value: { table: 'type_samples' } } }] }),
      { code: Status.INVALID_ARGUMENT, reason: 'SLUICE_FILTER_REQUIRED' },
    );
    expect(inTx.fields).toEqual(['operations[0].delete.filter']);
    expect(await snapshot('type_samples')).toEqual(before);
  });

  it('an explicit empty `and` filter updates every row', async () => {
    const everyRow: Filter = and();
    const count = (
      await service.select({ table: 'type_samples', limit: 1, count: data.CountMode.COUNT_MODE_EXACT })
    ).count;
    const res = await service.update({
      table: 'type_samples',
      set: [{ column: 'vc', value: V.str('touched') }],
      filter: everyRow,
    });
    expect(res.affected).toBe(count);
    expect((await snapshot('type_samples')).every((r) => r.vc === 'touched')).toBe(true);
  });
});

describe('upsert', () => {
  const NEW_TENANT = '33333333-3333-3333-3333-333333333333';

  it('without on_conflict a duplicate key is ALREADY_EXISTS', async () => {
    const before = await snapshot('tenants');
    await expectRejection(
      service.insert({
        table: 'tenants',
        columns: ['id', 'name', 'slug'],
        rows: [row(V.str(ACME), V.str('Acme again'), V.str('acme-again'))],
      }),
      { code: Status.ALREADY_EXISTS, reason: 'SLUICE_UNIQUE_VIOLATION' },
    );
    expect(await snapshot('tenants')).toEqual(before);
  });

  it('merge updates the existing row and inserts the new one', async () => {
    const res = await service.insert({
      table: 'tenants',
      columns: ['id', 'name', 'slug'],
      rows: [
        row(V.str(ACME), V.str('Acme Corporation'), V.str('acme')),
        row(V.str(NEW_TENANT), V.str('Initech'), V.str('initech')),
      ],
      onConflict: { action: data.ConflictAction.CONFLICT_ACTION_MERGE },
      returning: ['id', 'name'],
    });
    expect(res.affected).toBe(2n);
    expect(records(res.result)).toEqual([
      { id: ACME, name: 'Acme Corporation' },
      { id: NEW_TENANT, name: 'Initech' },
    ]);
    const tenants = await snapshot('tenants', 'slug');
    expect(tenants.map((t) => [t.slug, t.name])).toEqual([
      ['acme', 'Acme Corporation'],
      ['globex', 'Globex'],
      ['initech', 'Initech'],
    ]);
  });

  it('merge on another target updates only the named columns', async () => {
    const res = await service.insert({
      table: 'tenants',
      columns: ['name', 'slug', 'created_at'],
      rows: [row(V.str('Initrode'), V.str('initech'), V.ts(0n))],
      onConflict: {
        action: data.ConflictAction.CONFLICT_ACTION_MERGE,
        target: ['slug'],
        updateColumns: ['name'],
      },
      returning: ['id', 'name', 'created_at'],
    });
    expect(res.affected).toBe(1n);
    const [t] = records(res.result);
    expect(t?.id).toBe(NEW_TENANT);
    expect(t?.name).toBe('Initrode');
    expect(t?.created_at).not.toEqual({ seconds: 0n, nanos: 0 });
  });

  it('ignore skips the conflicting row and keeps it unchanged', async () => {
    const before = await snapshot('tenants');
    const res = await service.insert({
      table: 'tenants',
      columns: ['id', 'name', 'slug'],
      rows: [row(V.str(GLOBEX), V.str('Globex renamed'), V.str('globex'))],
      onConflict: { action: data.ConflictAction.CONFLICT_ACTION_IGNORE },
      returning: ['id'],
    });
    expect(res.affected).toBe(0n);
    expect(res.result?.rows).toEqual([]);
    expect(await snapshot('tenants')).toEqual(before);
  });
});
