#!/usr/bin/env bash
# The README's test command: installs what is missing (apt, npm), builds the
# BPF objects, the CNI plugin and the CLI's JavaScript, type-checks, then
# runs unit tests (no root needed) and privileged tests (root; each in
# throwaway network namespaces) with node's test runner and an explicit file
# list (node 20 does not glob .ts files).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
make -s -C bpf
make -s -C cni
# The JavaScript bin/membrane runs (dist/cli/): the tests and the lab run the build, as users do.
node scripts/build.mjs
# The web UI's page (ui/dist/), which `membrane ui` serves and the browser test loads.
node ui/build.mjs
npx tsc -p tsconfig.json
npx tsc -p ui/tsconfig.json
shopt -s nullglob
files=(test/unit/*.test.ts test/privileged/*.test.ts)
if [ "$#" -gt 0 ]; then files=("$@"); fi
# A test that cannot run here fails instead of skipping (test/helpers/skip.ts): green means every test ran.
export MEMBRANE_TEST_STRICT=1
exec node --import tsx --test --test-concurrency=1 "${files[@]}"
