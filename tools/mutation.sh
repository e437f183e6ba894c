#!/bin/sh
# Mutation testing of the core modules (docs/testing.md): mutmut 3, one group at a time, each with
# its targeted tests, at the lowest CPU priority. Needs the dev extra: pip install -e ".[dev]".
# Usage: tools/mutation.sh [GROUP ...] [--list] [--jobs N] [--fresh] [--report-only]
cd "$(dirname "$0")/.." && exec nice -n 19 python tools/mutation.py "$@"
