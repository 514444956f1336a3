import { ConcurrencyLimit } from '@sluice/core';
import { data } from '@sluice/proto';
import { type GrpcServiceOptions, type RunningService, startGrpcService } from '@sluice/runtime';
import type { DataConfig } from './config';
import { createDataService } from './data-service';

export type DataServer = RunningService;
export type StartOptions = GrpcServiceOptions;

/**
 * The data service on the shared runtime (@sluice/runtime: pool, catalog, authentication, gRPC
 * server, health, shutdown): the table API, with long calls (SelectStream, Transaction)
 * bounded per identity and in total.
 */
export function startDataServer(config: DataConfig, options: StartOptions = {}): Promise<DataServer> {
  return startGrpcService(
    {
      name: 'data',
      grpcService: data.DataServiceDefinition.fullName,
      settings: config,
      statementTimeoutMs: config.limits.statementTimeoutMs,
      setup({ db, catalog, authenticated }) {
        authenticated.add(
          data.DataServiceDefinition,
          createDataService({
            db,
            catalog,
            limits: config.limits,
            longCalls: new ConcurrencyLimit({
              kind: 'streams and transactions',
              ...config.longCalls,
              // Trusted backends (the service key bypasses RLS): bounded by the total only.
              uncappedRoles: ['service_role'],
            }),
          }),
        );
      },
    },
    options,
  );
}
