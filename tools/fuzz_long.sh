#!/usr/bin/env bash
# The long fuzz run: every fuzz test of tests/reliability/test_fuzz.py with N examples each
# (default 5000), with Hypothesis' statistics. CI runs 150 per test inside the test suite.
#   tools/fuzz_long.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q -p no:cacheprovider --hypothesis-show-statistics \
    --in-child --fuzz-examples "${1:-5000}" tests/reliability/test_fuzz.py
