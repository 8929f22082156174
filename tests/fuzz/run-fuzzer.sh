#!/bin/sh
# SPDX-License-Identifier: MIT
# Run one libFuzzer target for a bounded time on a copy of its seed corpus
# (the committed corpus is never modified), as `make fuzz` does:
#
#   run-fuzzer.sh FUZZER SEED_DIR SECONDS ARTIFACT_DIR [libFuzzer options...]
#
# Exits non-zero on any crash, abort, sanitizer report (ASan, UBSan, LSan),
# timeout or out-of-memory; the input that caused it is saved in
# ARTIFACT_DIR as <fuzzer>-crash-<sha1> (or -leak-, -timeout-, -oom-).
# Reproduce with: FUZZER ARTIFACT_DIR/<file>
set -eu

if [ $# -lt 4 ]; then
	echo "usage: $0 FUZZER SEED_DIR SECONDS ARTIFACT_DIR [libFuzzer options...]" >&2
	exit 2
fi
fuzzer=$1
seeds=$2
seconds=$3
artifacts=$4
shift 4

name=$(basename "$fuzzer")
case $seconds in
'' | *[!0-9]*)
	echo "$0: SECONDS must be a number, not '$seconds'" >&2
	exit 2
	;;
esac
if [ ! -x "$fuzzer" ]; then
	echo "$0: $fuzzer: not built (configure with --enable-fuzzing CC=clang)" >&2
	exit 2
fi
if [ ! -d "$seeds" ]; then
	echo "$0: $seeds: no seed corpus" >&2
	exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/$name.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$work/corpus" "$artifacts"
cp "$seeds"/* "$work/corpus/"
touch "$work/start"

echo "$name: fuzzing for $seconds s, seeds from $seeds"
# -timeout: one input taking that long is a hang (reported, saved).  The
# fuzzers are built with -fno-sanitize-recover=undefined: a UBSan report is
# fatal like an ASan one; LeakSanitizer runs after inputs that leak.
status=0
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
	"$fuzzer" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 \
	-print_final_stats=1 -artifact_prefix="$artifacts/$name-" "$@" \
	"$work/corpus" || status=$?

if [ "$status" -ne 0 ]; then
	echo "$name: FAILED (exit status $status); reproducers:" >&2
	find "$artifacts" -name "$name-*" -newer "$work/start" >&2 || true
	exit 1
fi
echo "$name: no crash in $seconds s"
