#!/usr/bin/env bash
# Builds dist/mq of HEAD with a measuring patch applied, in DIR (a copy from `git archive`: the
# checkout is untouched; node_modules linked from it). Used by sync-parity.sh and latency-points.sh.
#   bench/patched-build.sh PATCH DIR
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PATCH=${1:?PATCH}; W=${2:?DIR}
(cd "$ROOT" && git archive HEAD) | tar -x -C "$W"
ln -s "$ROOT/node_modules" "$W/node_modules"
(cd "$W" && patch -s -p1 < "$PATCH")
(cd "$W" && ./node_modules/.bin/bun scripts/build.ts)
