//! Range-based set reconciliation over (record id, heads).
//!
//! Each side holds its records sorted by id, each with a 128-bit hash of (id, heads). A range's
//! fingerprint is the wrapping sum of its item hashes plus its count. The initiator sends the
//! fingerprint of the whole id space; a side whose fingerprint for a range differs splits it
//! into [`BRANCHES`] sub-ranges by its own items and answers with their fingerprints, or, once a
//! range holds at most [`LEAF`] items, lists them. The other side answers a list with just the
//! differences. Only ranges that differ are ever recursed into, so two replicas of `n` records
//! that differ in `d` exchange `O(d · log n)` fingerprints and the `d` differing items.

use std::collections::BTreeMap;

use automerge::ChangeHash;
use sha2::{Digest, Sha256};

use super::message::{Item, Range};
use crate::model::RecordId;

/// Sub-ranges a differing range is split into.
pub const BRANCHES: usize = 16;
/// Ranges with at most this many items are listed instead of split.
pub const LEAF: usize = 16;

/// The other side's state of a record that differs: its heads, or `None` if it lacks it.
pub type Differences = BTreeMap<RecordId, Option<Vec<ChangeHash>>>;

#[derive(Debug, Clone)]
struct Entry {
    id: u128,
    hash: u128,
    heads: Vec<ChangeHash>,
}

/// One side's records, sorted by id.
#[derive(Debug, Clone, Default)]
pub struct ItemSet {
    entries: Vec<Entry>,
}

fn item_hash(id: u128, heads: &[ChangeHash]) -> u128 {
    let mut hasher = Sha256::new();
    hasher.update(id.to_be_bytes());
    for h in heads {
        hasher.update(h.0);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}

pub(crate) fn to_raw(heads: &[ChangeHash]) -> Vec<[u8; 32]> {
    heads.iter().map(|h| h.0).collect()
}

pub(crate) fn from_raw(heads: &[[u8; 32]]) -> Vec<ChangeHash> {
    heads.iter().map(|h| ChangeHash(*h)).collect()
}

impl ItemSet {
    /// Builds the set from (id, heads) pairs in any order.
    pub fn new(records: Vec<(RecordId, Vec<ChangeHash>)>) -> Self {
        let mut entries: Vec<Entry> = records
            .into_iter()
            .map(|(id, mut heads)| {
                heads.sort();
                let id = id.as_u128();
                Entry {
                    id,
                    hash: item_hash(id, &heads),
                    heads,
                }
            })
            .collect();
        entries.sort_by_key(|e| e.id);
        Self { entries }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn slice(&self, lower: u128, upper: u128) -> &[Entry] {
        let start = self.entries.partition_point(|e| e.id < lower);
        let end = self.entries.partition_point(|e| e.id < upper);
        &self.entries[start..end.max(start)]
    }

    fn fingerprint(entries: &[Entry]) -> (u128, u64) {
        let sum = entries
            .iter()
            .fold(0u128, |acc, e| acc.wrapping_add(e.hash));
        (sum, entries.len() as u64)
    }

    fn item(entry: &Entry) -> Item {
        Item {
            id: RecordId::from_u128(entry.id),
            heads: to_raw(&entry.heads),
        }
    }

    fn describe(entries: &[Entry], lower: u128, upper: u128) -> Range {
        if entries.len() <= LEAF {
            Range::Items {
                lower,
                upper,
                items: entries.iter().map(Self::item).collect(),
            }
        } else {
            let (fingerprint, count) = Self::fingerprint(entries);
            Range::Fingerprint {
                lower,
                upper,
                fingerprint,
                count,
            }
        }
    }

    /// The initiator's opening message: the whole id space.
    pub fn opening(&self) -> Vec<Range> {
        vec![Self::describe(&self.entries, 0, u128::MAX)]
    }

    /// Answers one round of ranges, recording what differs in `diffs`.
    pub fn answer(&self, incoming: &[Range], diffs: &mut Differences) -> Vec<Range> {
        let mut out = Vec::new();
        for range in incoming {
            match range {
                Range::Fingerprint {
                    lower,
                    upper,
                    fingerprint,
                    count,
                } => {
                    let mine = self.slice(*lower, *upper);
                    if Self::fingerprint(mine) == (*fingerprint, *count) {
                        continue;
                    }
                    if mine.len() <= LEAF {
                        out.push(Self::describe(mine, *lower, *upper));
                        continue;
                    }
                    let step = mine.len().div_ceil(BRANCHES);
                    let mut start = *lower;
                    for (i, chunk) in mine.chunks(step).enumerate() {
                        let end = match mine.get((i + 1) * step) {
                            Some(next) => next.id,
                            None => *upper,
                        };
                        out.push(Self::describe(chunk, start, end));
                        start = end;
                    }
                }
                Range::Items {
                    lower,
                    upper,
                    items,
                } => {
                    let mine = self.slice(*lower, *upper);
                    let mut theirs: BTreeMap<u128, Vec<ChangeHash>> = items
                        .iter()
                        .map(|i| {
                            let mut heads = from_raw(&i.heads);
                            heads.sort();
                            (i.id.as_u128(), heads)
                        })
                        .collect();
                    let mut differing = Vec::new();
                    for entry in mine {
                        match theirs.remove(&entry.id) {
                            Some(heads) if heads == entry.heads => {}
                            other => {
                                diffs.insert(RecordId::from_u128(entry.id), other);
                                differing.push(Self::item(entry));
                            }
                        }
                    }
                    let absent: Vec<RecordId> = theirs
                        .into_iter()
                        .map(|(id, heads)| {
                            let id = RecordId::from_u128(id);
                            diffs.insert(id, Some(heads));
                            id
                        })
                        .collect();
                    if !differing.is_empty() || !absent.is_empty() {
                        out.push(Range::Differences {
                            items: differing,
                            absent,
                        });
                    }
                }
                Range::Differences { items, absent } => {
                    for item in items {
                        let mut heads = from_raw(&item.heads);
                        heads.sort();
                        diffs.insert(item.id, Some(heads));
                    }
                    for id in absent {
                        diffs.insert(*id, None);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[(u128, u8)]) -> ItemSet {
        ItemSet::new(
            ids.iter()
                .map(|(id, h)| (RecordId::from_u128(*id), vec![ChangeHash([*h; 32])]))
                .collect(),
        )
    }

    /// Runs the exchange to the end; returns both sides' differences and the rounds it took.
    fn run(a: &ItemSet, b: &ItemSet) -> (Differences, Differences, usize) {
        let (mut da, mut db) = (Differences::new(), Differences::new());
        let mut msg = a.opening();
        let mut rounds = 0;
        while !msg.is_empty() {
            rounds += 1;
            let reply = b.answer(&msg, &mut db);
            msg = a.answer(&reply, &mut da);
        }
        (da, db, rounds)
    }

    #[test]
    fn finds_exactly_the_differences() {
        let mut left: Vec<(u128, u8)> = (0..5000).map(|i| (i * 7919, 1)).collect();
        let mut right = left.clone();
        right[10].1 = 2; // changed on the right
        right.remove(20); // only on the left
        right.push((1, 3)); // only on the right
        left[4000].1 = 9;
        let (a, b) = (set(&left), set(&right));
        let (da, db, rounds) = run(&a, &b);
        let ids = |d: &Differences| d.keys().map(|k| k.as_u128()).collect::<Vec<_>>();
        let expected = vec![1, 10 * 7919, 20 * 7919, 4000 * 7919];
        assert_eq!(ids(&da), expected);
        assert_eq!(ids(&db), expected);
        assert_eq!(da[&RecordId::from_u128(1)], Some(vec![ChangeHash([3; 32])]));
        assert_eq!(da[&RecordId::from_u128(20 * 7919)], None);
        assert_eq!(db[&RecordId::from_u128(1)], None);
        assert!(rounds <= 5, "{rounds} rounds");
    }

    #[test]
    fn identical_and_empty_sets_settle_at_once() {
        let s = set(&[(1, 1), (2, 2)]);
        assert_eq!(run(&s, &s).2, 1);
        let (da, db, _) = run(&ItemSet::default(), &ItemSet::default());
        assert!(da.is_empty() && db.is_empty());
        let (da, db, _) = run(&ItemSet::default(), &s);
        assert_eq!((da.len(), db.len()), (2, 2));
    }
}
