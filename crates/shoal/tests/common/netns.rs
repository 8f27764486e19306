//! A small lab of network namespaces for multi-host tests: one namespace per host, each with
//! its own loopback and one address on a private /24, all joined by a bridge in a hub
//! namespace. Links can be shaped with `tc`. Dropping the lab deletes every namespace (and so
//! every interface in them); processes started in it must be stopped first.
//!
//! Needs root (CI runs as root). Names carry the test's process id so concurrent tests never
//! share a namespace.

use std::net::Ipv4Addr;
use std::process::{Command, Output};

/// The lab's hosts and their hub.
pub struct Lab {
    prefix: String,
    hosts: usize,
}

impl Lab {
    /// Creates `hosts` namespaces with addresses `10.77.0.1`, `10.77.0.2`, ... on one bridge.
    pub fn new(tag: &str, hosts: usize) -> Self {
        let prefix = format!("shoal-{tag}-{}", std::process::id());
        let lab = Self { prefix, hosts };
        let hub = lab.hub();
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        for host in 0..hosts {
            let ns = lab.ns(host);
            ip(&["netns", "add", &ns]);
            let (inner, outer) = ("eth0", format!("h{host}"));
            ip(&[
                "link", "add", inner, "netns", &ns, "type", "veth", "peer", "name", &outer,
                "netns", &hub,
            ]);
            ip(&["-n", &hub, "link", "set", &outer, "master", "br0", "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", lab.addr(host)),
                "dev",
                inner,
            ]);
            ip(&["-n", &ns, "link", "set", inner, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    /// How many hosts the lab has.
    pub fn hosts(&self) -> usize {
        self.hosts
    }

    /// The namespace of host `host`.
    pub fn ns(&self, host: usize) -> String {
        format!("{}-{host}", self.prefix)
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    /// The address of host `host`.
    pub fn addr(&self, host: usize) -> Ipv4Addr {
        Ipv4Addr::new(
            10,
            77,
            0,
            u8::try_from(host + 1).expect("at most 254 hosts"),
        )
    }

    /// A command that runs `program` inside host `host`'s namespace.
    pub fn command(&self, host: usize, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.ns(host), program]);
        command
    }

    /// A tokio runtime whose threads live in host `host`'s namespace, so the sockets its tasks
    /// open are that host's. Run network work with `spawn`: the future given to `block_on`
    /// runs on the calling thread, in the caller's namespace.
    pub fn runtime_in(&self, host: usize) -> tokio::runtime::Runtime {
        let path = format!("/run/netns/{}", self.ns(host));
        // A thread moved into the namespace builds the runtime: threads inherit their
        // creator's namespaces, so every worker (and blocking thread they start) is there.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let ns = std::fs::File::open(&path).unwrap();
                    rustix::thread::move_into_link_name_space(
                        std::os::fd::AsFd::as_fd(&ns),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )
                    .unwrap_or_else(|e| panic!("setns {path}: {e}"));
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .unwrap()
                })
                .join()
                .unwrap()
        })
    }

    /// Limits host `host`'s outgoing rate to `rate` (a `tc` rate such as `20mbit`).
    pub fn shape_egress(&self, host: usize, rate: &str) {
        run(Command::new("tc").args([
            "-n",
            &self.ns(host),
            "qdisc",
            "replace",
            "dev",
            "eth0",
            "root",
            "tbf",
            "rate",
            rate,
            "burst",
            "32kb",
            "latency",
            "200ms",
        ]));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for host in 0..self.hosts {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(host)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.hub()])
            .output();
    }
}

fn ip(args: &[&str]) -> Output {
    run(Command::new("ip").args(args))
}

fn run(command: &mut Command) -> Output {
    let out = command.output().expect("run ip/tc");
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
