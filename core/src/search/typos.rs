//! The indexed words within a few typos of a query word.
//!
//! Tantivy's fuzzy query matches such words as one constant-score set: a bitset of every
//! document holding any of them, built per query, which cannot be pruned and keeps the union
//! it is part of from block-WAND. Instead the words are looked up once per query in the term
//! dictionaries and searched as ordinary term queries, so a query with a typo is pruned like
//! any other.

use std::collections::HashMap;
use std::sync::LazyLock;

use levenshtein_automata::{DFA, Distance, LevenshteinAutomatonBuilder, SINK_STATE};
use tantivy::Searcher;
use tantivy::schema::Field;
use tantivy_fst::Automaton;

/// Builders for one and two typos (a transposition counts as one). Building one takes
/// milliseconds, a DFA from it microseconds.
static BUILDERS: LazyLock<[LevenshteinAutomatonBuilder; 2]> = LazyLock::new(|| {
    [
        LevenshteinAutomatonBuilder::new(1, true),
        LevenshteinAutomatonBuilder::new(2, true),
    ]
});

/// Most words kept per query word, closest first: a short word two typos away from
/// hundreds of others would otherwise make a query of hundreds of terms.
pub(crate) const MAX_WORDS: usize = 24;

/// A Levenshtein DFA as a term-dictionary automaton.
struct Lev(DFA);

impl Automaton for Lev {
    type State = u32;

    fn start(&self) -> u32 {
        self.0.initial_state()
    }

    fn is_match(&self, state: &u32) -> bool {
        matches!(self.0.distance(*state), Distance::Exact(_))
    }

    fn can_match(&self, state: &u32) -> bool {
        *state != SINK_STATE
    }

    fn accept(&self, state: &u32, byte: u8) -> u32 {
        self.0.transition(*state, byte)
    }
}

/// The words of `field`, in any segment of `searcher`, at most `typos` edits from `word`
/// (`word` itself included when indexed), closest first, at most [`MAX_WORDS`].
pub(crate) fn words_near(
    searcher: &Searcher,
    field: Field,
    word: &str,
    typos: u8,
) -> tantivy::Result<Vec<String>> {
    let builder = &BUILDERS[usize::from(typos.clamp(1, 2)) - 1];
    let dfa = Lev(builder.build_dfa(word));
    // Each segment lists the words it holds: the same word comes from several.
    let mut found: HashMap<String, u8> = HashMap::new();
    for segment in searcher.segment_readers() {
        let index = segment.inverted_index(field)?;
        let mut stream = index.terms().search(&dfa).into_stream()?;
        while stream.advance() {
            let Ok(text) = std::str::from_utf8(stream.key()) else {
                continue;
            };
            if found.contains_key(text) {
                continue;
            }
            let mut state = dfa.start();
            for &byte in stream.key() {
                state = dfa.accept(&state, byte);
            }
            let distance = match dfa.0.distance(state) {
                Distance::Exact(d) => d,
                Distance::AtLeast(d) => d,
            };
            found.insert(text.to_owned(), distance);
        }
    }
    let mut found: Vec<(u8, String)> = found.into_iter().map(|(text, d)| (d, text)).collect();
    found.sort();
    found.truncate(MAX_WORDS);
    Ok(found.into_iter().map(|(_, text)| text).collect())
}

#[cfg(test)]
mod tests {
    use tantivy::schema::{Schema, TEXT};
    use tantivy::{Index, TantivyDocument};

    use super::*;

    #[test]
    fn finds_indexed_words_within_the_typos_closest_first() {
        let mut b = Schema::builder();
        let text = b.add_text_field("text", TEXT);
        let index = Index::create_in_ram(b.build());
        let mut writer = index.writer_with_num_threads(1, 15 << 20).unwrap();
        for words in ["johnson jonson", "johnsen smith", "jonhson"] {
            let mut doc = TantivyDocument::default();
            doc.add_text(text, words);
            writer.add_document(doc).unwrap();
            // One segment per document: words are gathered across segments.
            writer.commit().unwrap();
        }
        let searcher = index.reader().unwrap().searcher();
        assert_eq!(searcher.segment_readers().len(), 3);
        let near = words_near(&searcher, text, "jonhson", 1).unwrap();
        assert_eq!(near, ["jonhson", "johnson", "jonson"]);
        let near = words_near(&searcher, text, "jonhson", 2).unwrap();
        assert_eq!(near, ["jonhson", "johnson", "jonson", "johnsen"]);
        assert!(words_near(&searcher, text, "smyth", 1).unwrap().len() == 1);
    }
}
