//! Transmit-limited broadcast queue (memberlist's TransmitLimitedQueue):
//! each broadcast is piggybacked at most `retransmit_mult * ceil(log10(N+1))`
//! times, the least transmitted first, and a newer broadcast about the same
//! node replaces (invalidates) the older one.

use bytes::Bytes;

/// What a broadcast is about: a newer one with the same key replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum BroadcastKey {
    /// Membership state of a node (alive/suspect/dead about that node).
    Node(String),
    /// A unique message (user events): never invalidated.
    Unique,
}

#[derive(Debug)]
struct Item {
    key: BroadcastKey,
    part: Bytes,
    transmits: usize,
    id: u64,
    notify: Option<u64>,
}

/// The queue. Items are few (one per changed node plus events), so a linear
/// scan and a sort per packet are cheap.
#[derive(Debug)]
pub(crate) struct BroadcastQueue {
    items: Vec<Item>,
    next_id: u64,
    max: usize,
    /// Notification ids of broadcasts that finished (sent enough times, or
    /// replaced); drained by the owner.
    finished: Vec<u64>,
    /// Broadcasts dropped because the queue was full.
    pub(crate) dropped: u64,
}

/// How many times a broadcast is sent in a cluster of `n` nodes.
pub(crate) fn retransmit_limit(mult: usize, n: usize) -> usize {
    let scale = ((n as f64) + 1.0).log10().ceil() as usize;
    mult * scale.max(1)
}

impl BroadcastQueue {
    pub(crate) fn new(max: usize) -> Self {
        BroadcastQueue {
            items: Vec::new(),
            next_id: 0,
            max,
            finished: Vec::new(),
            dropped: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Queues `part` (an encoded message part). `notify` is reported through
    /// [`take_finished`](Self::take_finished) once it is done.
    pub(crate) fn push(&mut self, key: BroadcastKey, part: Bytes, notify: Option<u64>) {
        if key != BroadcastKey::Unique {
            let finished = &mut self.finished;
            self.items.retain(|it| {
                let same = it.key == key;
                if same {
                    if let Some(n) = it.notify {
                        finished.push(n);
                    }
                }
                !same
            });
        }
        self.next_id += 1;
        self.items.push(Item {
            key,
            part,
            transmits: 0,
            id: self.next_id,
            notify,
        });
        if self.items.len() > self.max {
            // Drop the most transmitted, oldest first: they have had most of
            // their chances already.
            self.items
                .sort_by(|a, b| a.transmits.cmp(&b.transmits).then(b.id.cmp(&a.id)));
            while self.items.len() > self.max {
                if let Some(it) = self.items.pop() {
                    if let Some(n) = it.notify {
                        self.finished.push(n);
                    }
                    self.dropped += 1;
                }
            }
        }
    }

    /// Takes broadcasts whose cost (`overhead(len)` each) fits in `budget`
    /// bytes, fewest transmits first and newest first among equals; counts a
    /// transmit for each and retires those that reached `limit`.
    pub(crate) fn take(
        &mut self,
        budget: usize,
        limit: usize,
        overhead: impl Fn(usize) -> usize,
    ) -> Vec<Bytes> {
        if self.items.is_empty() {
            return Vec::new();
        }
        self.items
            .sort_by(|a, b| a.transmits.cmp(&b.transmits).then(b.id.cmp(&a.id)));
        let mut used = 0;
        let mut out = Vec::new();
        for it in self.items.iter_mut() {
            let cost = overhead(it.part.len());
            if used + cost > budget {
                continue;
            }
            used += cost;
            it.transmits += 1;
            out.push(it.part.clone());
        }
        let finished = &mut self.finished;
        self.items.retain(|it| {
            let done = it.transmits >= limit;
            if done {
                if let Some(n) = it.notify {
                    finished.push(n);
                }
            }
            !done
        });
        out
    }

    pub(crate) fn take_finished(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.finished)
    }

    /// Whether a broadcast with notification id `n` is still queued.
    pub(crate) fn contains_notify(&self, n: u64) -> bool {
        self.items.iter().any(|it| it.notify == Some(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: &str) -> BroadcastKey {
        BroadcastKey::Node(n.into())
    }

    #[test]
    fn limit_scales_with_log10() {
        assert_eq!(retransmit_limit(4, 1), 4);
        assert_eq!(retransmit_limit(4, 9), 4);
        assert_eq!(retransmit_limit(4, 10), 8);
        assert_eq!(retransmit_limit(4, 32), 8);
        assert_eq!(retransmit_limit(4, 100), 12);
        assert_eq!(retransmit_limit(3, 0), 3);
    }

    #[test]
    fn fewest_transmits_first_then_newest() {
        let mut q = BroadcastQueue::new(100);
        q.push(node("a"), Bytes::from_static(b"a"), None);
        q.push(node("b"), Bytes::from_static(b"b"), None);
        // Budget for one: the newest (b) goes first.
        assert_eq!(q.take(1, 10, |l| l), vec![Bytes::from_static(b"b")]);
        // Now a has 0 transmits, b has 1: a first.
        assert_eq!(q.take(1, 10, |l| l), vec![Bytes::from_static(b"a")]);
        q.push(node("c"), Bytes::from_static(b"c"), None);
        assert_eq!(
            q.take(10, 10, |l| l),
            vec![
                Bytes::from_static(b"c"),
                Bytes::from_static(b"b"),
                Bytes::from_static(b"a")
            ]
        );
    }

    #[test]
    fn invalidation_and_limit_and_notify() {
        let mut q = BroadcastQueue::new(100);
        q.push(node("a"), Bytes::from_static(b"old"), Some(1));
        q.push(node("a"), Bytes::from_static(b"new"), Some(2));
        assert_eq!(q.len(), 1);
        assert_eq!(q.take_finished(), vec![1], "replaced broadcast is finished");
        q.push(BroadcastKey::Unique, Bytes::from_static(b"e1"), None);
        q.push(BroadcastKey::Unique, Bytes::from_static(b"e2"), None);
        assert_eq!(q.len(), 3, "unique broadcasts never replace each other");
        assert!(q.contains_notify(2));
        for _ in 0..2 {
            assert_eq!(q.take(100, 2, |l| l).len(), 3);
        }
        assert_eq!(q.len(), 0, "retired after reaching the limit");
        assert_eq!(q.take_finished(), vec![2]);
        assert!(q.take(100, 2, |l| l).is_empty());
    }

    #[test]
    fn bounded_drops_most_transmitted() {
        let mut q = BroadcastQueue::new(2);
        q.push(node("a"), Bytes::from_static(b"a"), None);
        q.take(100, 10, |l| l);
        q.push(node("b"), Bytes::from_static(b"b"), None);
        q.push(node("c"), Bytes::from_static(b"c"), None);
        assert_eq!(q.len(), 2);
        assert_eq!(q.dropped, 1);
        let got = q.take(100, 10, |l| l);
        assert!(!got.contains(&Bytes::from_static(b"a")));
    }
}
