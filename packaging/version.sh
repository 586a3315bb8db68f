#!/bin/sh
# Prints the package version, valid for Debian and RPM, from git:
#   tag v1.2.3 on HEAD        -> 1.2.3
#   4 commits after v1.2.3    -> 1.2.3+4.gabc1234
#   no tags                   -> 0.0.0~gitabc1234
#   tag v1.2.3-rc1            -> 1.2.3~rc1
#   uncommitted changes       -> the above + ".dirty"
# ('~' sorts before anything, '+' after, in both dpkg and rpm.)
set -eu
desc=$(git describe --tags --dirty --match 'v[0-9]*' 2>/dev/null) || desc=
if [ -z "$desc" ]; then
	sha=$(git rev-parse --short HEAD 2>/dev/null) || sha=unknown
	dirty=
	if ! git diff --quiet HEAD 2>/dev/null; then
		dirty=.dirty
	fi
	echo "0.0.0~git$sha$dirty"
	exit 0
fi
# A pre-release tag's '-' (v1.2.3-rc1) becomes '~', so 1.2.3~rc1 < 1.2.3.
echo "$desc" | sed -e 's/^v//' -e 's/-dirty$/.dirty/' \
	-e 's/-\([0-9][0-9]*\)-g\([0-9a-f][0-9a-f]*\)\(\.dirty\)\{0,1\}$/+\1.g\2\3/' -e 's/-/~/g'
