# syntax=docker/dockerfile:1
# Sluice's production image: the data and events services (dist/main.js), the release command
# (dist/migrate.js) and the OpenTelemetry preload (dist/register.js), compiled by `npm run build`
# and run by plain Node 22 (no tsx, no TypeScript at runtime). See docs/operations.md.
#
#   docker build -t sluice .
#   docker run --rm -e DATABASE_URL=postgres://… -e JWT_SECRET=… -p 50051:50051 -p 50052:50052 -p 9464:9464 sluice
#
# Keep NODE_VERSION in step with the "node" devDependency of package.json (the Node the tests run on).
ARG NODE_VERSION=22.23.3

FROM node:${NODE_VERSION}-bookworm-slim AS base
WORKDIR /app
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

# Only the manifests, so the dependency layers are rebuilt when a package.json or the lock
# changes, not on every source edit (npm ci needs every workspace's package.json).
FROM base AS manifests
COPY . /src
RUN mkdir -p /manifests \
 && cd /src \
 && cp package.json package-lock.json /manifests/ \
 && find packages services -mindepth 2 -maxdepth 2 -name package.json -exec cp --parents {} /manifests/ \;

# Build: every dependency (tsx, esbuild, TypeScript), then the bundle.
FROM base AS build
COPY --from=manifests /manifests/ ./
RUN --mount=type=cache,target=/root/.npm npm ci
COPY . .
RUN npm run build

# Runtime: production dependencies only; --ignore-scripts: no install script of a production
# dependency needs to run; --omit=optional: no embedded-postgres binaries (~60 MB), which the
# launcher loads only when DATABASE_URL is unset, and NODE_ENV=production requires it.
FROM base AS runtime
ENV NODE_ENV=production
COPY --from=manifests /manifests/ ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --omit=optional --ignore-scripts
COPY --from=build /app/dist ./dist
# Files the bundle reads at runtime, at their repository paths (dist/assets.json lists them;
# `npm run build` fails when one is missing here): core migrations, the proto descriptor set for
# server reflection, the application's migrations (MIGRATIONS_DIR) and the demo seed.
COPY packages/db/migrations ./packages/db/migrations
COPY packages/proto/src/gen/sluice.binpb ./packages/proto/src/gen/sluice.binpb
COPY migrations ./migrations
COPY db/seed.sql ./db/seed.sql

# Inside a VM or container the services must listen on every interface (their defaults are
# loopback, for npm start). Fly's edge terminates TLS and sends h2c to the gRPC ports.
ENV DATA_GRPC_ADDRESS=0.0.0.0:50051 \
    EVENTS_GRPC_ADDRESS=0.0.0.0:50052 \
    WEBHOOKS_GRPC_ADDRESS=0.0.0.0:50053 \
    WEBHOOKS_HTTP_ADDRESS=0.0.0.0:8080 \
    WEBHOOKS_HTTPS_ONLY=true \
    OPS_HTTP_ADDRESS=0.0.0.0:9464 \
    MIGRATE_ON_START=false \
    SEED_DEMO_DATA=false \
    SLUICE_ENV=production
EXPOSE 50051 50052 50053 8080 9464

USER node
# --experimental-async-context-frame: AsyncLocalStorage (OpenTelemetry's context) on async context
# frames rather than promise hooks, which otherwise tax every promise once tracing is on (the
# default from Node 24).
CMD ["node", "--enable-source-maps", "--experimental-async-context-frame", "--import", "./dist/register.js", "dist/main.js"]
