import { loseChangeWindows } from '@sluice/testing';
import { Status } from 'nice-grpc';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACME, type EventsStack, startEventsStack, USERS } from './helpers';
import { OpenStream, recordOf } from './open-stream';
import { decodePosition } from './stream-collector';

// When the change log loses windows a stream has already been sent (PostgreSQL crashed without
// durable commits: the window numbers are issued again), no stream may go on as if nothing
// happened and skip what is committed after recovery: streams following the feed end, and a
// client resuming from a lost position is refused, both with SLUICE_CHANGE_LOG_REGRESSED.

let stack: EventsStack;
let admin: pg.Client;

beforeAll(async () => {
  stack = await startEventsStack({ EVENTS_HEARTBEAT_MS: '100' });
  admin = new pg.Client({ connectionString: stack.db.url });
  await admin.connect();
});

afterAll(async () => {
  await admin?.end();
  await stack?.close();
});

async function insertPost(title: string): Promise<void> {
  await admin.query(
    `insert into public.posts (tenant_id, author_id, title, status) values ($1, $2, $3, 'published')`,
    [ACME, USERS.alice, title],
  );
}

describe('a change log that lost windows', () => {
  it('ends the streams that were sent them, and refuses to resume from them', async () => {
    const token = await stack.token('alice');
    const s = new OpenStream(stack.eventsClient(token), {
      tables: [{ table: 'posts' }],
      start: { $case: 'fromNow', value: true },
    });
    await s.ready();
    await insertPost('before the crash');
    await s.waitFor((x) => x.changes.length === 1, 10_000, 'the first change');
    const sent = s.changes[0]?.position as string;
    expect(recordOf(s.changes[0])?.title).toBe('before the crash');
    const lost = decodePosition(sent);
    await loseChangeWindows(admin, lost.window, lost.id);
    // Resuming from the lost position: refused, never a silent gap (the first read notices).
    const resumed = new OpenStream(stack.eventsClient(token), {
      tables: [{ table: 'posts' }],
      start: { $case: 'fromPosition', value: sent },
    });
    await resumed.done;
    expect(resumed.error).toMatchObject({ code: Status.UNAVAILABLE });
    expect(String((resumed.error as Error).message)).toMatch(/no longer holds/);
    expect(resumed.changes).toEqual([]);
    // The stream following the feed ends too.
    await s.done;
    expect(s.error).toMatchObject({ code: Status.UNAVAILABLE });
    expect(String((s.error as Error).message)).toMatch(/no longer holds/);
    // After "recovery", new commits take the lost numbers again: the ended stream got none of
    // them as if they followed what it had.
    await insertPost('after the crash');
    expect(s.changes.map((e) => recordOf(e)?.title)).toEqual(['before the crash']);
  });
});
