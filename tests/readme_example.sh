#!/bin/sh
# SPDX-License-Identifier: MIT
# The example program of README.md: it must compile against the library just
# built, and print what the README says it prints, against a real devmemd.
set -eu
top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
tmp=$(mktemp -d /tmp/devmem-readme-XXXXXX)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

sed -n '/^\/\* app.c:/,/^}/p' "$top_srcdir/README.md" > "$tmp/app.c"
sed -n '/^\$ cc app.c/,/^```/p' "$top_srcdir/README.md" | sed '1d;$d' \
	> "$tmp/expected"
if [ ! -s "$tmp/app.c" ] || [ ! -s "$tmp/expected" ]; then
	echo "readme_example: no example (or no expected output) in README.md"
	exit 1
fi
${CC:-cc} -std=gnu11 -Wall -Wextra -Werror -I"$top_srcdir/include" \
	"$tmp/app.c" -o "$tmp/app" -L"$top_builddir/.libs" -ldevmem \
	-Wl,-rpath,"$top_builddir/.libs"

"${DEVMEMD:-$top_builddir/devmemd}" --foreground --socket "$tmp/d.sock" \
	--log-level warn &
pid=$!
i=0
while [ ! -S "$tmp/d.sock" ]; do
	i=$((i + 1))
	[ $i -lt 500 ] || { echo "readme_example: devmemd did not start"; exit 1; }
	sleep 0.01
done
DEVMEM_SOCKET="$tmp/d.sock" "$tmp/app" > "$tmp/out"
if ! diff -u "$tmp/expected" "$tmp/out"; then
	echo "readme_example: the example's output differs from README.md"
	exit 1
fi
echo "readme_example: ok"
