//! Carries faults out on the server nodes of a [`ServerCluster`] and heals them: signals for
//! kills and stalls, `iptables` inside a node's namespace for partitions. Only traffic between
//! server nodes is dropped; the clients' host still reaches every node, so a node cut off from
//! the others keeps taking requests it cannot serve.

use std::process::Command;

use super::common::server_cluster::ServerCluster;
use super::schedule::{Resolved, Rules};

/// What is wrong with the cluster now, so it can all be put right.
#[derive(Default)]
pub struct Faults {
    killed: Vec<usize>,
    stalled: Vec<usize>,
    firewalled: Vec<usize>,
}

impl Faults {
    /// Carries `fault` out.
    pub fn apply(&mut self, servers: &mut ServerCluster, fault: &Resolved) {
        match fault {
            Resolved::Kill(hosts) => {
                for &host in hosts {
                    servers.kill(host);
                    self.killed.push(host);
                }
            }
            Resolved::Stall(hosts) => {
                for &host in hosts {
                    servers.stop(host);
                    self.stalled.push(host);
                }
            }
            Resolved::Drop(rules) => {
                for r in rules {
                    drop_packets(servers, r);
                    self.firewalled.push(r.host);
                }
            }
        }
    }

    /// Puts everything right: flushes the firewalls, resumes stopped nodes and restarts
    /// killed ones from their data directories.
    pub fn heal(&mut self, servers: &mut ServerCluster) {
        for host in std::mem::take(&mut self.firewalled) {
            iptables(servers, host, &["-F"]);
        }
        for host in std::mem::take(&mut self.stalled) {
            servers.resume(host);
        }
        for host in std::mem::take(&mut self.killed) {
            servers.restart(host);
        }
    }
}

/// Adds `rules` to its host's firewall.
fn drop_packets(servers: &ServerCluster, rules: &Rules) {
    let addrs = |hosts: &[usize]| -> String {
        hosts
            .iter()
            .map(|h| servers.lab().addr(*h).to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    if !rules.inbound.is_empty() {
        let from = addrs(&rules.inbound);
        iptables(
            servers,
            rules.host,
            &["-A", "INPUT", "-s", &from, "-j", "DROP"],
        );
    }
    if !rules.outbound.is_empty() {
        let to = addrs(&rules.outbound);
        iptables(
            servers,
            rules.host,
            &["-A", "OUTPUT", "-d", &to, "-j", "DROP"],
        );
    }
}

/// `iptables ARGS` in `host`'s namespace, which must succeed.
fn iptables(servers: &ServerCluster, host: usize, args: &[&str]) {
    let out = Command::new("ip")
        .args(["netns", "exec", &servers.lab().ns(host), "iptables", "-w"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run iptables (scripts/install-test-deps.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "iptables {args:?} on host {host}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
