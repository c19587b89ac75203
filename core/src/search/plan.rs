//! From parsed clauses and filters to a tantivy query.
//!
//! Every positive clause must match (AND). A word matches, best first: exactly in a name, email,
//! phone, title, company, tag or text field (BM25, weighted by field); as the prefix of a word in
//! a short field (type-ahead); with one typo from 5 characters on, two from 9 (constant, low
//! score, so exact matches rank first). Filters restrict without scoring.
//!
//! A quoted phrase is matched through word-pair terms (see `tokenizer::PairTokenizer`): a
//! two-word phrase is one term, a longer one needs all its pairs, which a few documents may
//! have without the words being in sequence; those are checked against the positions by the
//! plan's `verify` query, only for documents good enough to reach the page.

use std::ops::Bound;

use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, PhraseQuery, Query,
    RangeQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Searcher, Term};

use super::document::phone_variants;
use super::exclusion::Excludable;
use super::fields::{Fields, MAX_PHONE_PREFIX, MIN_PHONE_PREFIX};
use super::filter::FilterGroups;
use super::syntax::{Clause, Matcher, Scope};
use super::tokenizer::{self, MAX_PREFIX_CHARS, MIN_WORD_PREFIX_CHARS, Mode, is_cjk};
use super::typos;
use super::{DateRange, SearchFilters};

const NAME: f32 = 4.0;
const EMAIL: f32 = 4.0;
const PHONE: f32 = 4.0;
const TITLE: f32 = 2.5;
const COMPANY: f32 = 2.0;
const TAG: f32 = 2.0;
const TEXT: f32 = 1.0;
const PREFIX: f32 = 1.5;
const KEYWORD_PREFIX: f32 = 2.0;
const FUZZY: f32 = 0.5;
const PHRASE: f32 = 4.0;

/// A word to highlight in snippets, and how loosely it matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Needle {
    /// The normalized (lowercased, folded) word.
    pub text: String,
    /// Whether words that start with it count.
    pub prefix: bool,
    /// Edit distance allowed.
    pub typos: u8,
}

/// The typos a word of this many characters tolerates.
pub(crate) fn typos_for(word: &str) -> u8 {
    let chars = word.chars().count();
    if is_cjk(word) || word.chars().any(char::is_numeric) {
        0
    } else if chars >= 9 {
        2
    } else if chars >= 5 {
        1
    } else {
        0
    }
}

fn term(field: Field, text: &str, boost: f32) -> Box<dyn Query> {
    let q = TermQuery::new(
        Term::from_field_text(field, text),
        IndexRecordOption::WithFreqs,
    );
    if boost == 1.0 {
        Box::new(q)
    } else {
        Box::new(BoostQuery::new(Box::new(q), boost))
    }
}

fn any(alternatives: Vec<Box<dyn Query>>) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(
        alternatives
            .into_iter()
            .map(|q| (Occur::Should, q))
            .collect(),
    ))
}

fn all(required: Vec<Box<dyn Query>>) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(
        required.into_iter().map(|q| (Occur::Must, q)).collect(),
    ))
}

/// Documents holding any of `terms`. Plain term queries rather than a TermSetQuery: a filter
/// lists a few values, and a term set builds an FST per query and a bitset of every match per
/// segment, where terms are intersected lazily (seeking) with the text query.
fn any_term(terms: &[Term]) -> Box<dyn Query> {
    let mut queries: Vec<Box<dyn Query>> = terms
        .iter()
        .map(|t| Box::new(TermQuery::new(t.clone(), IndexRecordOption::Basic)) as Box<dyn Query>)
        .collect();
    if queries.len() == 1 {
        queries.remove(0)
    } else {
        any(queries)
    }
}

fn filter(q: Box<dyn Query>) -> (Occur, Box<dyn Query>) {
    (Occur::Must, Box::new(ConstScoreQuery::new(q, 0.0)))
}

/// Builds queries for one index schema.
pub(crate) struct Planner {
    f: Fields,
    words: TextAnalyzer,
    /// The index searched: its term dictionaries give the words a typo may stand for.
    searcher: Searcher,
}

/// A query ready to run, with what to highlight.
pub(crate) struct Plan {
    pub query: Box<dyn Query>,
    pub needles: Vec<Needle>,
    /// What a hit of `query` must also match: the exact phrases whose pair terms `query`
    /// holds in their place (none for phrases of one or two words).
    pub verify: Option<Box<dyn Query>>,
    /// `query` without its exact-value filters, and those filters, to check per hit (see
    /// `filter`). Only when the query has text to rank by; `query` alone counts the total.
    pub ranked: Option<(Box<dyn Query>, FilterGroups)>,
}

/// One required clause is run as itself: wrapped in another boolean query, a union of term
/// queries would be evaluated match by match instead of with block-WAND.
fn conjunction(mut subs: Vec<(Occur, Box<dyn Query>)>) -> Box<dyn Query> {
    if let [(Occur::Must, _)] = subs.as_slice()
        && let Some((_, q)) = subs.pop()
    {
        return q;
    }
    Box::new(BooleanQuery::new(subs))
}

impl Planner {
    pub fn new(f: Fields, searcher: Searcher) -> Self {
        Self {
            f,
            words: tokenizer::words(Mode::Query),
            searcher,
        }
    }

    /// The query for clauses and filters.
    pub fn plan(&mut self, clauses: &[Clause], filters: &SearchFilters) -> Plan {
        let mut subs: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let mut needles = Vec::new();
        let mut verify = Vec::new();
        let mut positive = false;
        for clause in clauses {
            let loose = !clause.negated;
            if let (Matcher::Phrase(p), None, true) = (&clause.matcher, clause.scope, loose)
                && let Some(mut phrase) = self.phrase_by_pairs(p)
            {
                positive = true;
                needles.append(&mut phrase.needles);
                verify.extend(phrase.verify);
                subs.push((Occur::Must, phrase.query));
                continue;
            }
            let (q, mut n) = self.clause(clause, loose);
            let Some(q) = q else { continue };
            if clause.negated {
                subs.push((Occur::MustNot, Box::new(Excludable(q))));
            } else {
                positive = true;
                needles.append(&mut n);
                subs.push((Occur::Must, q));
            }
        }
        self.date_filters(filters, &mut subs);
        let groups = self.term_filters(filters);
        let ranked = (positive && !groups.is_empty()).then(|| {
            let text = subs.iter().map(|(o, q)| (*o, q.box_clone())).collect();
            conjunction(text)
        });
        for group in &groups {
            subs.push(filter(any_term(group)));
        }
        if !positive {
            subs.push((Occur::Must, Box::new(AllQuery)));
        }
        Plan {
            query: conjunction(subs),
            ranked: ranked.map(|q| (q, groups)),
            needles,
            verify: match verify.len() {
                0 => None,
                1 => verify.pop(),
                _ => Some(all(verify)),
            },
        }
    }

    /// An unscoped phrase of two words or more as the conjunction of its word pairs, with the
    /// exact phrase query when the pairs alone may match more (three words or more). `None`
    /// when the phrase has fewer than two words or a gap (a word too long to be indexed).
    fn phrase_by_pairs(&mut self, p: &str) -> Option<Plan> {
        let tokens = tokenizer::analyze(&mut self.words, p);
        if tokens.len() < 2
            || tokens
                .windows(2)
                .any(|w| w[1].position != w[0].position + 1)
        {
            return None;
        }
        let needles = tokens.iter().map(|t| needle(&t.text, false, 0)).collect();
        let pairs: Vec<Box<dyn Query>> = tokenizer::adjacent_pairs(&tokens)
            .map(|(a, b)| term(self.f.pair, &tokenizer::pair(&a.text, &b.text), PHRASE))
            .collect();
        let (query, verify) = if pairs.len() == 1 {
            // As a union of one: a boosted term query on its own is scored match by match,
            // a union of term queries with block-WAND.
            (any(pairs), None)
        } else {
            (all(pairs), self.phrase(p, None).0)
        };
        Some(Plan {
            query,
            needles,
            verify,
            ranked: None,
        })
    }

    /// The exact-value filters: a document must hold one value of each group.
    fn term_filters(&self, filters: &SearchFilters) -> FilterGroups {
        let f = &self.f;
        let mut groups: FilterGroups = Vec::new();
        let terms = |field: Field, values: &mut dyn Iterator<Item = &str>| -> Vec<Term> {
            values.map(|v| Term::from_field_text(field, v)).collect()
        };
        if !filters.types.is_empty() {
            groups.push(terms(
                f.record_type,
                &mut filters.types.iter().map(|t| t.as_str()),
            ));
        }
        for (field, values) in [
            (f.stage, &filters.stages),
            (f.lifecycle, &filters.lifecycles),
            (f.owner, &filters.owners),
        ] {
            if !values.is_empty() {
                groups.push(terms(field, &mut values.iter().map(String::as_str)));
            }
        }
        for tag in &filters.tags {
            groups.push(vec![Term::from_field_text(f.tag, &tag.to_lowercase())]);
        }
        groups
    }

    fn date_filters(&self, filters: &SearchFilters, subs: &mut Vec<(Occur, Box<dyn Query>)>) {
        let f = &self.f;
        for (field, range) in [(f.created, &filters.created), (f.updated, &filters.updated)] {
            if let Some(q) = range.as_ref().and_then(|r| date_range(field, r)) {
                subs.push(filter(q));
            }
        }
    }

    fn clause(&mut self, clause: &Clause, loose: bool) -> (Option<Box<dyn Query>>, Vec<Needle>) {
        let f = self.f.clone();
        match (&clause.matcher, clause.scope) {
            (Matcher::Word(w) | Matcher::Phrase(w), Some(Scope::Email)) => {
                let lower = w.trim().to_lowercase();
                let mut alts = vec![term(f.email, &lower, EMAIL)];
                if loose && !matches!(clause.matcher, Matcher::Phrase(_)) {
                    let prefix =
                        FuzzyTermQuery::new_prefix(Term::from_field_text(f.email, &lower), 0, true);
                    alts.push(Box::new(BoostQuery::new(Box::new(prefix), KEYWORD_PREFIX)));
                }
                (Some(any(alts)), vec![needle(&lower, loose, 0)])
            }
            (Matcher::Word(w) | Matcher::Phrase(w), Some(Scope::Tag)) => {
                let lower = w.trim().to_lowercase();
                let mut alts = vec![term(f.tag, &lower, TAG)];
                if loose && !matches!(clause.matcher, Matcher::Phrase(_)) {
                    let prefix =
                        FuzzyTermQuery::new_prefix(Term::from_field_text(f.tag, &lower), 0, true);
                    alts.push(Box::new(prefix));
                }
                (Some(any(alts)), vec![needle(&lower, loose, 0)])
            }
            (m, Some(Scope::Phone)) => {
                let (Matcher::Word(p) | Matcher::Phrase(p) | Matcher::Phone(p)) = m;
                let alts = self.phone(p, loose);
                ((!alts.is_empty()).then(|| any(alts)), Vec::new())
            }
            (Matcher::Phrase(p), scope) => self.phrase(p, scope),
            (Matcher::Word(w), None) => self.word(w, loose),
            (Matcher::Word(w), Some(scope)) => self.scoped_words(w, scope, loose),
            (Matcher::Phone(p), _) => {
                let mut alts = self.phone(p, loose);
                let (words, needles) = self.word_alternatives(p, None, loose);
                alts.extend(words);
                ((!alts.is_empty()).then(|| any(alts)), needles)
            }
        }
    }

    fn phone(&self, typed: &str, loose: bool) -> Vec<Box<dyn Query>> {
        let mut alts = Vec::new();
        for v in phone_variants(typed, MIN_PHONE_PREFIX) {
            alts.push(term(self.f.phone, &v, PHONE));
            if loose && v.len() >= MIN_PHONE_PREFIX {
                let gram = v.get(..MAX_PHONE_PREFIX).unwrap_or(&v);
                alts.push(term(self.f.phone_prefix, gram, KEYWORD_PREFIX));
            }
        }
        alts
    }

    /// An unscoped word: keyword fields see it whole, word fields see its tokens.
    fn word(&mut self, w: &str, loose: bool) -> (Option<Box<dyn Query>>, Vec<Needle>) {
        let f = self.f.clone();
        let lower = w.to_lowercase();
        let mut alts = vec![term(f.email, &lower, EMAIL), term(f.tag, &lower, TAG)];
        if lower.chars().filter(char::is_ascii_digit).count() >= MIN_PHONE_PREFIX
            && lower
                .chars()
                .all(|c| c.is_ascii_digit() || "+()-./".contains(c))
        {
            alts.extend(self.phone(w, loose));
        }
        let (words, needles) = self.word_alternatives(w, None, loose);
        alts.extend(words);
        (Some(any(alts)), needles)
    }

    /// The alternatives of `w` for a union: a one-token word's own alternatives (so the union
    /// stays flat, which block-WAND needs), else one query requiring every token.
    fn word_alternatives(
        &mut self,
        w: &str,
        scope: Option<Scope>,
        loose: bool,
    ) -> (Vec<Box<dyn Query>>, Vec<Needle>) {
        let tokens = tokenizer::analyze(&mut self.words, w);
        if let [t] = tokens.as_slice() {
            let typos = if loose { typos_for(&t.text) } else { 0 };
            let alts = self.token_alternatives(&t.text, scope, loose, typos);
            return (alts, vec![needle(&t.text, loose, typos)]);
        }
        let (q, needles) = self.scoped_words_all(w, scope, loose);
        (q.into_iter().collect(), needles)
    }

    fn scoped_words(
        &mut self,
        w: &str,
        scope: Scope,
        loose: bool,
    ) -> (Option<Box<dyn Query>>, Vec<Needle>) {
        let (q, needles) = self.scoped_words_all(w, Some(scope), loose);
        (q.into_iter().next(), needles)
    }

    /// All tokens of `w` must match (as one alternative).
    fn scoped_words_all(
        &mut self,
        w: &str,
        scope: Option<Scope>,
        loose: bool,
    ) -> (Option<Box<dyn Query>>, Vec<Needle>) {
        let tokens = tokenizer::analyze(&mut self.words, w);
        let mut required = Vec::new();
        let mut needles = Vec::new();
        for t in &tokens {
            let typos = if loose { typos_for(&t.text) } else { 0 };
            needles.push(needle(&t.text, loose, typos));
            required.push(self.token(&t.text, scope, loose, typos));
        }
        let q = match required.len() {
            0 => None,
            1 => required.pop(),
            _ => Some(all(required)),
        };
        (q, needles)
    }

    fn token(&self, t: &str, scope: Option<Scope>, loose: bool, typos: u8) -> Box<dyn Query> {
        any(self.token_alternatives(t, scope, loose, typos))
    }

    /// The ways one token matches (exactly per field, as a prefix, with typos).
    fn token_alternatives(
        &self,
        t: &str,
        scope: Option<Scope>,
        loose: bool,
        typos: u8,
    ) -> Vec<Box<dyn Query>> {
        let f = &self.f;
        let fields = &word_fields(f, scope)[..];
        let mut alts: Vec<Box<dyn Query>> =
            fields.iter().map(|&(field, b)| term(field, t, b)).collect();
        let chars = t.chars().count();
        let min_prefix = if is_cjk(t) { 1 } else { MIN_WORD_PREFIX_CHARS };
        if loose && chars >= min_prefix {
            if scope.is_none() && chars <= MAX_PREFIX_CHARS {
                alts.push(term(f.prefix, t, PREFIX));
            } else if let [(field, _)] = fields {
                let q = FuzzyTermQuery::new_prefix(Term::from_field_text(*field, t), 0, true);
                alts.push(Box::new(BoostQuery::new(Box::new(q), PREFIX)));
            }
        }
        if typos > 0 {
            let field = match fields {
                [(field, _)] => *field,
                _ => f.all,
            };
            alts.extend(self.typo_alternatives(field, t, typos));
        }
        alts
    }

    /// The indexed words within `typos` of `t` (itself included) as term queries, each scaled
    /// so that it scores at most [`FUZZY`]: a record found through a typo ranks below records
    /// that hold the word, and one that holds the word gets the same small bonus.
    fn typo_alternatives(&self, field: Field, t: &str, typos: u8) -> Vec<Box<dyn Query>> {
        let near = match typos::words_near(&self.searcher, field, t, typos) {
            Ok(near) => near,
            Err(e) => {
                tracing::warn!("listing the words near {t:?} failed, matching them as a set: {e}");
                let q = FuzzyTermQuery::new(Term::from_field_text(field, t), typos, true);
                return vec![Box::new(BoostQuery::new(Box::new(q), FUZZY))];
            }
        };
        let docs = self.searcher.num_docs() as f32;
        near.iter()
            .map(|word| {
                let term = Term::from_field_text(field, word);
                let with = self.searcher.doc_freq(&term).unwrap_or(0) as f32;
                // BM25 never exceeds idf * (k1 + 1) with tantivy's k1 = 1.2.
                let idf = (1.0 + (docs - with + 0.5) / (with + 0.5)).ln();
                let cap = (idf * 2.2).max(f32::EPSILON);
                let q = TermQuery::new(term, IndexRecordOption::WithFreqs);
                Box::new(BoostQuery::new(Box::new(q), FUZZY / cap)) as Box<dyn Query>
            })
            .collect()
    }

    fn phrase(&mut self, p: &str, scope: Option<Scope>) -> (Option<Box<dyn Query>>, Vec<Needle>) {
        let tokens = tokenizer::analyze(&mut self.words, p);
        let needles = tokens.iter().map(|t| needle(&t.text, false, 0)).collect();
        if tokens.len() < 2 {
            let q = tokens.first().map(|t| self.token(&t.text, scope, false, 0));
            return (q, needles);
        }
        let fields = &word_fields(&self.f, scope)[..];
        let first = tokens.first().map_or(0, |t| t.position);
        let alts = fields
            .iter()
            .map(|&(field, boost)| {
                let terms = tokens
                    .iter()
                    .map(|t| {
                        (
                            t.position.saturating_sub(first),
                            Term::from_field_text(field, &t.text),
                        )
                    })
                    .collect();
                let q = PhraseQuery::new_with_offset(terms);
                Box::new(BoostQuery::new(Box::new(q), boost)) as Box<dyn Query>
            })
            .collect();
        (Some(any(alts)), needles)
    }
}

/// The word fields a scope searches, with their weights.
fn word_fields(f: &Fields, scope: Option<Scope>) -> Vec<(Field, f32)> {
    match scope {
        Some(Scope::Name) => vec![(f.name, NAME)],
        Some(Scope::Company) => vec![(f.company, COMPANY)],
        Some(Scope::Title) => vec![(f.title, TITLE)],
        Some(Scope::Text) => vec![(f.text, TEXT)],
        _ => vec![
            (f.name, NAME),
            (f.company, COMPANY),
            (f.title, TITLE),
            (f.text, TEXT),
        ],
    }
}

fn needle(text: &str, prefix: bool, typos: u8) -> Needle {
    Needle {
        text: text.to_string(),
        prefix,
        typos,
    }
}

fn date_range(field: Field, range: &DateRange) -> Option<Box<dyn Query>> {
    let lower = range
        .from
        .map(|t| Term::from_field_i64(field, t.timestamp_millis()));
    let upper = range
        .to
        .map(|t| Term::from_field_i64(field, t.timestamp_millis()));
    if lower.is_none() && upper.is_none() {
        return None;
    }
    Some(Box::new(RangeQuery::new(
        lower.map_or(Bound::Unbounded, Bound::Included),
        upper.map_or(Bound::Unbounded, Bound::Excluded),
    )))
}
