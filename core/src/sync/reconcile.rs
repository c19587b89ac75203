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

    /// Answers one round of ranges, recording what differs in `diffs`. The incoming ranges
    /// must be in ascending order without overlaps (as every answer is), so a round costs at
    /// most one pass over the records however many ranges it holds; the answer is kept within
    /// `max_bytes` (the frame limit) by splitting ranges instead of listing many items, and
    /// refused if it would still exceed it.
    pub fn answer(
        &self,
        incoming: &[Range],
        diffs: &mut Differences,
        max_bytes: usize,
    ) -> Result<Vec<Range>, String> {
        let mut out = Vec::new();
        let mut size = Size::default();
        let mut floor = 0u128;
        for range in incoming {
            if size.total > max_bytes {
                return Err(too_large(max_bytes));
            }
            if let Range::Fingerprint { lower, upper, .. } | Range::Items { lower, upper, .. } =
                range
            {
                if lower > upper || *lower < floor {
                    return Err("set reconciliation ranges out of order or overlapping".into());
                }
                floor = *upper;
            }
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
                    self.split(mine, (*lower, *upper), &mut out, &mut size);
                }
                Range::Items {
                    lower,
                    upper,
                    items,
                } => {
                    let mine = self.slice(*lower, *upper);
                    // Listing every item of ours that differs could outgrow a frame (a new,
                    // empty replica asks about the whole id space). Past half the limit a
                    // large range is split instead, and the peer lists its side of each part;
                    // a small one is answered with its fingerprint, which brings the peer's
                    // list back next round, when this side lists it.
                    if mine.len() > LEAF && size.listed + mine.len() * ITEM_BYTES > max_bytes / 2 {
                        if mine.len() > LEAF * BRANCHES {
                            self.split(mine, (*lower, *upper), &mut out, &mut size);
                        } else {
                            let (fingerprint, count) = Self::fingerprint(mine);
                            size.total += RANGE_BYTES;
                            out.push(Range::Fingerprint {
                                lower: *lower,
                                upper: *upper,
                                fingerprint,
                                count,
                            });
                        }
                        continue;
                    }
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
                                size.add_item(entry);
                                differing.push(Self::item(entry));
                            }
                        }
                    }
                    let absent: Vec<RecordId> = theirs
                        .into_iter()
                        .map(|(id, heads)| {
                            let id = RecordId::from_u128(id);
                            diffs.insert(id, Some(heads));
                            size.total += 17;
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
        if size.total > max_bytes {
            return Err(too_large(max_bytes));
        }
        Ok(out)
    }

    /// Describes `mine`, the items of a range that differs, as [`BRANCHES`] sub-ranges (or as
    /// a list, when few).
    fn split(
        &self,
        mine: &[Entry],
        (lower, upper): (u128, u128),
        out: &mut Vec<Range>,
        size: &mut Size,
    ) {
        if mine.len() <= LEAF {
            mine.iter().for_each(|e| size.add_item(e));
            out.push(Self::describe(mine, lower, upper));
            return;
        }
        let step = mine.len().div_ceil(BRANCHES);
        let mut start = lower;
        for (i, chunk) in mine.chunks(step).enumerate() {
            let end = match mine.get((i + 1) * step) {
                Some(next) => next.id,
                None => upper,
            };
            if chunk.len() <= LEAF {
                chunk.iter().for_each(|e| size.add_item(e));
            }
            size.total += RANGE_BYTES;
            out.push(Self::describe(chunk, start, end));
            start = end;
        }
    }
}

fn too_large(max_bytes: usize) -> String {
    format!("a set reconciliation answer would exceed the frame limit of {max_bytes} bytes")
}

/// Encoded bytes of a range's bounds and fingerprint, at most (postcard varints).
const RANGE_BYTES: usize = 3 * 19 + 11;
/// Encoded bytes of an item with one head, about.
const ITEM_BYTES: usize = 16 + 1 + 1 + 32;

/// What an answer being built will take on the wire, estimated from above.
#[derive(Default)]
struct Size {
    total: usize,
    listed: usize,
}

impl Size {
    fn add_item(&mut self, entry: &Entry) {
        let bytes = 18 + 32 * entry.heads.len();
        self.total += bytes;
        self.listed += bytes;
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
            let reply = b.answer(&msg, &mut db, 16 << 20).unwrap();
            msg = a.answer(&reply, &mut da, 16 << 20).unwrap();
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
    fn ranges_out_of_order_or_overlapping_are_refused() {
        let s = set(&(0..100).map(|i| (i, 1)).collect::<Vec<_>>());
        let whole = |lower, upper| Range::Fingerprint {
            lower,
            upper,
            fingerprint: 1,
            count: 1,
        };
        let mut diffs = Differences::new();
        // Many copies of the whole id space would each cost a pass over every record.
        let hostile = vec![whole(0, u128::MAX); 3];
        assert!(s.answer(&hostile, &mut diffs, 16 << 20).is_err());
        let backwards = vec![whole(50, 60), whole(10, 20)];
        assert!(s.answer(&backwards, &mut diffs, 16 << 20).is_err());
        let inverted = vec![whole(60, 50)];
        assert!(s.answer(&inverted, &mut diffs, 16 << 20).is_err());
        let ordered = vec![whole(0, 50), whole(50, u128::MAX)];
        assert!(s.answer(&ordered, &mut diffs, 16 << 20).is_ok());
    }

    #[test]
    fn answers_stay_within_the_frame_by_splitting_and_still_settle() {
        // 20,000 items against an empty replica: listed at once they take ~1 MB.
        let big = set(&(0..20_000).map(|i| (i * 3, 1)).collect::<Vec<_>>());
        let empty = ItemSet::default();
        let limit = 256 << 10;
        let (mut d_big, mut d_empty) = (Differences::new(), Differences::new());
        let mut msg = big.opening();
        let mut rounds = 0;
        while !msg.is_empty() {
            rounds += 1;
            let reply = empty.answer(&msg, &mut d_empty, limit).unwrap();
            let size = postcard::to_allocvec(&reply).unwrap().len();
            assert!(size <= limit, "reply of {size} bytes");
            msg = big.answer(&reply, &mut d_big, limit).unwrap();
            let size = postcard::to_allocvec(&msg).unwrap().len();
            assert!(size <= limit, "answer of {size} bytes in round {rounds}");
        }
        assert_eq!(d_empty.len(), 20_000, "every record found missing");
        assert!(rounds <= 12, "{rounds} rounds");
        // With a frame too small for even one round's ranges, the answer is refused.
        let mut diffs = Differences::new();
        assert!(
            big.answer(&ItemSet::default().opening(), &mut diffs, 64)
                .is_err()
        );
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
