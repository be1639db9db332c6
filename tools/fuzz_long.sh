#!/usr/bin/env bash
# The long fuzz run: every fuzz test of tests/test_reliability_fuzz.py with N examples each
# (default 5000), with Hypothesis' statistics. CI runs 150 per test inside the test suite.
#   tools/fuzz_long.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
NNEXPOSED_FUZZ_CHILD=1 NNEXPOSED_FUZZ_EXAMPLES="${1:-5000}" \
    python -m pytest -q -p no:cacheprovider --hypothesis-show-statistics \
    tests/test_reliability_fuzz.py -k "not child"
