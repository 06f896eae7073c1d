//! One agent's recent snapshots, kept as the protobuf bytes that arrived, each but the newest
//! stored as its difference from the next newer one.
//!
//! Consecutive snapshots of an agent are the same message with a few counters and the scrape
//! time changed: XORed against each other, they are mostly zero bytes. Keeping the zero runs'
//! lengths and the changed bytes takes about a third of the message (20 components: ~0.7 KiB
//! of ~2 KiB), which at `--history 10` is most of an agent's history. Reading goes from the
//! newest (whole) entry backwards; only GetAgent reads, so the cost falls there.

use std::collections::VecDeque;
use std::sync::Arc;

use flumewatch_proto::model::snapshot::Snapshot;
use flumewatch_proto::v1 as pb;
use prost::Message;

use super::HistoryEntry;

#[derive(Debug, Clone)]
enum Form {
    /// The message itself (the newest one shared with the agent's `Latest`).
    Whole(Arc<[u8]>),
    /// The message as a difference from the next newer entry's message (see `diff`).
    Diff(Box<[u8]>),
}

#[derive(Debug, Clone)]
struct Stored {
    seq: u64,
    form: Form,
}

/// Oldest first; the newest is always whole.
#[derive(Debug, Clone, Default)]
pub struct History {
    entries: VecDeque<Stored>,
}

impl History {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sequence numbers, oldest first.
    pub fn seqs(&self) -> impl DoubleEndedIterator<Item = u64> + '_ {
        self.entries.iter().map(|e| e.seq)
    }

    /// Appends the newest entry, dropping the oldest beyond `limit`.
    pub fn push(&mut self, entry: HistoryEntry, limit: usize) {
        if limit == 0 {
            return;
        }
        while self.entries.len() >= limit {
            // The oldest is a difference from its successor: nothing depends on it.
            self.entries.pop_front();
        }
        let seq = entry.seq;
        let bytes = entry.into_bytes();
        if let Some(previous) = self.entries.back_mut() {
            if let Form::Whole(whole) = &previous.form {
                let diff = diff(whole, &bytes);
                // A reload that renamed everything differs in every byte: keep it whole.
                if diff.len() < whole.len() {
                    previous.form = Form::Diff(diff.into_boxed_slice());
                }
            }
        }
        self.entries.push_back(Stored {
            seq,
            form: Form::Whole(bytes),
        });
    }

    /// Every entry's message, oldest first.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::with_capacity(self.entries.len());
        let mut newer: Option<Vec<u8>> = None;
        for stored in self.entries.iter().rev() {
            let message = match (&stored.form, &newer) {
                (Form::Whole(bytes), _) => bytes.to_vec(),
                (Form::Diff(diff), Some(newer)) => undiff(diff, newer),
                // Cannot happen (the newest is whole); an empty message decodes to nothing.
                (Form::Diff(_), None) => Vec::new(),
            };
            newer = Some(message.clone());
            out.push(message);
        }
        out.reverse();
        out
    }

    /// The newest `n` entries as wire messages, oldest first.
    pub fn protos(&self, n: usize) -> Vec<pb::Snapshot> {
        let messages = self.messages();
        let skip = messages.len().saturating_sub(n);
        messages
            .iter()
            .skip(skip)
            // Our own encoding (or the sidecar's, checked on arrival): it decodes.
            .map(|m| pb::Snapshot::decode(m.as_slice()).unwrap_or_default())
            .collect()
    }

    /// Every entry as a typed snapshot, oldest first (unreadable ones left out).
    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.protos(usize::MAX)
            .into_iter()
            .filter_map(|p| Snapshot::try_from(p).ok())
            .collect()
    }

    /// Bytes held (entries only), for benchmarks and tests.
    pub fn stored_bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|e| match &e.form {
                Form::Whole(b) => b.len(),
                Form::Diff(b) => b.len(),
            })
            .sum()
    }
}

fn put_varint(value: usize, out: &mut Vec<u8>) {
    prost::encoding::encode_varint(value as u64, out);
}

fn get_varint(input: &mut &[u8]) -> usize {
    prost::encoding::decode_varint(input).unwrap_or(0) as usize
}

/// `older` as a difference from `newer`. The two are aligned at their ends (the components
/// come last and keep their sizes; the scrape time near the start is what changes length):
/// the part of `older` before the common tail is kept as is, the tail as runs of
/// (unchanged bytes, changed bytes XORed with `newer`'s).
///
/// Layout: len(head) head, where the tail starts in `newer`, then repeated [zero run]
/// [literal length][literal bytes].
fn diff(older: &[u8], newer: &[u8]) -> Vec<u8> {
    let tail = older.len().min(newer.len());
    let head_len = older.len() - tail;
    let (head, old_tail) = older.split_at(head_len);
    let new_tail = &newer[newer.len() - tail..];
    let mut out = Vec::with_capacity(older.len() / 3 + 16);
    put_varint(head_len, &mut out);
    out.extend_from_slice(head);
    put_varint(newer.len() - tail, &mut out);
    let mut i = 0;
    while i < tail {
        let zeros_from = i;
        // Most of the tail is unchanged: skip it a word at a time.
        while i + 8 <= tail && old_tail[i..i + 8] == new_tail[i..i + 8] {
            i += 8;
        }
        while i < tail && old_tail[i] == new_tail[i] {
            i += 1;
        }
        let literal_from = i;
        // A changed stretch ends at two equal bytes in a row (one equal byte inside a changed
        // number costs less as a literal than as a new run).
        while i < tail
            && (old_tail[i] != new_tail[i] || (i + 1 < tail && old_tail[i + 1] != new_tail[i + 1]))
        {
            i += 1;
        }
        put_varint(literal_from - zeros_from, &mut out);
        put_varint(i - literal_from, &mut out);
        out.extend(
            old_tail[literal_from..i]
                .iter()
                .zip(&new_tail[literal_from..i])
                .map(|(a, b)| a ^ b),
        );
    }
    out
}

/// The older message back from its difference and the newer message.
fn undiff(diff: &[u8], newer: &[u8]) -> Vec<u8> {
    let mut input = diff;
    let head_len = get_varint(&mut input).min(input.len());
    let (head, mut runs) = input.split_at(head_len);
    let mut position = get_varint(&mut runs);
    let mut out = Vec::with_capacity(head_len + newer.len());
    out.extend_from_slice(head);
    while !runs.is_empty() {
        let zeros = get_varint(&mut runs);
        let literal = get_varint(&mut runs).min(runs.len());
        out.extend_from_slice(newer.get(position..position + zeros).unwrap_or_default());
        position += zeros;
        let (bytes, rest) = runs.split_at(literal);
        let against = newer.get(position..position + literal).unwrap_or_default();
        out.extend(bytes.iter().zip(against).map(|(a, b)| a ^ b));
        position += literal;
        runs = rest;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(seq: u64, bytes: &[u8]) -> HistoryEntry {
        HistoryEntry::from_encoded(seq, bytes)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn every_entry_reads_back_as_it_was_pushed(
            first in proptest::collection::vec(any::<u8>(), 0..300),
            edits in proptest::collection::vec(
                (any::<prop::sample::Index>(), any::<u8>(), 0usize..3, any::<bool>()),
                1..12,
            ),
            limit in 1usize..6,
        ) {
            // Each next message: the previous one with a byte changed, and sometimes a byte
            // inserted or removed near the start (as a scrape time changing length does).
            let mut messages = vec![first];
            for (at, value, shape, near_start) in edits {
                let mut next = messages.last().unwrap().clone();
                if !next.is_empty() {
                    let i = if near_start { at.index(next.len().min(8)) } else { at.index(next.len()) };
                    match shape {
                        0 => next[i] = value,
                        1 => next.insert(i, value),
                        _ => drop(next.remove(i)),
                    }
                } else {
                    next.push(value);
                }
                messages.push(next);
            }
            let mut history = History::default();
            for (seq, m) in messages.iter().enumerate() {
                history.push(entry(seq as u64 + 1, m), limit);
            }
            let kept = messages.len().min(limit);
            let expected = messages[messages.len() - kept..].to_vec();
            prop_assert_eq!(history.messages(), expected);
            let seqs: Vec<u64> = history.seqs().collect();
            prop_assert_eq!(seqs.len(), kept);
            prop_assert_eq!(*seqs.last().unwrap(), messages.len() as u64);
        }
    }

    #[test]
    fn similar_snapshots_take_a_fraction_of_their_size() {
        let message = |seq: u64, nanos: i32| {
            pb::Snapshot {
                seq,
                agent: "a1".into(),
                scraped_at: Some(prost_types::Timestamp {
                    seconds: 1_795_600_000 + seq as i64,
                    nanos,
                }),
                outcome: Some(pb::ScrapeOutcome {
                    status: 1,
                    ..Default::default()
                }),
                components: (0..20)
                    .map(|i| pb::Component {
                        kind: 3,
                        kind_name: "SINK".into(),
                        name: format!("sink-{i}"),
                        counters: (1..12)
                            .map(|c| pb::CounterValue {
                                counter: c,
                                value: 1_000_000 + seq * 37 * c as u64,
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }
            .encode_to_vec()
        };
        let mut history = History::default();
        let mut whole = 0;
        for seq in 1..=10 {
            // Nanoseconds alternate between 4- and 5-byte varints, as real scrape times do.
            let m = message(seq, if seq % 2 == 0 { 300_000_000 } else { 3_000_000 });
            whole += m.len();
            history.push(entry(seq, &m), 10);
        }
        let stored = history.stored_bytes();
        println!("10 snapshots of 20 components: {whole} bytes whole, {stored} stored");
        assert!(stored * 2 < whole, "{stored} of {whole}");
        let back = history.protos(10);
        assert_eq!(back.len(), 10);
        assert_eq!(
            back[3],
            pb::Snapshot::decode(message(4, 300_000_000).as_slice()).unwrap()
        );
    }
}
