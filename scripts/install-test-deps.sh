#!/bin/sh
# Installs what poolbot's tests and the lab (go run ./cmd/poolbot-lab) need
# on a fresh Debian bookworm machine: the real servers they start (InspIRCd
# + Atheme for IRC, etcd with the v2 API for conftool and spicerack's
# locks, OpenSSH's sshd for the SSH executor, cumin with ClusterShell for
# the cumin executor, gdnsd and pdns-recursor for DNS discovery,
# Prometheus Alertmanager for host silences), util-linux's unshare/nsenter
# and getent (libc-bin) for test hosts with their own resolv.conf,
# systemd-analyze for the unit file, and a prebuilt CNCF
# distribution registry from tools/go.mod. Needs root for apt-get.
set -eu
cd "$(dirname "$0")/.."

# systemd: systemd-analyze checks deploy/poolbot.service.
# cumin (4.2.0 on bookworm) brings python3-clustershell; its tests
# (internal/testenv/cumin) reach sshd with OpenSSH's client
# (openssh-client, pulled in by openssh-server).
# gdnsd, pdns-recursor: the DNS discovery tests (internal/testenv/dns) run
# them on random loopback addresses; util-linux: unshare and nsenter
# (internal/testenv/hostns); prometheus-alertmanager: the silence tests
# (internal/testenv/alertmanager, random loopback port, no clustering).
# ceph-mon ceph-osd radosgw (with ceph-common's ceph, radosgw-admin,
# monmaptool, ceph-authtool): one small Ceph RGW cluster per apus site
# (internal/testenv/ceph). haproxy: the load balancer in front of the
# registry hosts (internal/testenv/haproxy). mount: per-host /etc/hosts for
# registries in internal/testenv/apus.
pkgs="inspircd atheme-services etcd-server openssh-server systemd cumin gdnsd pdns-recursor util-linux libc-bin prometheus-alertmanager ceph-mon ceph-osd radosgw ceph-common haproxy mount"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	# Packages must not start their system services (sshd on :22, inspircd
	# on :6667, gdnsd and pdns-recursor on :53, haproxy on :80, ceph
	# daemons): the tests start their own on random loopback addresses and
	# ports.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi
# Nor start them at boot: a system gdnsd on 0.0.0.0:53 would take the port
# the tests' recursors bind on their own loopback addresses, and a system
# Alertmanager would gossip on :9094 for nothing.
if [ -d /run/systemd/system ]; then
	systemctl disable --now gdnsd.service pdns-recursor.service prometheus-alertmanager.service >/dev/null 2>&1 || true
fi
# sshd refuses to start without its privilege-separation directory.
mkdir -p /run/sshd

# The registry binary is built once from the tools module, so that its
# hundred dependencies stay out of poolbot's go.mod.
bin="${POOLBOT_REGISTRY_BIN:-$HOME/.cache/poolbot-testbin/registry-v3.1.2}"
if [ ! -x "$bin" ]; then
	mkdir -p "$(dirname "$bin")"
	(cd tools && go build -buildvcs=false -o "$bin" github.com/distribution/distribution/v3/cmd/registry)
fi
echo "POOLBOT_REGISTRY_BIN=$bin"
