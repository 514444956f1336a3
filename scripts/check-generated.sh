#!/usr/bin/env bash
# Fails when committed generated code is stale: the proto code is regenerated into a temporary
# folder and compared; db/schema.ts is compared with kysely-codegen's output for a freshly
# migrated database.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bash scripts/generate-proto.sh "$tmp" >/dev/null
if ! diff -r packages/proto/src/gen "$tmp/src/gen" >/dev/null; then
  echo "packages/proto/src/gen is stale: run npm run generate" >&2
  diff -r packages/proto/src/gen "$tmp/src/gen" | head -20 >&2
  exit 1
fi
if [ -f scripts/generate-schema.ts ]; then
  tsx scripts/generate-schema.ts --verify
fi
