#!/usr/bin/env bash
# Regenerates packages/proto/src/gen from proto/ (ts-proto through buf) and the descriptor set that
# server reflection serves. With an argument, writes under that folder instead (for the freshness check).
set -euo pipefail
cd "$(dirname "$0")/../packages/proto"
base=${1:-.}
(cd ../../proto && buf lint)
rm -rf "$base/src/gen"
buf generate -o "$base"
buf build ../../proto -o "$base/src/gen/sluice.binpb"
