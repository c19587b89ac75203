//! Exact-value filters (record type, stage, lifecycle, owner, tag) as cached per-segment bitsets.
//!
//! As part of the query, a filter is a posting list intersected with the text query: every
//! candidate of the rarest list is looked up in all the others, and nothing can be pruned
//! (filters do not score). Checked instead as bits, and only for the matches good enough to
//! enter the page, a filter lets block-WAND prune the text query as if it were alone. A
//! segment never changes once written, so its bitset per filter value is computed once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tantivy::index::SegmentId;
use tantivy::schema::IndexRecordOption;
use tantivy::{BitSet, DocId, DocSet, SegmentReader, TERMINATED, Term};

/// At most this many (segment, value) bitsets are kept: 25 KB each at 200,000 documents.
const MAX_SETS: usize = 512;

/// Filter values to check: a document must hold one value of every group.
pub(crate) type FilterGroups = Vec<Vec<Term>>;

/// The bitsets of filter values per segment.
#[derive(Default)]
pub(crate) struct FilterCache {
    sets: Mutex<HashMap<(SegmentId, Term), Arc<BitSet>>>,
}

impl FilterCache {
    fn sets(&self) -> MutexGuard<'_, HashMap<(SegmentId, Term), Arc<BitSet>>> {
        self.sets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The documents of `segment` that hold `term`.
    fn set(&self, segment: &SegmentReader, term: &Term) -> tantivy::Result<Arc<BitSet>> {
        let key = (segment.segment_id(), term.clone());
        if let Some(set) = self.sets().get(&key) {
            return Ok(set.clone());
        }
        let mut set = BitSet::with_max_value(segment.max_doc());
        let postings = segment
            .inverted_index(term.field())?
            .read_postings(term, IndexRecordOption::Basic)?;
        if let Some(mut postings) = postings {
            let mut doc = postings.doc();
            while doc != TERMINATED {
                set.insert(doc);
                doc = postings.advance();
            }
        }
        let set = Arc::new(set);
        let mut sets = self.sets();
        if sets.len() >= MAX_SETS {
            // Filters in use come back on the next query; a rarely hit cap needs no LRU.
            sets.clear();
        }
        sets.insert(key, set.clone());
        Ok(set)
    }

    /// Forgets the bitsets of segments that are gone (merged away).
    pub fn retain_segments(&self, live: &[SegmentId]) {
        self.sets().retain(|(segment, _), _| live.contains(segment));
    }

    /// The check of `groups` for one segment.
    pub fn segment_filter(
        &self,
        segment: &SegmentReader,
        groups: &FilterGroups,
    ) -> tantivy::Result<SegmentFilter> {
        let groups = groups
            .iter()
            .map(|terms| terms.iter().map(|t| self.set(segment, t)).collect())
            .collect::<tantivy::Result<_>>()?;
        Ok(SegmentFilter { groups })
    }
}

/// The filter of one segment: per group, the bitsets of its values.
pub(crate) struct SegmentFilter {
    groups: Vec<Vec<Arc<BitSet>>>,
}

impl SegmentFilter {
    /// Whether `doc` holds a value of every group.
    pub fn matches(&self, doc: DocId) -> bool {
        self.groups
            .iter()
            .all(|sets| sets.iter().any(|set| set.contains(doc)))
    }
}
