//! BM25 statistics kept per searcher generation, across queries.
//!
//! Every term query of a search asks for its field's token count and its term's document
//! frequency, each a walk over every segment (opening, for a field a small fresh segment does
//! not have, an empty term dictionary each time). The answers only change when the searcher
//! does, so they are kept until it does.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tantivy::query::Bm25StatisticsProvider;
use tantivy::schema::Field;
use tantivy::{Searcher, Term};

/// Document frequencies kept per generation (terms beyond are computed each time).
const MAX_TERMS: usize = 4096;

#[derive(Default)]
struct Kept {
    generation: u64,
    docs: Option<u64>,
    tokens: HashMap<Field, u64>,
    doc_freqs: HashMap<Term, u64>,
}

/// The statistics of the latest searcher generation seen.
#[derive(Default)]
pub(crate) struct StatsCache {
    kept: Mutex<Kept>,
}

impl StatsCache {
    /// The statistics provider for a search with `searcher`.
    pub fn of<'a>(&'a self, searcher: &'a Searcher) -> Stats<'a> {
        Stats {
            cache: self,
            searcher,
        }
    }

    /// What is kept, emptied first if it belongs to another generation.
    fn kept(&self, searcher: &Searcher) -> MutexGuard<'_, Kept> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let generation = searcher.generation().generation_id();
        if kept.generation != generation {
            *kept = Kept {
                generation,
                ..Kept::default()
            };
        }
        kept
    }
}

/// [`Bm25StatisticsProvider`] answering from the cache, else from the searcher.
pub(crate) struct Stats<'a> {
    cache: &'a StatsCache,
    searcher: &'a Searcher,
}

impl Bm25StatisticsProvider for Stats<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        if let Some(n) = self.cache.kept(self.searcher).tokens.get(&field) {
            return Ok(*n);
        }
        let n = self.searcher.total_num_tokens(field)?;
        self.cache.kept(self.searcher).tokens.insert(field, n);
        Ok(n)
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        if let Some(n) = self.cache.kept(self.searcher).docs {
            return Ok(n);
        }
        let n = self.searcher.total_num_docs()?;
        self.cache.kept(self.searcher).docs = Some(n);
        Ok(n)
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        if let Some(n) = self.cache.kept(self.searcher).doc_freqs.get(term) {
            return Ok(*n);
        }
        let n = Bm25StatisticsProvider::doc_freq(self.searcher, term)?;
        let mut kept = self.cache.kept(self.searcher);
        if kept.doc_freqs.len() < MAX_TERMS {
            kept.doc_freqs.insert(term.clone(), n);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use tantivy::schema::{Schema, TEXT};
    use tantivy::{Index, TantivyDocument};

    use super::*;

    /// The kept answers are the searcher's, and a new generation is not answered from an old.
    #[test]
    fn answers_follow_the_searcher_generation() {
        let mut b = Schema::builder();
        let text = b.add_text_field("text", TEXT);
        let index = Index::create_in_ram(b.build());
        let mut writer = index.writer_with_num_threads(1, 15 << 20).unwrap();
        let reader = index.reader().unwrap();
        let cache = StatsCache::default();
        let word = Term::from_field_text(text, "acme");
        for n in 1..=3u64 {
            let mut doc = TantivyDocument::default();
            doc.add_text(text, "acme corp");
            writer.add_document(doc).unwrap();
            writer.commit().unwrap();
            reader.reload().unwrap();
            let searcher = reader.searcher();
            for _ in 0..2 {
                let stats = cache.of(&searcher);
                assert_eq!(stats.doc_freq(&word).unwrap(), n);
                assert_eq!(stats.total_num_docs().unwrap(), n);
                assert_eq!(stats.total_num_tokens(text).unwrap(), 2 * n);
            }
        }
    }
}
