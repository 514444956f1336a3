import { events } from '@sluice/proto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACME, type EventsStack, GLOBEX, startEventsStack, USERS } from './helpers';
import { OpenStream, recordOf, type SubscribeReq } from './open-stream';

// Visibility is decided on the version each change carries (see version-visibility.test.ts for
// the oracle test). Each phase ends with sentinel rows each subscriber can see: once a
// subscriber has its sentinels (written last), every earlier change has been dispatched to it,
// and what it did not receive it will never receive.

const { INSERT, UPDATE, DELETE } = {
  INSERT: events.Operation.OPERATION_INSERT,
  UPDATE: events.Operation.OPERATION_UPDATE,
  DELETE: events.Operation.OPERATION_DELETE,
};
const OP_NAME: Record<number, string> = { [INSERT]: 'INSERT', [UPDATE]: 'UPDATE', [DELETE]: 'DELETE' };

let stack: EventsStack;
let admin: pg.Client;

type Who = 'alice' | 'bob' | 'carol' | 'dave' | 'anon' | 'service';
const WHO: Who[] = ['alice', 'bob', 'carol', 'dave', 'anon', 'service'];

async function openAll(request: SubscribeReq, who: readonly Who[] = WHO): Promise<Record<Who, OpenStream>> {
  const out = {} as Record<Who, OpenStream>;
  for (const w of who) {
    const client = stack.eventsClient(w === 'anon' ? undefined : await stack.token(w));
    out[w] = new OpenStream(client, request);
  }
  // The first heartbeat comes after the stream's start position was taken: writes from here on are seen.
  await Promise.all(Object.values(out).map((s) => s.ready()));
  return out;
}

/** Inserts a post as the superuser (one transaction per statement) and returns its id. */
async function insertPost(tenant: string, title: string, status = 'draft'): Promise<bigint> {
  const author = tenant === ACME ? USERS.alice : USERS.bob;
  const r = await admin.query<{ id: string }>(
    'insert into public.posts (tenant_id, author_id, title, status) values ($1, $2, $3, $4) returning id::text',
    [tenant, author, title, status],
  );
  return BigInt(r.rows[0]?.id ?? '0');
}

/** "OP title" of every change received after message index `from` (INSERT/UPDATE carry titles). */
function seen(s: OpenStream, from = 0, key = 'title'): string[] {
  return s.messages
    .slice(from)
    .flatMap((m) => (m.message?.$case === 'change' ? [m.message.value] : []))
    .map((e) => {
      const r = recordOf(e) ?? {};
      return `${OP_NAME[e.operation]} ${String(key in r ? r[key] : r.id)}`;
    });
}

async function waitForTitles(s: OpenStream, titles: string[], from = 0): Promise<void> {
  await s.waitFor(
    (x) => titles.every((t) => seen(x, from).some((e) => e.endsWith(` ${t}`))),
    15_000,
    `sentinels ${titles.join(', ')}`,
  );
}

beforeAll(async () => {
  // DB_POOL_MAX=2: one connection for visibility checks, so every authenticated subscriber is
  // checked in the same transaction (sluice.visible_rows switching claims between them).
  stack = await startEventsStack({ EVENTS_HEARTBEAT_MS: '100', DB_POOL_MAX: '2' });
  admin = new pg.Client({ connectionString: stack.db.url });
  await admin.connect();
});

afterAll(async () => {
  await admin?.end();
  await stack?.close();
});

describe('posts', () => {
  let s: Record<Who, OpenStream>;
  const mark: Partial<Record<Who, number>> = {};
  const since = (w: Who) => mark[w] ?? 0;
  const setMarks = () => {
    for (const w of WHO) mark[w] = s[w].messages.length;
  };
  const ids: Record<string, bigint> = {};

  beforeAll(async () => {
    s = await openAll({ tables: [{ table: 'posts' }], start: { $case: 'fromNow', value: true } });
  });
  afterAll(async () => {
    await Promise.all(Object.values(s ?? {}).map((x) => x.cancel()));
  });

  it('inserts and updates reach only the tenants (and roles) that can read the row', async () => {
    ids.aPub = await insertPost(ACME, 'a-pub', 'published');
    ids.aDraft = await insertPost(ACME, 'a-draft');
    ids.gPub = await insertPost(GLOBEX, 'g-pub', 'published');
    ids.gDraft = await insertPost(GLOBEX, 'g-draft');
    await admin.query(`update public.posts set title = 'a-draft-2' where id = $1`, [ids.aDraft]);
    await admin.query(`update public.posts set title = 'g-draft-2' where id = $1`, [ids.gDraft]);
    await insertPost(ACME, 'a-sentinel-1', 'published');
    await insertPost(GLOBEX, 'g-sentinel-1', 'published');
    for (const w of WHO) {
      const sentinels = {
        bob: ['g-sentinel-1'],
        anon: ['a-sentinel-1', 'g-sentinel-1'],
        service: ['g-sentinel-1'],
      };
      await waitForTitles(s[w], (sentinels as Record<string, string[]>)[w] ?? ['a-sentinel-1']);
    }
    const acme = ['INSERT a-pub', 'INSERT a-draft', 'UPDATE a-draft-2', 'INSERT a-sentinel-1'];
    expect(seen(s.alice)).toEqual(acme);
    expect(seen(s.dave)).toEqual(acme);
    expect(seen(s.carol)).toEqual(acme);
    expect(seen(s.bob)).toEqual([
      'INSERT g-pub',
      'INSERT g-draft',
      'UPDATE g-draft-2',
      'INSERT g-sentinel-1',
    ]);
    // anon: published, live posts only, of any tenant.
    expect(seen(s.anon)).toEqual([
      'INSERT a-pub',
      'INSERT g-pub',
      'INSERT a-sentinel-1',
      'INSERT g-sentinel-1',
    ]);
    expect(seen(s.service)).toEqual([
      'INSERT a-pub',
      'INSERT a-draft',
      'INSERT g-pub',
      'INSERT g-draft',
      'UPDATE a-draft-2',
      'UPDATE g-draft-2',
      'INSERT a-sentinel-1',
      'INSERT g-sentinel-1',
    ]);
    // No record of the other tenant, under any column.
    for (const [w, other] of [
      ['alice', GLOBEX],
      ['carol', GLOBEX],
      ['dave', GLOBEX],
      ['bob', ACME],
    ] as const) {
      for (const e of s[w].changes) expect(recordOf(e)?.tenant_id).not.toBe(other);
    }
    // old_record only for service_role.
    for (const w of WHO) {
      for (const e of s[w].changes.filter((c) => c.operation === UPDATE)) {
        if (w === 'service') expect(recordOf(e, 'oldRecord')?.title).toMatch(/^[ag]-draft$/);
        else expect(e.oldRecord).toBeUndefined();
      }
    }
    setMarks();
  });

  it('a row moving out of a viewer`s visibility (soft delete) stops reaching the viewer', async () => {
    // Soft-deleted posts stay visible to authors, editors and admins, but not to viewers or anon.
    await admin.query(`update public.posts set deleted_at = now() where id = $1`, [ids.aPub]);
    await admin.query(`update public.posts set title = 'a-pub-trashed' where id = $1`, [ids.aPub]);
    await insertPost(ACME, 'a-sentinel-2', 'published');
    await insertPost(GLOBEX, 'g-sentinel-2', 'published');
    for (const w of ['alice', 'carol', 'dave', 'anon'] as const)
      await waitForTitles(s[w], ['a-sentinel-2'], since(w));
    await waitForTitles(s.bob, ['g-sentinel-2'], since('bob'));
    await waitForTitles(s.service, ['g-sentinel-2'], since('service'));
    // The soft delete itself is an UPDATE whose new row the viewer can no longer read.
    expect(seen(s.alice, since('alice'))).toEqual([
      'UPDATE a-pub',
      'UPDATE a-pub-trashed',
      'INSERT a-sentinel-2',
    ]);
    expect(seen(s.dave, since('dave'))).toEqual([
      'UPDATE a-pub',
      'UPDATE a-pub-trashed',
      'INSERT a-sentinel-2',
    ]);
    expect(seen(s.carol, since('carol'))).toEqual(['INSERT a-sentinel-2']);
    expect(seen(s.anon, since('anon'))).toEqual(['INSERT a-sentinel-2', 'INSERT g-sentinel-2']);
    expect(seen(s.bob, since('bob'))).toEqual(['INSERT g-sentinel-2']);
    expect(seen(s.service, since('service'))).toEqual([
      'UPDATE a-pub',
      'UPDATE a-pub-trashed',
      'INSERT a-sentinel-2',
      'INSERT g-sentinel-2',
    ]);
    setMarks();
  });

  it('DELETE events reach only those who could see the last version, with only the key except for service_role', async () => {
    await admin.query('delete from public.posts where id = $1', [ids.aDraft]);
    await insertPost(ACME, 'a-sentinel-3', 'published');
    await insertPost(GLOBEX, 'g-sentinel-3', 'published');
    for (const w of ['alice', 'carol', 'dave', 'anon'] as const)
      await waitForTitles(s[w], ['a-sentinel-3'], since(w));
    await waitForTitles(s.bob, ['g-sentinel-3'], since('bob'));
    await waitForTitles(s.service, ['g-sentinel-3'], since('service'));
    for (const w of WHO) {
      const deletes = s[w].changes.filter((e) => e.operation === DELETE);
      // The deleted row's last version (an Acme draft) decides: Acme's members and the service
      // role get the DELETE; Globex's admin and anon, who never could read the draft, do not.
      if (w === 'bob' || w === 'anon') {
        expect(deletes, w).toHaveLength(0);
        continue;
      }
      expect(deletes, w).toHaveLength(1);
      const e = deletes[0] as events.ChangeEvent;
      if (w === 'service') {
        expect(recordOf(e, 'oldRecord')).toMatchObject({
          id: ids.aDraft,
          title: 'a-draft-2',
          tenant_id: ACME,
        });
        expect(e.columns.map((c) => c.name)).toContain('body');
      } else {
        expect(e.columns.map((c) => c.name)).toEqual(['id']);
        expect(recordOf(e)).toEqual({ id: ids.aDraft });
        expect(e.oldRecord).toBeUndefined();
        expect(e.changedColumns).toEqual([]);
      }
    }
  });
});

describe('documents', () => {
  const ROADMAP = 'd0000000-0000-0000-0000-000000000001'; // alice's, shared with carol (view)
  const NOTES = 'd0000000-0000-0000-0000-000000000002'; // alice's, not shared

  it('a shared document reaches the grantee until the share is revoked; unshared ones never', async () => {
    const s = await openAll({ tables: [{ table: 'documents' }], start: { $case: 'fromNow', value: true } }, [
      'alice',
      'carol',
      'bob',
    ]);
    const carolDoc = (title: string) =>
      admin.query(`insert into public.documents (tenant_id, owner_id, title) values ($1, $2, $3)`, [
        ACME,
        USERS.carol,
        title,
      ]);
    const setContent = (id: string, content: string) =>
      admin.query('update public.documents set content = $2 where id = $1', [id, content]);
    const contents = (x: OpenStream, from = 0) => seen(x, from, 'content');
    try {
      await setContent(ROADMAP, 'roadmap v2');
      await setContent(NOTES, 'notes v2');
      await carolDoc('carol sentinel 1');
      await setContent(NOTES, 'notes v3'); // alice's sentinel
      await waitForTitles(s.carol, ['carol sentinel 1']);
      await s.alice.waitFor((x) => contents(x).includes('UPDATE notes v3'), 10_000, 'notes v3');
      expect(contents(s.carol)).toEqual(['UPDATE roadmap v2', 'INSERT null']);
      expect(seen(s.carol)).toEqual(['UPDATE Acme roadmap', 'INSERT carol sentinel 1']);
      expect(contents(s.alice)).toEqual(['UPDATE roadmap v2', 'UPDATE notes v2', 'UPDATE notes v3']);
      const marks = { alice: s.alice.messages.length, carol: s.carol.messages.length };

      // Revoke: the next change of the roadmap no longer reaches carol.
      await admin.query('delete from public.document_shares where document_id = $1 and user_id = $2', [
        ROADMAP,
        USERS.carol,
      ]);
      await setContent(ROADMAP, 'roadmap v3');
      await carolDoc('carol sentinel 2');
      await setContent(NOTES, 'notes v4');
      await waitForTitles(s.carol, ['carol sentinel 2'], marks.carol);
      await s.alice.waitFor((x) => contents(x, marks.alice).includes('UPDATE notes v4'), 10_000, 'notes v4');
      expect(seen(s.carol, marks.carol)).toEqual(['INSERT carol sentinel 2']);
      // Revoking writes the document row (its viewer_ids): a new version for the owner only.
      expect(contents(s.alice, marks.alice)).toEqual([
        'UPDATE roadmap v2',
        'UPDATE roadmap v3',
        'UPDATE notes v4',
      ]);
      // bob sees none of Acme's documents, only his own sentinel written last.
      await admin.query(
        `insert into public.documents (tenant_id, owner_id, title) values ($1, $2, 'bob sentinel')`,
        [GLOBEX, USERS.bob],
      );
      await waitForTitles(s.bob, ['bob sentinel']);
      expect(seen(s.bob)).toEqual(['INSERT bob sentinel']);
    } finally {
      await Promise.all(Object.values(s).map((x) => x.cancel()));
    }
  });

  it('drafts written before a share never reach the grantee, live or on catch-up', async () => {
    const NOTES = 'd0000000-0000-0000-0000-000000000002'; // alice's, not shared
    const carolToken = await stack.token('carol');
    const request = { tables: [{ table: 'documents' }], start: { $case: 'fromNow' as const, value: true } };
    const live = new OpenStream(stack.eventsClient(carolToken), request);
    await live.ready();
    const start = live.heartbeats[0]?.position as string;
    const setContent = (content: string) =>
      admin.query('update public.documents set content = $2 where id = $1', [NOTES, content]);
    try {
      await setContent('private draft 1');
      await setContent('private draft 2');
      // Shared right after the private edits: the share writes a new version carol may read.
      await admin.query(
        `insert into public.document_shares (document_id, user_id, permission) values ($1, $2, 'view')`,
        [NOTES, USERS.carol],
      );
      await setContent('shared v3');
      const wanted = (x: OpenStream) => seen(x, 0, 'content').includes('UPDATE shared v3');
      await live.waitFor(wanted, 10_000, 'shared v3');
      // Catch-up from before the drafts, once the document is shared.
      const again = new OpenStream(stack.eventsClient(carolToken), {
        ...request,
        start: { $case: 'fromPosition', value: start },
      });
      try {
        await again.waitFor(wanted, 10_000, 'shared v3 on catch-up');
        for (const s of [live, again]) {
          const contents = seen(s, 0, 'content');
          // The private edits never; the share itself (a new version of the row, content still
          // draft 2, which carol may read from then on) and the edit after it.
          expect(contents).toEqual(['UPDATE private draft 2', 'UPDATE shared v3']);
        }
      } finally {
        await again.cancel();
      }
    } finally {
      await live.cancel();
      await admin.query('delete from public.document_shares where document_id = $1 and user_id = $2', [
        NOTES,
        USERS.carol,
      ]);
    }
  });
});
