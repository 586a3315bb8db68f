package pkgtest

// fakeSystemctl is a stand-in systemctl for a mount namespace that looks like
// a systemd machine. It appends each call to $FAKE/calls; is-active answers
// from $FAKE/state ("active" or else inactive); list-unit-files finds units in
// /etc/systemd/system; --version claims systemd 252.
const fakeSystemctl = `#!/bin/sh
FAKE=$(dirname "$0")
echo "$*" >> "$FAKE/calls"
case "$1" in
--version) echo "systemd 252 (252)" ;;
is-active)
	state=$(cat "$FAKE/state" 2>/dev/null || echo inactive)
	echo "$state"
	[ "$state" = active ] || exit 3 ;;
list-unit-files)
	for u in "$@"; do
		[ ! -f "/etc/systemd/system/$u" ] || echo "$u enabled enabled"
	done ;;
esac
exit 0
`

// fakeSystemdSetup, sourced by a bash script run under `unshare --mount`,
// makes the namespace look like a systemd machine: empty /etc/systemd/system
// and /run/systemd (with /run/systemd/system, the marker that systemd is
// PID 1), a fresh /srv, and fakeSystemctl first on PATH. step NAME CMD...
// runs CMD and keeps its output and exit code in $OUT/NAME.out and .rc.
const fakeSystemdSetup = `set -eu
mount --make-rprivate /
mount -t tmpfs -o mode=0755 tmpfs /etc/systemd/system
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mkdir /run/systemd/system
mount -t tmpfs -o mode=0755 tmpfs /srv
mkdir -m 0755 /srv/fake
printf '%s' "$FAKE_SYSTEMCTL" > /srv/fake/systemctl
chmod 0755 /srv/fake/systemctl
: > /srv/fake/calls
export PATH=/srv/fake:$PATH
step() {
	name=$1; shift
	set +e
	"$@" > "$OUT/$name.out" 2>&1
	echo $? > "$OUT/$name.rc"
	set -e
}
calls() { cp /srv/fake/calls "$OUT/$1.calls"; : > /srv/fake/calls; }
`
