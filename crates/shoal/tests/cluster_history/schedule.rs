//! The fault schedule: a seeded shuffle of a menu of faults (kills, stalls, partitions, a
//! one-way drop, windows without a quorum), each with its own hold time and the pause before
//! it. The schedule is pure data from the seed; which hosts a fault hits is decided when it
//! begins, from the leader at that moment and the episode's own seed, by [`Fault::resolve`].

use std::fmt;
use std::time::Duration;

use shoal_swarm::Rng;

/// Which server nodes a fault hits: perhaps the leader, and some others chosen at random.
#[derive(Clone, Copy, Debug)]
pub struct Pick {
    /// The leader of the moment is among them.
    pub leader: bool,
    /// How many other nodes.
    pub others: usize,
}

impl Pick {
    const LEADER: Self = Self {
        leader: true,
        others: 0,
    };
    const ONE: Self = Self {
        leader: false,
        others: 1,
    };
}

/// One kind of fault.
#[derive(Clone, Debug)]
pub enum Fault {
    /// SIGKILL; restarted from its data directory when the fault heals.
    Kill(Pick),
    /// SIGSTOP; SIGCONT when the fault heals.
    Stall(Pick),
    /// Cut off from every other server node, both ways (clients still reach it).
    Isolate(Pick),
    /// Hears nothing from the other server nodes, while what it sends still goes out.
    Deaf(Pick),
    /// The server nodes split into groups of these sizes that cannot reach each other; with
    /// `leader_first`, the leader is in the first group.
    Split {
        /// The groups' sizes, summing to the number of server nodes.
        sizes: Vec<usize>,
        /// The leader of the moment is in the first group.
        leader_first: bool,
    },
}

/// One fault as it happened: the hosts it hit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// These hosts are killed.
    Kill(Vec<usize>),
    /// These hosts are stopped.
    Stall(Vec<usize>),
    /// Each host drops what comes from the listed hosts (`inbound`) and what goes to the
    /// listed hosts (`outbound`).
    Drop(Vec<Rules>),
}

/// The packets one host drops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// The host whose firewall holds the rules.
    pub host: usize,
    /// Packets from these hosts are dropped.
    pub inbound: Vec<usize>,
    /// Packets to these hosts are dropped.
    pub outbound: Vec<usize>,
}

impl Fault {
    /// Leaves a majority able to elect and commit (by itself: one fault at a time).
    pub fn keeps_quorum(&self, servers: usize) -> bool {
        let majority = servers / 2 + 1;
        match self {
            Self::Kill(p) | Self::Stall(p) => {
                servers - (usize::from(p.leader) + p.others) >= majority
            }
            Self::Isolate(_) | Self::Deaf(_) => true,
            Self::Split { sizes, .. } => sizes.iter().any(|s| *s >= majority),
        }
    }

    /// The hosts this fault hits among `servers` nodes when `leader` leads (`None`: no node
    /// names one; a random node stands in), chosen with `rng`.
    pub fn resolve(&self, servers: usize, leader: Option<usize>, rng: &mut Rng) -> Resolved {
        let leader = leader.unwrap_or_else(|| rng.below(servers));
        // Every node, the leader first, the others shuffled.
        let mut order: Vec<usize> = (0..servers).filter(|h| *h != leader).collect();
        shuffle(&mut order, rng);
        let pick = |p: &Pick| -> Vec<usize> {
            let mut hosts = Vec::new();
            if p.leader {
                hosts.push(leader);
            }
            hosts.extend(order.iter().take(p.others));
            hosts.sort_unstable();
            hosts
        };
        let everyone_but =
            |host: usize| -> Vec<usize> { (0..servers).filter(|h| *h != host).collect() };
        match self {
            Self::Kill(p) => Resolved::Kill(pick(p)),
            Self::Stall(p) => Resolved::Stall(pick(p)),
            Self::Isolate(p) => Resolved::Drop(
                pick(p)
                    .into_iter()
                    .map(|host| Rules {
                        host,
                        inbound: everyone_but(host),
                        outbound: everyone_but(host),
                    })
                    .collect(),
            ),
            Self::Deaf(p) => Resolved::Drop(
                pick(p)
                    .into_iter()
                    .map(|host| Rules {
                        host,
                        inbound: everyone_but(host),
                        outbound: Vec::new(),
                    })
                    .collect(),
            ),
            Self::Split {
                sizes,
                leader_first,
            } => {
                let mut hosts = if *leader_first {
                    std::iter::once(leader)
                        .chain(order.iter().copied())
                        .collect()
                } else {
                    let mut all: Vec<usize> = (0..servers).collect();
                    shuffle(&mut all, rng);
                    all
                };
                let mut groups = Vec::new();
                for size in sizes {
                    let rest = hosts.split_off(*size);
                    groups.push(std::mem::replace(&mut hosts, rest));
                }
                let mut rules = Vec::new();
                for (g, group) in groups.iter().enumerate() {
                    let others: Vec<usize> = groups
                        .iter()
                        .enumerate()
                        .filter(|(o, _)| *o != g)
                        .flat_map(|(_, hosts)| hosts.iter().copied())
                        .collect();
                    let mut others = others;
                    others.sort_unstable();
                    for host in group {
                        rules.push(Rules {
                            host: *host,
                            inbound: others.clone(),
                            outbound: others.clone(),
                        });
                    }
                }
                rules.sort_by_key(|r| r.host);
                Resolved::Drop(rules)
            }
        }
    }
}

/// One episode: a pause, then the fault held for a while, then healed.
#[derive(Clone, Debug)]
pub struct Episode {
    /// What goes wrong.
    pub fault: Fault,
    /// How long the cluster runs healthy before it (after the previous episode's recovery).
    pub pause: Duration,
    /// How long the fault lasts.
    pub hold: Duration,
    /// Seeds the choice of hosts when the fault begins.
    pub salt: u64,
}

/// The episodes of one run, in order.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The seed it was made from.
    pub seed: u64,
    /// The number of server nodes it is for.
    pub servers: usize,
    /// The episodes.
    pub episodes: Vec<Episode>,
}

impl Schedule {
    /// The schedule for `servers` nodes (3 or 5) from `seed`: every fault of the menu once,
    /// in a seeded order, with seeded pauses (0.5 to 2 s) and hold times (1.5 to 4 s).
    pub fn generate(seed: u64, servers: usize) -> Self {
        let majority = servers / 2 + 1;
        let minority = servers - majority;
        let mut menu = vec![
            Fault::Kill(Pick::LEADER),
            Fault::Kill(Pick::ONE),
            Fault::Stall(Pick::LEADER),
            Fault::Stall(Pick::ONE),
            Fault::Isolate(Pick::LEADER),
            Fault::Isolate(Pick::ONE),
            Fault::Deaf(Pick::LEADER),
            // No quorum: a majority killed, the leader among them.
            Fault::Kill(Pick {
                leader: true,
                others: majority - 1,
            }),
            // No quorum: no group holds a majority (2|2|1, or 1|1|1).
            Fault::Split {
                sizes: if servers == 5 {
                    vec![2, 2, 1]
                } else {
                    vec![1; servers]
                },
                leader_first: true,
            },
        ];
        if minority >= 2 {
            // Five nodes: the leader and a follower killed at once; a 2|3 split with the
            // leader in the minority, and one at random.
            menu.push(Fault::Kill(Pick {
                leader: true,
                others: minority - 1,
            }));
            menu.push(Fault::Split {
                sizes: vec![minority, majority],
                leader_first: true,
            });
            menu.push(Fault::Split {
                sizes: vec![minority, majority],
                leader_first: false,
            });
        }
        let mut rng = Rng::new(seed);
        shuffle(&mut menu, &mut rng);
        let episodes = menu
            .into_iter()
            .map(|fault| Episode {
                fault,
                pause: Duration::from_millis(500 + rng.below(1_500) as u64),
                hold: Duration::from_millis(1_500 + rng.below(2_500) as u64),
                salt: rng.next_u64(),
            })
            .collect();
        Self {
            seed,
            servers,
            episodes,
        }
    }
}

/// Fisher-Yates with `rng`.
fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.below(i + 1));
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pick = |p: &Pick| match (p.leader, p.others) {
            (true, 0) => "the leader".to_owned(),
            (true, n) => format!("the leader and {n} other(s)"),
            (false, n) => format!("{n} node(s)"),
        };
        match self {
            Self::Kill(p) => write!(f, "kill {}", pick(p)),
            Self::Stall(p) => write!(f, "stall {}", pick(p)),
            Self::Isolate(p) => write!(f, "isolate {}", pick(p)),
            Self::Deaf(p) => write!(f, "make {} deaf to the others", pick(p)),
            Self::Split {
                sizes,
                leader_first,
            } => {
                let sizes: Vec<String> = sizes.iter().map(ToString::to_string).collect();
                write!(f, "split {}", sizes.join("|"))?;
                if *leader_first {
                    f.write_str(", the leader in the first group")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "fault schedule for {} server nodes, seed {} (replay: SHOAL_HISTORY_SEED={}):",
            self.servers, self.seed, self.seed
        )?;
        for (i, e) in self.episodes.iter().enumerate() {
            let quorum = if e.fault.keeps_quorum(self.servers) {
                ""
            } else {
                " [no quorum]"
            };
            writeln!(
                f,
                "  #{i:<2} after {:>4} ms: {} for {} ms{quorum}",
                e.pause.as_millis(),
                e.fault,
                e.hold.as_millis()
            )?;
        }
        Ok(())
    }
}
