import { createLogger } from '@sluice/observability';
import type { RunningService } from '@sluice/runtime';
import Fastify from 'fastify';

/**
 * The floor of the webhooks benchmark: the ingress's HTTP stack (fastify, the raw body read as
 * a buffer) answering 200 to every POST without verifying or storing anything, so the ratio
 * inbound/floor is what verification and the durable insert cost.
 */
export async function startHttpFloor(address: string): Promise<RunningService> {
  const app = Fastify({ logger: false });
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: 1024 * 1024 }, (_req, body, done) =>
    done(null, body),
  );
  app.post('/webhooks/:source', async (_req, reply) => reply.code(200).send({ ok: true }));
  const m = /^(\[[^\]]+\]|[^:]*):(\d+)$/.exec(address);
  await app.listen({ host: (m?.[1] ?? '127.0.0.1').replace(/^\[|\]$/g, ''), port: Number(m?.[2] ?? 0) });
  const bound = app.server.address();
  return {
    name: 'http-floor',
    port: typeof bound === 'object' && bound ? bound.port : 0,
    logger: createLogger({ service: 'http-floor', level: 'silent', env: 'bench' }),
    ready: () => true,
    close: () => app.close(),
  };
}
