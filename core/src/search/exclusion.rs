//! A query that can safely be excluded (`-"a phrase"`).
//!
//! Tantivy's exclusion asks the excluded query's scorer whether each candidate is in it through
//! `seek_danger`, and the candidate may be behind the scorer's current document (the scorer
//! already moved past it). The phrase scorer does not allow that: it asserts in debug builds,
//! and in release builds what it answers is unspecified. The wrapper here answers from `doc`
//! and forward-only `seek`, which is defined for every candidate: a document behind the current
//! one was skipped, so it is not in the set.

use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::{DocId, DocSet, Score, SegmentReader, Term};

/// `inner`, answering membership questions in any order.
#[derive(Debug)]
pub(crate) struct Excludable(pub Box<dyn Query>);

impl Clone for Excludable {
    fn clone(&self) -> Self {
        Self(self.0.box_clone())
    }
}

impl Query for Excludable {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(ExcludableWeight(self.0.weight(enable_scoring)?)))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        self.0.query_terms(visitor);
    }
}

struct ExcludableWeight(Box<dyn Weight>);

impl Weight for ExcludableWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        Ok(Box::new(ForwardOnly(self.0.scorer(reader, boost)?)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        self.0.explain(reader, doc)
    }
}

/// Leaves `seek_danger` to the trait's default, which seeks only forward.
struct ForwardOnly(Box<dyn Scorer>);

impl DocSet for ForwardOnly {
    fn advance(&mut self) -> DocId {
        self.0.advance()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.0.doc() >= target {
            return self.0.doc();
        }
        self.0.seek(target)
    }

    fn doc(&self) -> DocId {
        self.0.doc()
    }

    fn size_hint(&self) -> u32 {
        self.0.size_hint()
    }
}

impl Scorer for ForwardOnly {
    fn score(&mut self) -> Score {
        self.0.score()
    }
}
