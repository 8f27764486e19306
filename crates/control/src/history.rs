//! A checker for histories of bind-once registers: clients bind `name:tag` keys to contents and
//! read them back through a replicated control plane, and [`check`] says whether what they saw
//! is consistent with one linearizable register per key that can be bound once.
//!
//! The input is plain data, so a deterministic simulation and a test of real processes can both
//! use it: every operation with the time its client invoked it and the time it completed (any
//! monotonic clock, in any unit, as long as all clients share it), what it returned or that its
//! outcome is unknown (a timeout, a crash, a lost reply), and the state every node holds at the
//! end. The checks:
//!
//! - **Bound once**: a key is never seen holding two contents, across every acknowledged bind,
//!   every refusal (which names the holder), every read and every node's final state.
//! - **No acknowledged bind lost**: what a bind's acknowledgement, a refusal or a read showed a
//!   key holding, every final state holds, and every read invoked after that operation
//!   completed sees.
//! - **No read from the future**: a read (or a refusal, or a final state) shows a content only
//!   if a bind of that content to that key had been invoked before it completed.
//!
//! Together these are linearizability for registers that go from empty to one value and never
//! change, checked in O(ops × reads per key) rather than by searching orders.

use std::collections::BTreeMap;
use std::fmt;

/// A content, as its 32-byte id.
pub type Content = [u8; 32];

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Which client issued it (for messages only).
    pub client: u64,
    /// When the client invoked it.
    pub invoked: u64,
    /// When the client saw it complete; for an unknown outcome, when it gave up.
    pub completed: u64,
    /// The `name:tag` it bound or read.
    pub key: String,
    /// What it was, and what it returned.
    pub kind: OpKind,
}

/// What an [`Op`] did and what came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Bind `key` to `content`.
    Bind {
        /// The content bound.
        content: Content,
        /// What came back.
        result: BindResult,
    },
    /// Read `key`, linearizably.
    Read {
        /// What it held (`None`: unbound); `None` at the outer level: the outcome is unknown.
        result: Option<Option<Content>>,
    },
}

/// What a bind returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindResult {
    /// Acknowledged: the key holds this bind's content (bound now or already).
    Bound,
    /// Refused: the key holds `holder`, another content.
    Refused {
        /// The content the key holds.
        holder: Content,
    },
    /// No answer: it may or may not have been applied.
    Unknown,
}

/// The state one node holds at the end: key -> content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FinalState {
    /// The node's name, for messages.
    pub node: String,
    /// Every binding it holds.
    pub bindings: BTreeMap<String, Content>,
}

/// What kind of rule a history broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViolationKind {
    /// A key seen holding two contents.
    BoundTwice,
    /// An acknowledged binding missing from a final state.
    Lost,
    /// A read that missed a binding an operation that completed before it began had shown.
    StaleRead,
    /// A binding shown before any bind of it had been invoked.
    FromNowhere,
}

/// A broken rule, with a message naming the operations involved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Violation {
    /// Which rule.
    pub kind: ViolationKind,
    /// What happened, naming operations as `op #index (client, what, [invoked, completed])`.
    pub message: String,
}

/// Where a binding was shown: an operation (by index) or a final state.
#[derive(Clone, Copy)]
enum Source {
    Op(usize),
    Final(usize),
}

/// One observation that `key` holds `content`, established by `at` (completion time).
struct Fact {
    content: Content,
    at: u64,
    source: Source,
}

struct Describe<'a> {
    ops: &'a [Op],
    finals: &'a [FinalState],
}

impl Describe<'_> {
    fn op(&self, i: usize) -> String {
        format!("op #{i} ({})", self.ops[i])
    }

    fn source(&self, source: Source) -> String {
        match source {
            Source::Op(i) => self.op(i),
            Source::Final(n) => format!("the final state of {}", self.finals[n].node),
        }
    }
}

/// `client C, what it did and saw, [invoked, completed]`, e.g.
/// `client 2, bind app:1 -> 0a1b2c3d: bound, [10, 14]`.
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {}, ", self.client)?;
        match self.kind {
            OpKind::Bind { content, result } => {
                write!(f, "bind {} -> {}: ", self.key, short(&content))?;
                match result {
                    BindResult::Bound => f.write_str("bound")?,
                    BindResult::Refused { holder } => {
                        write!(f, "refused, holds {}", short(&holder))?
                    }
                    BindResult::Unknown => f.write_str("unknown")?,
                }
            }
            OpKind::Read { result } => {
                write!(f, "read {}: ", self.key)?;
                match result {
                    Some(Some(c)) => f.write_str(&short(&c))?,
                    Some(None) => f.write_str("unbound")?,
                    None => f.write_str("unknown")?,
                }
            }
        }
        write!(f, ", [{}, {}]", self.invoked, self.completed)
    }
}

fn short(content: &Content) -> String {
    content[..4].iter().map(|b| format!("{b:02x}")).collect()
}

fn violation(kind: ViolationKind, message: String) -> Violation {
    Violation { kind, message }
}

/// Checks `ops` and the nodes' `finals` against the rules in the module doc.
///
/// # Errors
///
/// The first [`Violation`] found, naming the operations (or final states) that contradict each
/// other.
pub fn check(ops: &[Op], finals: &[FinalState]) -> Result<(), Violation> {
    let describe = Describe { ops, finals };
    // Every observation, by key.
    let mut facts: BTreeMap<&str, Vec<Fact>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        let content = match op.kind {
            OpKind::Bind {
                content,
                result: BindResult::Bound,
            } => Some(content),
            OpKind::Bind {
                result: BindResult::Refused { holder },
                ..
            } => Some(holder),
            OpKind::Read {
                result: Some(Some(content)),
            } => Some(content),
            _ => None,
        };
        if let Some(content) = content {
            facts.entry(&op.key).or_default().push(Fact {
                content,
                at: op.completed,
                source: Source::Op(i),
            });
        }
    }
    for (n, state) in finals.iter().enumerate() {
        for (key, content) in &state.bindings {
            facts.entry(key).or_default().push(Fact {
                content: *content,
                at: u64::MAX,
                source: Source::Final(n),
            });
        }
    }

    for (key, seen) in &facts {
        // Bound once.
        if let Some(first) = seen.first()
            && let Some(other) = seen.iter().find(|f| f.content != first.content)
        {
            return Err(violation(
                ViolationKind::BoundTwice,
                format!(
                    "{key} holds {} by {} but {} by {}",
                    short(&first.content),
                    describe.source(first.source),
                    short(&other.content),
                    describe.source(other.source)
                ),
            ));
        }
        // From nowhere: some bind of this content was invoked before the fact was established.
        for fact in seen {
            let invoked = ops.iter().any(|op| {
                op.key == *key
                    && op.invoked <= fact.at
                    && matches!(op.kind, OpKind::Bind { content, .. } if content == fact.content)
            });
            if !invoked {
                return Err(violation(
                    ViolationKind::FromNowhere,
                    format!(
                        "{} shows {key} holding {}, but no bind of it had been invoked by then",
                        describe.source(fact.source),
                        short(&fact.content)
                    ),
                ));
            }
        }
    }

    // Lost: every final state holds every binding an operation showed.
    for (key, seen) in &facts {
        let Some(fact) = seen.iter().find(|f| matches!(f.source, Source::Op(_))) else {
            continue;
        };
        for state in finals {
            if !state.bindings.contains_key(*key) {
                return Err(violation(
                    ViolationKind::Lost,
                    format!(
                        "{} shows {key} holding {}, but the final state of {} does not hold {key}",
                        describe.source(fact.source),
                        short(&fact.content),
                        state.node
                    ),
                ));
            }
        }
    }

    // Stale reads: a read invoked after an observation completed sees it.
    for (i, op) in ops.iter().enumerate() {
        let OpKind::Read { result: Some(None) } = op.kind else {
            continue;
        };
        let earlier = facts.get(op.key.as_str()).and_then(|seen| {
            seen.iter()
                .filter(|f| matches!(f.source, Source::Op(_)) && f.at < op.invoked)
                .min_by_key(|f| f.at)
        });
        if let Some(fact) = earlier {
            return Err(violation(
                ViolationKind::StaleRead,
                format!(
                    "{} found {} unbound, but {} had shown it holding {} before the read began",
                    describe.op(i),
                    op.key,
                    describe.source(fact.source),
                    short(&fact.content)
                ),
            ));
        }
    }
    Ok(())
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BoundTwice => "bound twice",
            Self::Lost => "acknowledged bind lost",
            Self::StaleRead => "stale read",
            Self::FromNowhere => "read from nowhere",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Content = [0xaa; 32];
    const B: Content = [0xbb; 32];

    fn bind(client: u64, at: (u64, u64), key: &str, content: Content, result: BindResult) -> Op {
        Op {
            client,
            invoked: at.0,
            completed: at.1,
            key: key.to_owned(),
            kind: OpKind::Bind { content, result },
        }
    }

    fn read(client: u64, at: (u64, u64), key: &str, result: Option<Option<Content>>) -> Op {
        Op {
            client,
            invoked: at.0,
            completed: at.1,
            key: key.to_owned(),
            kind: OpKind::Read { result },
        }
    }

    fn fin(node: &str, bindings: &[(&str, Content)]) -> FinalState {
        FinalState {
            node: node.to_owned(),
            bindings: bindings
                .iter()
                .map(|(k, c)| ((*k).to_owned(), *c))
                .collect(),
        }
    }

    fn kind(result: Result<(), Violation>) -> Option<ViolationKind> {
        result.err().map(|v| v.kind)
    }

    #[test]
    fn a_race_with_one_winner_and_consistent_reads_passes() {
        let ops = [
            bind(1, (0, 10), "app:1", A, BindResult::Bound),
            bind(2, (1, 12), "app:1", B, BindResult::Refused { holder: A }),
            // Concurrent with the winning bind: may see either.
            read(3, (2, 5), "app:1", Some(None)),
            read(3, (6, 8), "app:1", Some(Some(A))),
            read(4, (13, 20), "app:1", Some(Some(A))),
            bind(5, (14, 30), "app:2", B, BindResult::Unknown),
            read(6, (15, 16), "app:2", Some(None)),
            read(6, (31, 32), "app:2", Some(Some(B))),
            read(6, (33, 34), "app:3", None),
        ];
        let finals = [
            fin("n1", &[("app:1", A), ("app:2", B)]),
            fin("n2", &[("app:1", A), ("app:2", B)]),
        ];
        assert_eq!(check(&ops, &finals), Ok(()));
    }

    #[test]
    fn an_unknown_bind_may_be_lost() {
        let ops = [bind(1, (0, 10), "app:1", A, BindResult::Unknown)];
        assert_eq!(check(&ops, &[fin("n1", &[])]), Ok(()));
    }

    #[test]
    fn a_lost_acknowledged_bind_is_caught() {
        let ops = [bind(1, (0, 10), "app:1", A, BindResult::Bound)];
        let finals = [fin("n1", &[("app:1", A)]), fin("n2", &[])];
        let v = check(&ops, &finals).unwrap_err();
        assert_eq!(v.kind, ViolationKind::Lost);
        assert!(v.message.contains("op #0"), "{}", v.message);
        assert!(v.message.contains("n2"), "{}", v.message);
    }

    #[test]
    fn a_double_bind_is_caught_across_acks_reads_and_final_states() {
        let acks = [
            bind(1, (0, 10), "app:1", A, BindResult::Bound),
            bind(2, (0, 11), "app:1", B, BindResult::Bound),
        ];
        let v = check(&acks, &[]).unwrap_err();
        assert_eq!(v.kind, ViolationKind::BoundTwice);
        assert!(
            v.message.contains("op #0") && v.message.contains("op #1"),
            "{}",
            v.message
        );

        let read_other = [
            bind(1, (0, 10), "app:1", A, BindResult::Bound),
            bind(2, (0, 1), "app:1", B, BindResult::Unknown),
            read(3, (20, 21), "app:1", Some(Some(B))),
        ];
        assert_eq!(
            kind(check(&read_other, &[])),
            Some(ViolationKind::BoundTwice)
        );

        let final_other = [bind(1, (0, 10), "app:1", A, BindResult::Bound)];
        let finals = [fin("n1", &[("app:1", B)])];
        assert_eq!(
            kind(check(&final_other, &finals)),
            Some(ViolationKind::BoundTwice)
        );

        let refused_by_self = [
            bind(1, (0, 10), "app:1", A, BindResult::Bound),
            bind(2, (11, 12), "app:1", B, BindResult::Refused { holder: B }),
        ];
        assert_eq!(
            kind(check(&refused_by_self, &[])),
            Some(ViolationKind::BoundTwice)
        );
    }

    #[test]
    fn a_read_missing_an_earlier_ack_is_stale() {
        let ops = [
            bind(1, (0, 10), "app:1", A, BindResult::Bound),
            read(2, (11, 12), "app:1", Some(None)),
        ];
        let v = check(&ops, &[fin("n1", &[("app:1", A)])]).unwrap_err();
        assert_eq!(v.kind, ViolationKind::StaleRead);
        assert!(
            v.message.contains("op #1") && v.message.contains("op #0"),
            "{}",
            v.message
        );
    }

    #[test]
    fn a_read_missing_what_an_earlier_read_saw_is_stale() {
        let ops = [
            bind(1, (0, 100), "app:1", A, BindResult::Unknown),
            read(2, (10, 20), "app:1", Some(Some(A))),
            read(3, (21, 22), "app:1", Some(None)),
        ];
        let finals = [fin("n1", &[("app:1", A)])];
        assert_eq!(kind(check(&ops, &finals)), Some(ViolationKind::StaleRead));
        // Overlapping reads may disagree while the bind is in flight.
        let overlapping = [
            bind(1, (0, 100), "app:1", A, BindResult::Unknown),
            read(2, (10, 20), "app:1", Some(Some(A))),
            read(3, (15, 22), "app:1", Some(None)),
        ];
        assert_eq!(check(&overlapping, &finals), Ok(()));
    }

    #[test]
    fn a_read_of_a_bind_not_yet_invoked_is_from_nowhere() {
        let ops = [
            read(2, (0, 5), "app:1", Some(Some(A))),
            bind(1, (6, 10), "app:1", A, BindResult::Bound),
        ];
        let v = check(&ops, &[]).unwrap_err();
        assert_eq!(v.kind, ViolationKind::FromNowhere);
        assert!(v.message.contains("op #0"), "{}", v.message);
        let never_bound = [fin("n1", &[("app:9", B)])];
        assert_eq!(
            kind(check(&[], &never_bound)),
            Some(ViolationKind::FromNowhere)
        );
    }

    #[test]
    fn a_lost_read_observation_is_caught_in_the_final_state() {
        let ops = [
            bind(1, (0, 100), "app:1", A, BindResult::Unknown),
            read(2, (10, 20), "app:1", Some(Some(A))),
        ];
        assert_eq!(
            kind(check(&ops, &[fin("n1", &[])])),
            Some(ViolationKind::Lost)
        );
    }
}
