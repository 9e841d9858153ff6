#!/usr/bin/env bash
# The test suite: installs what the tests need, then runs every test of the
# workspace. This is the command the README and CI run.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/install-deps.sh
exec cargo test --workspace "$@"
