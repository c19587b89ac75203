//! Highlighted snippets, computed from the record as stored (the store is the truth).

use std::ops::Range;

use tantivy::tokenizer::TextAnalyzer;

use super::Snippet;
use super::plan::Needle;
use super::tokenizer::{self, Mode};
use crate::model::{Record, Value};

/// Bytes of long text shown around the matches.
const WINDOW: usize = 160;
/// Bytes of context kept before the first match of the window.
const LEAD: usize = 40;

/// Edit distance with adjacent transpositions counting one (as the index's fuzzy matching).
fn distance(a: &str, b: &str, limit: u8) -> u8 {
    // Most words of a text are far longer or shorter than the needle: no need to allocate.
    if a.chars().count().abs_diff(b.chars().count()) > usize::from(limit) {
        return u8::MAX;
    }
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev2 = vec![0usize; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0usize; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    u8::try_from(prev[b.len()]).unwrap_or(u8::MAX)
}

fn matches(word: &str, needle: &Needle) -> bool {
    word == needle.text
        || (needle.prefix && word.starts_with(needle.text.as_str()))
        || (needle.typos > 0 && distance(word, &needle.text, needle.typos) <= needle.typos)
}

/// Byte ranges of the words of ASCII text, as the index's analyzer cuts them: runs of letters
/// and digits shorter than its longest token.
fn ascii_words(text: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    let bytes = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        loop {
            while i < bytes.len() && !bytes[i].is_ascii_alphanumeric() {
                i += 1;
            }
            if i >= bytes.len() {
                return None;
            }
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                i += 1;
            }
            if i - start < tokenizer::MAX_TOKEN_BYTES {
                return Some(start..i);
            }
        }
    })
}

/// Byte ranges of `text` holding a word that matches a needle, merged and in order.
fn highlights(analyzer: &mut TextAnalyzer, text: &str, needles: &[Needle]) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    if text.is_ascii() {
        // Most CRM text: the analyzer's words without its allocations (a search shows a page
        // of hits, each with its long text tokenized here).
        let mut lower = String::new();
        for word in ascii_words(text) {
            lower.clear();
            lower.push_str(&text[word.clone()]);
            lower.make_ascii_lowercase();
            if needles.iter().any(|n| matches(&lower, n)) {
                out.push(word);
            }
        }
        return out;
    }
    for token in tokenizer::analyze(analyzer, text) {
        if needles.iter().any(|n| matches(&token.text, n)) {
            out.push(token.offset_from..token.offset_to);
        }
    }
    out.sort_by_key(|r| (r.start, r.end));
    let mut merged: Vec<Range<usize>> = Vec::new();
    for r in out {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The window of long text with the most highlights.
fn window(field: &str, text: &str, marks: &[Range<usize>]) -> Snippet {
    let mut best = (0, 0);
    for (i, m) in marks.iter().enumerate() {
        let count = marks[i..]
            .iter()
            .take_while(|r| r.end <= m.start + WINDOW)
            .count();
        if count > best.1 {
            best = (i, count);
        }
    }
    let first = marks.get(best.0).map_or(0, |r| r.start);
    let mut start = if text.len() <= WINDOW {
        0
    } else {
        floor_boundary(text, first.saturating_sub(LEAD))
    };
    // Start at a word boundary when one is near.
    if start > 0
        && let Some(space) = text[start..first].find(char::is_whitespace)
    {
        start += space + 1;
    }
    let end = floor_boundary(text, (start + WINDOW).min(text.len()));
    let highlights = marks
        .iter()
        .filter(|r| r.start >= start && r.end <= end)
        .map(|r| r.start - start..r.end - start)
        .collect();
    Snippet {
        field: field.to_string(),
        text: text[start..end].to_string(),
        highlights,
    }
}

/// The analyzer snippets use (one per search, shared by its hits).
pub(crate) fn analyzer() -> TextAnalyzer {
    tokenizer::words(Mode::Index)
}

/// The snippet of a record for a query: the long text with the densest matches, else the first
/// short text field that matches.
pub(crate) fn snippet(
    analyzer: &mut TextAnalyzer,
    record: &Record,
    needles: &[Needle],
) -> Option<Snippet> {
    if needles.is_empty() {
        return None;
    }
    let mut best: Option<(usize, Snippet)> = None;
    for (name, value) in &record.fields {
        if let Value::LongText(text) = value {
            let marks = highlights(analyzer, text, needles);
            if !marks.is_empty() && best.as_ref().is_none_or(|(n, _)| marks.len() > *n) {
                best = Some((marks.len(), window(name, text, &marks)));
            }
        }
    }
    if let Some((_, snippet)) = best {
        return Some(snippet);
    }
    for (name, value) in &record.fields {
        let texts: Vec<&str> = match value {
            Value::Text(t) => vec![t.as_str()],
            Value::List(items) => items.iter().map(String::as_str).collect(),
            _ => continue,
        };
        for text in texts {
            let marks = highlights(analyzer, text, needles);
            if !marks.is_empty() {
                return Some(window(name, text, &marks));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_transpositions_once() {
        assert_eq!(distance("jonh", "john", 2), 1);
        assert_eq!(distance("acme", "acne", 2), 1);
        assert_eq!(distance("kitten", "sitting", 3), 3);
    }

    #[test]
    fn ascii_words_are_the_analyzers_words() {
        let long = "x".repeat(tokenizer::MAX_TOKEN_BYTES);
        let text = format!("Call ACME-corp, re: Q3 #4711; {long} ok.\tdone_now (x2)");
        let mut analyzer = tokenizer::words(Mode::Index);
        let expected: Vec<(usize, usize, String)> = tokenizer::analyze(&mut analyzer, &text)
            .into_iter()
            .map(|t| (t.offset_from, t.offset_to, t.text))
            .collect();
        let got: Vec<(usize, usize, String)> = ascii_words(&text)
            .map(|r| (r.start, r.end, text[r].to_ascii_lowercase()))
            .collect();
        assert_eq!(got, expected);
        let needles = [
            Needle {
                text: "acme".into(),
                prefix: false,
                typos: 0,
            },
            Needle {
                text: "don".into(),
                prefix: true,
                typos: 0,
            },
        ];
        let marks = highlights(&mut analyzer, &text, &needles);
        let marked: Vec<&str> = marks.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(marked, ["ACME", "done"]);
    }

    #[test]
    fn window_centres_on_the_matches() {
        let text = format!(
            "{} the customer wants a quote next week",
            "filler ".repeat(40)
        );
        let needles = [Needle {
            text: "quote".into(),
            prefix: false,
            typos: 0,
        }];
        let marks = highlights(&mut tokenizer::words(Mode::Index), &text, &needles);
        let s = window("body", &text, &marks);
        assert_eq!(&s.text[s.highlights[0].clone()], "quote");
        assert!(s.marked("[", "]").contains("[quote]"));
    }
}
