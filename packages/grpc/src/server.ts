import { readFileSync } from 'node:fs';
import { descriptorSetPath } from '@sluice/proto';
import { createServer, type Server } from 'nice-grpc';
import { errorDetailsServerMiddleware } from 'nice-grpc-error-details';
import { HealthDefinition, HealthServiceImpl, HealthState } from 'nice-grpc-server-health';
import { ServerReflection, ServerReflectionService } from 'nice-grpc-server-reflection';
import type { Logger } from 'pino';
import { callMiddleware, type SluiceCallContext } from './call-middleware';
import { deadlineInterceptor } from './deadline-interceptor';
import { withStrictDecoding } from './request-decoding';

export interface GrpcServerOptions {
  readonly logger: Logger;
  /** Largest request message accepted; bigger ones get RESOURCE_EXHAUSTED from grpc-js. */
  readonly maxReceiveMessageBytes: number;
  readonly maxSendMessageBytes: number;
  /** Fully-qualified names of the services to expose through server reflection. */
  readonly reflectionServices: readonly string[];
}

export interface SluiceGrpcServer {
  /**
   * Add services here; each call passes through the Sluice call middleware, and requests are
   * decoded strictly (invalid UTF-8 and over-deep nesting are INVALID_ARGUMENT, not INTERNAL).
   */
  readonly services: Server<SluiceCallContext>;
  readonly health: HealthState;
  /** Aborted when shutdown starts: long-lived streams end at once so clients reconnect elsewhere. */
  readonly draining: AbortSignal;
  listen(address: string): Promise<number>;
  /**
   * Stops accepting calls and waits up to `graceMs` for running ones; then aborts what is left
   * (UNAVAILABLE) and closes the server.
   */
  shutdown(graceMs: number): Promise<void>;
}

/** A nice-grpc server with Sluice's middleware, health service and reflection. */
export function createGrpcServer(options: GrpcServerOptions): SluiceGrpcServer {
  const drain = new AbortController();
  const hardStop = new AbortController();
  const base = createServer({
    'grpc.max_receive_message_length': options.maxReceiveMessageBytes,
    'grpc.max_send_message_length': options.maxSendMessageBytes,
    interceptors: [deadlineInterceptor],
  });
  // Middleware first (nice-grpc requires it before any service); health and reflection calls
  // pass through it too, which costs little and logs them like any other call.
  // `use` returns a new server object: everything below (add, listen, shutdown) goes through it.
  const server = base
    .use(errorDetailsServerMiddleware)
    .use(callMiddleware({ logger: options.logger, shutdownSignal: hardStop.signal }));
  const health = HealthState();
  server.add(HealthDefinition, HealthServiceImpl(health));
  server.add(
    ServerReflectionService,
    ServerReflection(readFileSync(descriptorSetPath), [
      ...options.reflectionServices,
      'grpc.health.v1.Health',
    ]),
  );

  return {
    services: strictlyDecoding(server as unknown as Server<SluiceCallContext>),
    health,
    draining: drain.signal,
    listen: (address) => server.listen(address),
    async shutdown(graceMs) {
      for (const name of options.reflectionServices) health.setStatus('unhealthy', name);
      drain.abort();
      let timer: NodeJS.Timeout | undefined;
      const graceful = server.shutdown();
      const timedOut = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), graceMs);
      });
      const outcome = await Promise.race([graceful.then(() => 'done' as const), timedOut]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        hardStop.abort();
        await Promise.race([graceful, new Promise((r) => setTimeout(r, 1000))]);
        server.forceShutdown();
      }
    },
  };
}

interface AddBuilder {
  with(middleware: unknown): AddBuilder;
  add(definition: unknown, implementation: unknown): void;
}

/** `server` whose `add` (also after `with`) registers definitions with strict request decoding. */
function strictlyDecoding<S>(server: S): S {
  const wrap = (builder: AddBuilder): AddBuilder => ({
    with: (middleware) => wrap(builder.with(middleware)),
    add: (definition, implementation) => builder.add(withStrictDecoding(definition), implementation),
  });
  return { ...server, ...wrap(server as unknown as AddBuilder) } as S;
}
