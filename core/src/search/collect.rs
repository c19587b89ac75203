//! The best hits by (score, record id), found in one pass that lets tantivy prune.
//!
//! Ranking ties by record id keeps results the same on every run and every replica, whatever
//! the segment layout. Tantivy's own top-k breaks ties by document address, so a tie at the
//! cut-off used to need a second pass that scored and sorted every match. Here the heap keeps
//! (score, id) pairs and tells the scorer that only scores at or above the k-th best still
//! count: block-WAND (where the query shape allows it) skips everything below, and a record id
//! is read only for documents that could enter the page.
//!
//! A segment whose documents are in id order (a rebuild writes them so) settles ties by
//! itself: a later document of equal score has a larger id and cannot enter, so only scores
//! strictly above the k-th count, and block-WAND skips whole blocks of ties.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, ColumnIndex};
use tantivy::query::Weight;
use tantivy::{DocAddress, DocId, Score, Searcher, SegmentOrdinal, SegmentReader};

use super::filter::{FilterCache, FilterGroups};
use crate::model::RecordId;

/// The record id of an index document (from its `id_hi` / `id_lo` fast fields).
pub(crate) fn record_id(searcher: &Searcher, address: DocAddress) -> Option<RecordId> {
    let segment = searcher.segment_reader(address.segment_ord);
    let half = |name| segment.fast_fields().u64(name).ok()?.first(address.doc_id);
    let (hi, lo) = (half("id_hi")?, half("id_lo")?);
    Some(RecordId::from_u128((u128::from(hi) << 64) | u128::from(lo)))
}

/// A candidate hit. Ordered worst first, so the heap's top is the one to evict.
#[derive(Debug, Clone, Copy)]
struct Entry {
    score: Score,
    id: u128,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.id.cmp(&other.id))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

/// The best `k` matches by score, ties ordered by record id (ascending).
pub(crate) struct TopById {
    k: usize,
    /// Per segment ordinal: its id columns and order, when known.
    segments: Vec<Option<SegmentIds>>,
    /// What a match must also match to count, checked only for matches that would enter.
    verify: Option<Box<dyn Weight>>,
    /// Filter values a match must hold, checked likewise.
    filter: Option<(Arc<FilterCache>, FilterGroups)>,
}

/// A segment's record-id columns and whether its documents are in id order. Opening a column
/// decodes its block index, which costs more than a small query: the index keeps these per
/// segment (a segment never changes once written).
#[derive(Clone)]
pub(crate) struct SegmentIds {
    hi: Half,
    lo: Half,
    /// The segment lists its documents in strictly increasing record id order.
    ordered: bool,
}

impl SegmentIds {
    /// Opens the columns of a segment and checks its order (a pass over every document).
    pub fn of(segment: &SegmentReader) -> Self {
        let mut ids = Self::unchecked(segment);
        ids.ordered = ids.in_id_order(segment.max_doc());
        ids
    }

    /// Opens the columns of a segment, taking it as unordered.
    fn unchecked(segment: &SegmentReader) -> Self {
        let fast = segment.fast_fields();
        Self {
            hi: Half(fast.u64("id_hi").ok()),
            lo: Half(fast.u64("id_lo").ok()),
            ordered: false,
        }
    }

    fn in_id_order(&self, max_doc: DocId) -> bool {
        let mut last = None;
        for doc in 0..max_doc {
            let (Some(h), Some(l)) = (self.hi.get(doc), self.lo.get(doc)) else {
                return false;
            };
            let id = (u128::from(h) << 64) | u128::from(l);
            if last.is_some_and(|previous| previous >= id) {
                return false;
            }
            last = Some(id);
        }
        true
    }
}

impl TopById {
    /// Collects at most `k` hits; `segments` has what is known of each segment.
    pub fn new(k: usize, segments: Vec<Option<SegmentIds>>) -> Self {
        Self {
            k,
            segments,
            verify: None,
            filter: None,
        }
    }

    /// Counts a match only if it holds a value of every group (checked like `verified_by`).
    pub fn filtered_by(mut self, cache: Arc<FilterCache>, groups: FilterGroups) -> Self {
        if !groups.is_empty() {
            self.filter = Some((cache, groups));
        }
        self
    }

    /// Counts a match only if `verify` matches it too. The check runs for the few matches
    /// good enough to enter the page, not for every match.
    pub fn verified_by(mut self, verify: Box<dyn Weight>) -> Self {
        self.verify = Some(verify);
        self
    }
}

/// Whether one segment's documents match a query, asked in increasing document order.
struct Verifier<'a> {
    weight: &'a dyn Weight,
    reader: &'a SegmentReader,
    scorer: Box<dyn tantivy::query::Scorer>,
    /// The last document asked about: asking about an earlier one restarts the scorer.
    last: Option<DocId>,
}

impl<'a> Verifier<'a> {
    fn new(weight: &'a dyn Weight, reader: &'a SegmentReader) -> tantivy::Result<Self> {
        Ok(Self {
            weight,
            reader,
            scorer: weight.scorer(reader, 1.0)?,
            last: None,
        })
    }

    fn matches(&mut self, doc: DocId) -> tantivy::Result<bool> {
        if self.last.is_some_and(|last| doc <= last) {
            self.scorer = self.weight.scorer(self.reader, 1.0)?;
        }
        self.last = Some(doc);
        if self.scorer.doc() < doc {
            self.scorer.seek(doc);
        }
        Ok(self.scorer.doc() == doc)
    }
}

/// One half of the record id, as a fast-field column of one segment.
#[derive(Clone)]
struct Half(Option<Column<u64>>);

impl Half {
    fn get(&self, doc: DocId) -> Option<u64> {
        let column = self.0.as_ref()?;
        // Every document has both halves: read the value directly, skipping the optional index.
        if matches!(column.index, ColumnIndex::Full) {
            Some(column.values.get_val(doc))
        } else {
            column.first(doc)
        }
    }
}

/// One segment's side of [`TopById`].
pub(crate) struct SegmentTop {
    k: usize,
    /// Documents arrive in id order, so a tie with the worst kept hit never enters.
    ordered: bool,
    heap: BinaryHeap<Entry>,
    hi: Half,
    lo: Half,
}

impl SegmentTop {
    /// Considers a match; returns the score a later match must reach to still count.
    /// `accept` has the last word on a match that would enter.
    fn offer(&mut self, doc: DocId, score: Score, accept: &mut dyn FnMut(DocId) -> bool) -> Score {
        if self.k == 0 {
            return Score::INFINITY;
        }
        let worst = if self.heap.len() >= self.k {
            self.heap.peek().copied()
        } else {
            None
        };
        if let Some(worst) = worst {
            if score < worst.score || (self.ordered && score == worst.score) {
                return self.threshold();
            }
            // On a tie the high half of the id usually decides, so the low half is read only
            // when it may matter.
            if score == worst.score
                && self
                    .hi
                    .get(doc)
                    .is_none_or(|hi| hi > (worst.id >> 64) as u64)
            {
                return self.threshold();
            }
        }
        // Before the id: a filter's bit is cheaper to read than the id columns.
        if !accept(doc) {
            return self.threshold();
        }
        // A document without an id cannot be returned (it is never written that way).
        let (Some(hi), Some(lo)) = (self.hi.get(doc), self.lo.get(doc)) else {
            return self.threshold();
        };
        let entry = Entry {
            score,
            id: (u128::from(hi) << 64) | u128::from(lo),
        };
        if worst.is_none() {
            self.heap.push(entry);
        } else if let Some(mut top) = self.heap.peek_mut()
            && entry < *top
        {
            *top = entry;
        }
        self.threshold()
    }

    /// Scores strictly above this may still enter. Unless the segment is in id order, ties
    /// with the worst kept hit are let through (one ulp below it), since a smaller id wins them.
    fn threshold(&self) -> Score {
        match self.heap.peek() {
            Some(worst) if self.heap.len() >= self.k && self.ordered => worst.score,
            Some(worst) if self.heap.len() >= self.k => worst.score.next_down(),
            _ => Score::MIN,
        }
    }
}

impl SegmentCollector for SegmentTop {
    type Fruit = Vec<(Score, RecordId)>;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.offer(doc, score, &mut |_| true);
    }

    fn harvest(self) -> Self::Fruit {
        self.heap
            .into_iter()
            .map(|e| (e.score, RecordId::from_u128(e.id)))
            .collect()
    }
}

impl Collector for TopById {
    type Fruit = Vec<(Score, RecordId)>;
    type Child = SegmentTop;

    fn for_segment(
        &self,
        segment_ord: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<SegmentTop> {
        let ids = usize::try_from(segment_ord)
            .ok()
            .and_then(|i| self.segments.get(i).cloned().flatten())
            .unwrap_or_else(|| SegmentIds::unchecked(segment));
        Ok(SegmentTop {
            k: self.k,
            ordered: ids.ordered,
            heap: BinaryHeap::with_capacity(self.k.saturating_add(1).min(4096)),
            hi: ids.hi,
            lo: ids.lo,
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(&self, fruits: Vec<Vec<(Score, RecordId)>>) -> tantivy::Result<Self::Fruit> {
        let mut all: Vec<(Score, RecordId)> = fruits.into_iter().flatten().collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        all.truncate(self.k);
        Ok(all)
    }

    fn collect_segment(
        &self,
        weight: &dyn Weight,
        segment_ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<Vec<(Score, RecordId)>> {
        let mut top = self.for_segment(segment_ord, reader)?;
        let alive = reader.alive_bitset();
        let mut verifier = match &self.verify {
            Some(verify) => Some(Verifier::new(verify.as_ref(), reader)?),
            None => None,
        };
        let filter = match &self.filter {
            Some((cache, groups)) => Some(cache.segment_filter(reader, groups)?),
            None => None,
        };
        // The callback cannot return an error: the first one stops collecting and is returned.
        let mut failed = None;
        weight.for_each_pruning(Score::MIN, reader, &mut |doc, score| {
            if failed.is_some() {
                return Score::INFINITY;
            }
            if alive.is_some_and(|a| a.is_deleted(doc)) {
                return top.threshold();
            }
            let mut accept = |doc| {
                if filter.as_ref().is_some_and(|f| !f.matches(doc)) {
                    return false;
                }
                verifier.as_mut().is_none_or(|v| {
                    v.matches(doc).unwrap_or_else(|e| {
                        failed = Some(e);
                        false
                    })
                })
            };
            top.offer(doc, score, &mut accept)
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(top.harvest())
    }
}

#[cfg(test)]
mod tests {
    use tantivy::query::TermQuery;
    use tantivy::schema::{FAST, IndexRecordOption, STRING, Schema};
    use tantivy::{Index, TantivyDocument, Term};

    use super::*;

    /// Ties (every document scores the same) come out by id, whether or not the segment is in
    /// id order, and an unordered segment is recognized as such.
    #[test]
    fn ties_are_ordered_by_id_in_any_segment_order() {
        for (shuffled, expect_ordered) in [(true, false), (false, true)] {
            let mut b = Schema::builder();
            let hi = b.add_u64_field("id_hi", FAST);
            let lo = b.add_u64_field("id_lo", FAST);
            let word = b.add_text_field("word", STRING);
            let index = Index::create_in_ram(b.build());
            let mut writer = index.writer_with_num_threads(1, 15 << 20).unwrap();
            let mut ids: Vec<u64> = (0..200).map(|i| i * 7 + 3).collect();
            if shuffled {
                ids.reverse();
                ids.swap(10, 150);
            }
            for id in &ids {
                let mut doc = TantivyDocument::default();
                doc.add_u64(hi, 1);
                doc.add_u64(lo, *id);
                doc.add_text(word, "x");
                writer.add_document(doc).unwrap();
            }
            writer.commit().unwrap();
            let searcher = index.reader().unwrap().searcher();
            let segments: Vec<Option<SegmentIds>> = searcher
                .segment_readers()
                .iter()
                .map(|s| Some(SegmentIds::of(s)))
                .collect();
            let ordered: Vec<bool> = segments.iter().flatten().map(|s| s.ordered).collect();
            assert_eq!(ordered, [expect_ordered]);
            let query = TermQuery::new(
                Term::from_field_text(word, "x"),
                IndexRecordOption::WithFreqs,
            );
            let top = searcher.search(&query, &TopById::new(5, segments)).unwrap();
            let got: Vec<u128> = top.iter().map(|(_, id)| id.as_u128() & 0xFFFF).collect();
            assert_eq!(got, [3, 10, 17, 24, 31]);
        }
    }
}
