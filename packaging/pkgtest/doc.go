// Package pkgtest holds the tests of hookrelay as an installed system
// service: the hardened units (systemd-analyze), `hookagent install` against
// a stand-in systemd, and the .deb/.rpm packages (dpkg, rpm). They need root
// and those tools; each skips when one is missing, and fails instead when
// CI=true. They run one after another in this one package, because they
// share the machine's /usr/bin, /etc and dpkg database.
package pkgtest
