//! A linearizability checker for the control plane's history (Wing & Gong's search with
//! memoisation, as Knossos and Porcupine do it), on the one object model the site's control
//! plane needs here: a named thing (a bucket, an IAM user) that exists or not.
//!
//! Each name is checked on its own (linearizability is compositional). An operation whose reply
//! was lost or was a server error may have taken effect at any point after it was sent, or never.

use std::collections::HashSet;
use std::time::Duration;

/// What a request asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Creates the thing if absent; refuses (`Outcome::Exists`) if present (CreateBucket).
    Create,
    /// Creates or overwrites (AddUser); always `Outcome::Done`.
    Upsert,
    /// Removes the thing; `Outcome::Missing` if it was absent.
    Delete,
    /// Observes it: `Outcome::Present` or `Outcome::Missing`.
    Read,
}

/// What the reply said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Exists,
    Present,
    Missing,
    /// Lost or failed on the server: it may or may not have been applied.
    Unknown,
}

/// One request: sent at `start`, replied at `end` (`None` when the reply is unknown).
#[derive(Debug, Clone)]
pub struct Op {
    pub client: String,
    pub call: Call,
    pub outcome: Outcome,
    pub start: Duration,
    pub end: Option<Duration>,
}

impl Op {
    fn known(&self) -> bool {
        self.outcome != Outcome::Unknown
    }
}

/// Applies `call` to `present`; the outcome it produces and the state after.
fn step(present: bool, call: Call) -> (Outcome, bool) {
    match (call, present) {
        (Call::Create, false) => (Outcome::Done, true),
        (Call::Create, true) => (Outcome::Exists, true),
        (Call::Upsert, _) => (Outcome::Done, true),
        (Call::Delete, true) => (Outcome::Done, false),
        (Call::Delete, false) => (Outcome::Missing, false),
        (Call::Read, true) => (Outcome::Present, true),
        (Call::Read, false) => (Outcome::Missing, false),
    }
}

/// The verdict on one name's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order explains the replies.
    Violation,
    /// The search gave up after this many states (too many overlapping or unknown operations).
    Undecided(usize),
}

/// Checks one name's history, which starts with the thing absent. `budget` bounds the states
/// the search visits.
pub fn check(ops: &[Op], budget: usize) -> Verdict {
    let mut ops = ops.to_vec();
    ops.sort_by_key(|o| o.start);
    let n = ops.len();
    // An op whose reply is known must be placed; one with an unknown reply may be left out.
    let required: Vec<usize> = (0..n).filter(|&i| ops[i].known()).collect();
    let mut seen: HashSet<(Vec<u64>, bool)> = HashSet::new();
    let mut stack = vec![(vec![0u64; n.div_ceil(64)], false)];
    while let Some((done, present)) = stack.pop() {
        if required.iter().all(|&i| bit(&done, i)) {
            return Verdict::Linearizable;
        }
        if !seen.insert((done.clone(), present)) {
            continue;
        }
        if seen.len() > budget {
            return Verdict::Undecided(seen.len());
        }
        // The earliest reply among the ops not yet placed: whatever comes next must have been
        // sent before it.
        let horizon = (0..n)
            .filter(|&i| !bit(&done, i))
            .filter_map(|i| ops[i].end)
            .min();
        // Unknown ops of one kind are interchangeable except for when they were sent, and the
        // earliest sent can stand wherever a later one could: trying only it keeps the search
        // from enumerating every subset of them.
        let mut unknown_tried = [false; 4];
        for i in 0..n {
            if bit(&done, i) || horizon.is_some_and(|h| ops[i].start > h) {
                continue;
            }
            if !ops[i].known() {
                let kind = ops[i].call as usize;
                if std::mem::replace(&mut unknown_tried[kind], true) {
                    continue;
                }
            }
            let (outcome, after) = step(present, ops[i].call);
            if ops[i].known() && outcome != ops[i].outcome {
                continue;
            }
            let mut next = done.clone();
            next[i / 64] |= 1 << (i % 64);
            stack.push((next, after));
        }
    }
    Verdict::Violation
}

fn bit(set: &[u64], i: usize) -> bool {
    set[i / 64] & (1 << (i % 64)) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call: Call, outcome: Outcome, start: u64, end: Option<u64>) -> Op {
        Op {
            client: "c".into(),
            call,
            outcome,
            start: Duration::from_millis(start),
            end: end.map(Duration::from_millis),
        }
    }

    #[test]
    fn sequential_histories() {
        let ok = [
            op(Call::Create, Outcome::Done, 0, Some(10)),
            op(Call::Create, Outcome::Exists, 20, Some(30)),
            op(Call::Delete, Outcome::Done, 40, Some(50)),
            op(Call::Read, Outcome::Missing, 60, Some(60)),
        ];
        assert_eq!(check(&ok, 10_000), Verdict::Linearizable);

        // A create acknowledged before a read began, which then misses it: a stale read.
        let stale = [
            op(Call::Create, Outcome::Done, 0, Some(10)),
            op(Call::Read, Outcome::Missing, 20, Some(30)),
        ];
        assert_eq!(check(&stale, 10_000), Verdict::Violation);

        // Two creates that both succeed with no delete between them.
        let twice = [
            op(Call::Create, Outcome::Done, 0, Some(10)),
            op(Call::Create, Outcome::Done, 20, Some(30)),
        ];
        assert_eq!(check(&twice, 10_000), Verdict::Violation);
    }

    #[test]
    fn concurrent_ops_may_take_effect_in_either_order() {
        // The delete overlaps the create, so it may have come first (and missed).
        let h = [
            op(Call::Create, Outcome::Done, 0, Some(100)),
            op(Call::Delete, Outcome::Missing, 50, Some(60)),
            op(Call::Read, Outcome::Present, 200, Some(210)),
        ];
        assert_eq!(check(&h, 10_000), Verdict::Linearizable);
        // But not if the delete began after the create's reply.
        let h = [
            op(Call::Create, Outcome::Done, 0, Some(100)),
            op(Call::Delete, Outcome::Missing, 150, Some(160)),
        ];
        assert_eq!(check(&h, 10_000), Verdict::Violation);
    }

    #[test]
    fn unknown_replies_may_apply_late_or_never() {
        // A lost create explains a later "exists"...
        let h = [
            op(Call::Create, Outcome::Unknown, 0, None),
            op(Call::Create, Outcome::Exists, 500, Some(510)),
        ];
        assert_eq!(check(&h, 10_000), Verdict::Linearizable);
        // ...or may never have happened.
        let h = [
            op(Call::Create, Outcome::Unknown, 0, None),
            op(Call::Read, Outcome::Missing, 500, Some(510)),
            op(Call::Upsert, Outcome::Done, 600, Some(610)),
            op(Call::Delete, Outcome::Done, 700, Some(710)),
        ];
        assert_eq!(check(&h, 10_000), Verdict::Linearizable);
        // It cannot take effect before it was sent.
        let h = [
            op(Call::Read, Outcome::Present, 0, Some(10)),
            op(Call::Create, Outcome::Unknown, 20, None),
        ];
        assert_eq!(check(&h, 10_000), Verdict::Violation);
    }

    #[test]
    fn the_budget_bounds_the_search() {
        let h: Vec<Op> = (0..40)
            .map(|i| op(Call::Upsert, Outcome::Unknown, i, None))
            .chain([op(Call::Read, Outcome::Present, 0, Some(1_000))])
            .chain([op(Call::Delete, Outcome::Missing, 0, Some(1_000))])
            .chain([op(Call::Read, Outcome::Missing, 2_000, Some(2_001))])
            .chain([op(Call::Create, Outcome::Exists, 3_000, Some(3_001))])
            .collect();
        assert!(matches!(check(&h, 5), Verdict::Undecided(_)));
        assert_eq!(check(&h, 100_000), Verdict::Violation);
    }
}
