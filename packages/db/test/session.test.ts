import { isTransientConnectError, openSession } from '@sluice/db';
import { createTestDatabase, freePort, type TestDatabase } from '@sluice/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTcpProxy, type TcpProxy } from '../../../test/tcp-proxy';

// openSession tries again while the server is there but says "not now" (here: a proxy that
// accepts and drops every connection, as a server shutting down or restarting does), and not
// when nothing listens.

let db: TestDatabase;
let proxy: TcpProxy;

beforeAll(async () => {
  db = await createTestDatabase();
  proxy = await startTcpProxy(Number(new URL(db.appUrl).port));
});

afterAll(async () => {
  await proxy?.close();
  await db?.drop();
});

const options = (connectionString: string, connectAttempts?: number) => ({
  connectionString,
  applicationName: 'session-test',
  ...(connectAttempts === undefined ? {} : { connectAttempts }),
});

describe('openSession', () => {
  it('retries a connection dropped during the handshake, up to connectAttempts', async () => {
    proxy.setDown(true);
    try {
      let before = proxy.accepted;
      await expect(openSession(options(proxy.url(db.appUrl)))).rejects.toThrow();
      expect(proxy.accepted - before).toBe(3);
      before = proxy.accepted;
      await expect(openSession(options(proxy.url(db.appUrl), 1))).rejects.toThrow();
      expect(proxy.accepted - before).toBe(1);
    } finally {
      proxy.setDown(false);
    }
    const client = await openSession(options(proxy.url(db.appUrl)));
    expect((await client.query('select 1 as one')).rows[0]).toEqual({ one: 1 });
    await client.end();
  });

  it('does not retry when nothing listens, nor an error a statement could have caused', async () => {
    const url = new URL(db.appUrl);
    url.port = String(await freePort());
    const refused = await openSession(options(url.toString())).catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: 'ECONNREFUSED' });
    expect(isTransientConnectError(refused)).toBe(false);
    const pgError = (code: string, severity = 'FATAL') => Object.assign(new Error(code), { code, severity });
    expect(isTransientConnectError(pgError('57P03'))).toBe(true); // starting up, shutting down
    expect(isTransientConnectError(pgError('53300'))).toBe(true); // too many connections
    expect(isTransientConnectError(pgError('28P01'))).toBe(false); // password refused
    expect(isTransientConnectError(pgError('23505', 'ERROR'))).toBe(false);
    expect(isTransientConnectError(new Error('Connection terminated unexpectedly'))).toBe(true);
  });
});
