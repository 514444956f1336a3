import { signToken } from '@sluice/auth';
import { loadDataConfig, startDataServer } from '@sluice/data-service';
import { createLogger, flushLogs } from '@sluice/observability';
import { data, type Value } from '@sluice/proto';
import {
  ACME,
  AUTHENTICATOR_PASSWORD,
  createTestDatabase,
  type LokiReceiver,
  startLokiReceiver,
  TEST_JWT_SECRET,
  USERS,
} from '@sluice/testing';
import { createChannel, createClient, Metadata } from 'nice-grpc';
import { afterAll, describe, expect, it } from 'vitest';

// End to end: the real data service logging through a Loki logger; one Insert with a JWT and a
// distinctive row value; the call's line reaches the Loki receiver with its request fields, and
// neither the token, the row value nor the database password is anywhere Loki or stdout got.

const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const step of cleanup.reverse()) await step();
});

const str = (value: string): Value => ({ kind: { $case: 'stringValue', value } });

describe('data service logs in Loki', () => {
  it('an Insert is logged to Loki with method and request id in the line, no token or row value anywhere', async () => {
    const loki: LokiReceiver = await startLokiReceiver();
    cleanup.push(() => loki.close());
    const db = await createTestDatabase();
    cleanup.push(() => db.drop());
    let stdout = '';
    const logger = createLogger({
      service: 'data',
      level: 'info',
      env: 'test',
      loki: {
        pushUrl: `${loki.url}/loki/api/v1/push`,
        basicAuth: undefined,
        tenantId: undefined,
        batchIntervalMs: 50,
        timeoutMs: 2000,
        maxBufferedLines: 10_000,
        gzip: false,
      },
      stdout: {
        write(line: string) {
          stdout += line;
        },
      },
    });
    const config = loadDataConfig({
      DATABASE_URL: db.appUrl,
      DATA_GRPC_ADDRESS: '127.0.0.1:0',
      JWT_SECRET: TEST_JWT_SECRET,
      SHUTDOWN_GRACE_MS: '2000',
    });
    const server = await startDataServer(config, { logger });
    cleanup.push(() => server.close());
    const channel = createChannel(`127.0.0.1:${server.port}`);
    cleanup.push(async () => channel.close());

    const token = await signToken(
      TEST_JWT_SECRET,
      { sub: USERS.dave, role: 'authenticated' },
      { expiresIn: 600 },
    );
    const title = `canary-row-value-${Date.now()}`;
    const requestId = `loki-e2e-${Date.now()}`;
    const client = createClient(data.DataServiceDefinition, channel, {
      '*': { metadata: Metadata({ authorization: `Bearer ${token}`, 'x-request-id': requestId }) },
    });
    const res = await client.insert({
      table: 'posts',
      columns: ['tenant_id', 'title'],
      rows: [{ values: [str(ACME), str(title)] }],
    });
    expect(res.affected).toBe(1n);

    const arrived = await loki.waitFor((l) => l.line.includes(requestId));
    expect(arrived.labels).toEqual({ app: 'sluice', service: 'data', env: 'test', level: 'info' });
    expect(JSON.parse(arrived.line)).toMatchObject({
      msg: 'rpc',
      method: '/sluice.data.v1.DataService/Insert',
      request_id: requestId,
      grpc_code: 'OK',
      role: 'authenticated',
      user_id: USERS.dave,
      service: 'data',
    });
    await flushLogs();
    // LOKI_GZIP=false: plain JSON bodies.
    expect(loki.pushes.every((p) => p.headers['content-encoding'] === undefined)).toBe(true);
    const sent = loki.pushes.map((p) => p.body).join('\n');
    expect(stdout).toContain(requestId);
    for (const text of [sent, stdout]) {
      expect(text).not.toContain(token);
      expect(text).not.toContain(token.split('.')[2]!);
      expect(text).not.toContain(title);
      expect(text).not.toContain(AUTHENTICATOR_PASSWORD);
    }
    // Nothing from a request became a label.
    const labelValues = new Set(loki.lines().flatMap((l) => Object.values(l.labels)));
    expect([...labelValues].sort()).toEqual(['data', 'info', 'sluice', 'test']);
  });
});
