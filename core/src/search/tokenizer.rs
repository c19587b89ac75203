//! Text analysis for the index: words for alphabetic scripts, jieba segmentation for Chinese,
//! character bigrams for Japanese kana and Korean hangul, and edge n-grams for type-ahead.
//!
//! The segmentation of Chinese is jieba's (`jieba-rs`); the adapter to tantivy is ours, so that
//! only runs of Han characters go through jieba (most CRM text is Latin script and takes the fast
//! path), no whitespace or punctuation tokens are emitted, and positions count words (so phrase
//! queries work across Chinese words).

use std::sync::LazyLock;

use jieba_rs::Jieba;
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RawTokenizer, RemoveLongFilter, TextAnalyzer, Token,
    TokenStream, Tokenizer,
};

/// The jieba dictionary is loaded on first use: English-only workspaces never pay for it.
static JIEBA: LazyLock<Jieba> = LazyLock::new(Jieba::new);

/// Longest token kept, in bytes (longer ones are junk such as base64 blobs).
pub(crate) const MAX_TOKEN_BYTES: usize = 64;
/// Longest prefix indexed for type-ahead, in characters.
pub(crate) const MAX_PREFIX_CHARS: usize = 16;
/// Shortest prefix of an alphabetic or numeric word indexed for type-ahead, in characters.
pub(crate) const MIN_WORD_PREFIX_CHARS: usize = 1;

/// What the tokenizer produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Words; Chinese words plus the dictionary words inside longer ones, at the same position.
    Index,
    /// Words; Chinese words as jieba cuts them (the index holds their parts too).
    Query,
    /// Prefixes of every word (and of every CJK run) for type-ahead.
    Prefix,
    /// Only alphabetic words, for typo-tolerant matching: numbers and CJK text get no typo
    /// tolerance, so leaving them out keeps the term dictionary the automaton walks small.
    Fuzzy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    /// Letters and digits of alphabetic scripts.
    Word,
    /// Chinese characters (also Japanese kanji).
    Han,
    /// Kana and hangul: indexed as overlapping character pairs.
    Bigram,
    /// Spaces and punctuation.
    Other,
}

fn script(c: char) -> Script {
    match u32::from(c) {
        0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xF900..=0xFAFF
        | 0x20000..=0x2EBEF
        | 0x30000..=0x3134F => Script::Han,
        0x1100..=0x11FF
        | 0x3040..=0x30FF
        | 0x3130..=0x318F
        | 0x31F0..=0x31FF
        | 0xAC00..=0xD7AF
        | 0xFF66..=0xFF9F => Script::Bigram,
        _ if c.is_alphanumeric() => Script::Word,
        _ => Script::Other,
    }
}

/// Whether the text contains characters that are segmented rather than split on spaces.
pub(crate) fn is_cjk(text: &str) -> bool {
    text.chars()
        .any(|c| matches!(script(c), Script::Han | Script::Bigram))
}

/// The CJK-aware word tokenizer (lowercasing and folding are filters after it).
#[derive(Debug, Clone)]
pub(crate) struct CrmTokenizer {
    mode: Mode,
}

/// Tokens computed up front, handed out one by one.
pub(crate) struct VecTokenStream {
    tokens: std::vec::IntoIter<Token>,
    current: Token,
}

impl VecTokenStream {
    fn new(tokens: Vec<Token>) -> Self {
        Self {
            tokens: tokens.into_iter(),
            current: Token::default(),
        }
    }
}

impl TokenStream for VecTokenStream {
    fn advance(&mut self) -> bool {
        match self.tokens.next() {
            Some(token) => {
                self.current = token;
                true
            }
            None => false,
        }
    }

    fn token(&self) -> &Token {
        &self.current
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.current
    }
}

struct Sink<'t> {
    text: &'t str,
    tokens: Vec<Token>,
    position: usize,
}

impl Sink<'_> {
    /// Emits `text[from..to]` at `position`.
    fn push(&mut self, from: usize, to: usize, position: usize) {
        self.tokens.push(Token {
            offset_from: from,
            offset_to: to,
            position,
            text: self.text[from..to].to_string(),
            position_length: 1,
        });
    }

    /// Emits the prefixes of `text[from..to]` of `min..=MAX_PREFIX_CHARS` characters.
    fn push_prefixes(&mut self, from: usize, to: usize, min: usize) {
        let position = self.position;
        let ends = self.text[from..to]
            .char_indices()
            .skip(1)
            .map(|(i, _)| from + i)
            .chain(std::iter::once(to));
        for (n, end) in ends.enumerate().take(MAX_PREFIX_CHARS) {
            if n + 1 >= min {
                self.push(from, end, position);
            }
        }
        self.position += 1;
    }

    fn word(&mut self, from: usize, to: usize, mode: Mode) {
        if mode == Mode::Fuzzy && self.text[from..to].chars().any(|c| c.is_numeric()) {
            return;
        }
        if mode == Mode::Prefix {
            self.push_prefixes(from, to, MIN_WORD_PREFIX_CHARS);
        } else {
            self.push(from, to, self.position);
            self.position += 1;
        }
    }

    fn han(&mut self, from: usize, to: usize, mode: Mode) {
        let run = &self.text[from..to];
        let words = JIEBA.cut(run, true);
        if mode == Mode::Prefix {
            self.push_prefixes(from, to, 1);
            for w in &words {
                if w.byte_start > 0 {
                    self.push_prefixes(from + w.byte_start, from + w.byte_end, 1);
                }
            }
            return;
        }
        for w in &words {
            let (start, end) = (from + w.byte_start, from + w.byte_end);
            let position = self.position;
            self.push(start, end, position);
            if mode == Mode::Index {
                self.dictionary_parts(start, end, position);
            }
            self.position += 1;
        }
    }

    /// The 2- and 3-character dictionary words inside a longer word (as jieba's search mode
    /// does), at the word's position: 北京科技有限公司 is found by 有限公司 and by 公司.
    fn dictionary_parts(&mut self, from: usize, to: usize, position: usize) {
        let bounds: Vec<usize> = self.text[from..to]
            .char_indices()
            .map(|(i, _)| from + i)
            .chain(std::iter::once(to))
            .collect();
        let chars = bounds.len() - 1;
        for len in [2, 3] {
            if chars <= len {
                continue;
            }
            for i in 0..=chars - len {
                let (a, b) = (bounds[i], bounds[i + len]);
                if JIEBA.has_word(&self.text[a..b]) {
                    self.push(a, b, position);
                }
            }
        }
    }

    fn bigrams(&mut self, from: usize, to: usize, mode: Mode) {
        if mode == Mode::Prefix {
            self.push_prefixes(from, to, 1);
            return;
        }
        let bounds: Vec<usize> = self.text[from..to]
            .char_indices()
            .map(|(i, _)| from + i)
            .chain(std::iter::once(to))
            .collect();
        if bounds.len() <= 2 {
            self.push(from, to, self.position);
            self.position += 1;
            return;
        }
        for pair in bounds.windows(3) {
            self.push(pair[0], pair[2], self.position);
            self.position += 1;
        }
    }
}

/// Splits text into tokens (before lowercasing).
fn tokenize(text: &str, mode: Mode) -> Vec<Token> {
    let mut sink = Sink {
        text,
        tokens: Vec::new(),
        position: 0,
    };
    let mut run: Option<(Script, usize)> = None;
    let flush = |sink: &mut Sink<'_>, run: Option<(Script, usize)>, end: usize| match run {
        Some((Script::Word, start)) => sink.word(start, end, mode),
        Some((Script::Han, start)) if mode != Mode::Fuzzy => sink.han(start, end, mode),
        Some((Script::Bigram, start)) if mode != Mode::Fuzzy => sink.bigrams(start, end, mode),
        _ => {}
    };
    for (i, c) in text.char_indices() {
        let s = script(c);
        match run {
            Some((current, _)) if current == s => {}
            _ => {
                flush(&mut sink, run, i);
                run = (s != Script::Other).then_some((s, i));
            }
        }
    }
    flush(&mut sink, run, text.len());
    sink.tokens
}

impl Tokenizer for CrmTokenizer {
    type TokenStream<'a> = VecTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        VecTokenStream::new(tokenize(text, self.mode))
    }
}

/// Prefixes of the whole input (an email address, a phone number's digits).
#[derive(Debug, Clone)]
pub(crate) struct EdgeTokenizer {
    min: usize,
    max: usize,
}

impl Tokenizer for EdgeTokenizer {
    type TokenStream<'a> = VecTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        let mut tokens = Vec::new();
        let ends = text
            .char_indices()
            .skip(1)
            .map(|(i, _)| i)
            .chain(std::iter::once(text.len()));
        for (n, end) in ends.enumerate().take(self.max) {
            if n + 1 >= self.min && !text.is_empty() {
                tokens.push(Token {
                    offset_from: 0,
                    offset_to: end,
                    position: 0,
                    text: text[..end].to_string(),
                    position_length: 1,
                });
            }
        }
        VecTokenStream::new(tokens)
    }
}

/// Word pairs ("quote next", "next week"): every two words at adjacent positions, so that a
/// phrase is found through terms alone. Positions make a phrase query read every candidate's
/// positions; a pair is an ordinary term whose postings carry score bounds, so block-WAND can
/// skip whatever cannot reach the page. A two-word phrase is one pair term; a longer phrase
/// needs all its pairs (and a check of the positions for the few documents that reach a page).
#[derive(Clone)]
pub(crate) struct PairTokenizer {
    words: TextAnalyzer,
}

impl Tokenizer for PairTokenizer {
    type TokenStream<'a> = VecTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        let tokens = analyze(&mut self.words, text);
        let pairs = adjacent_pairs(&tokens)
            .map(|(a, b)| Token {
                offset_from: a.offset_from,
                offset_to: b.offset_to,
                position: a.position,
                text: pair(&a.text, &b.text),
                position_length: 1,
            })
            .collect();
        VecTokenStream::new(pairs)
    }
}

/// The pair tokenizer, over the index's words (Chinese dictionary parts included, so a pair
/// exists wherever a two-word phrase query would match).
pub(crate) fn pairs() -> TextAnalyzer {
    TextAnalyzer::from(PairTokenizer {
        words: words(Mode::Index),
    })
}

/// The term of two adjacent words. A space never occurs inside a word.
pub(crate) fn pair(first: &str, second: &str) -> String {
    format!("{first} {second}")
}

/// Every two tokens at adjacent positions, in order. Tokens come in position order; several
/// may share a position (a Chinese word and the dictionary words inside it).
pub(crate) fn adjacent_pairs(tokens: &[Token]) -> impl Iterator<Item = (&Token, &Token)> {
    tokens.iter().enumerate().flat_map(move |(i, a)| {
        tokens[i + 1..]
            .iter()
            .skip_while(move |b| b.position == a.position)
            .take_while(move |b| b.position == a.position + 1)
            .map(move |b| (a, b))
    })
}

/// Words, lowercased and folded to ASCII where they have an ASCII form (é → e).
pub(crate) fn words(mode: Mode) -> TextAnalyzer {
    TextAnalyzer::builder(CrmTokenizer { mode })
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// The whole value as one lowercased token (emails, tags, phone digits).
pub(crate) fn keyword() -> TextAnalyzer {
    TextAnalyzer::builder(RawTokenizer::default())
        .filter(RemoveLongFilter::limit(256))
        .filter(LowerCaser)
        .build()
}

/// Lowercased prefixes of the whole value of `min..=max` characters.
pub(crate) fn edge(min: usize, max: usize) -> TextAnalyzer {
    TextAnalyzer::builder(EdgeTokenizer { min, max })
        .filter(LowerCaser)
        .build()
}

/// Runs an analyzer over a text and collects its tokens.
pub(crate) fn analyze(analyzer: &mut TextAnalyzer, text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while let Some(token) = stream.next() {
        out.push(token.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(mode: Mode, text: &str) -> Vec<String> {
        analyze(&mut words(mode), text)
            .into_iter()
            .map(|t| t.text)
            .collect()
    }

    #[test]
    fn latin_words_are_lowercased_and_folded() {
        assert_eq!(
            texts(Mode::Index, "Ärzte & Café-Bar, 2024!"),
            ["arzte", "cafe", "bar", "2024"]
        );
    }

    #[test]
    fn chinese_is_segmented_with_parts_at_the_same_position() {
        let tokens = analyze(&mut words(Mode::Index), "北京科技有限公司");
        let all: Vec<&str> = tokens.iter().map(|t| t.text.as_str()).collect();
        assert!(all.contains(&"北京"), "{all:?}");
        assert!(all.contains(&"公司"), "{all:?}");
        let query = texts(Mode::Query, "客户希望下周报价");
        assert!(query.contains(&"报价".to_string()), "{query:?}");
        let mixed = texts(Mode::Query, "Acme上海office");
        assert_eq!(mixed.first().map(String::as_str), Some("acme"));
        assert_eq!(mixed.last().map(String::as_str), Some("office"));
    }

    #[test]
    fn fuzzy_mode_keeps_alphabetic_words_only() {
        assert_eq!(
            texts(Mode::Fuzzy, "Order 4711 for Café 北京 a1"),
            ["order", "for", "cafe"]
        );
    }

    #[test]
    fn pairs_join_adjacent_words_only() {
        let terms = |text: &str| -> Vec<String> {
            analyze(&mut pairs(), text)
                .into_iter()
                .map(|t| t.text)
                .collect()
        };
        assert_eq!(
            terms("Quote, next week!"),
            ["quote next", "next week"],
            "punctuation does not separate words"
        );
        assert!(terms("One").is_empty());
        let long = format!("before {} after", "x".repeat(MAX_TOKEN_BYTES + 1));
        assert!(terms(&long).is_empty(), "a dropped word leaves a gap");
        // A Chinese word and the dictionary words inside it (at its position) pair with the
        // words of the next position, and only those.
        let zh = terms("北京科技有限公司成立");
        for expected in ["北京 科技", "科技 有限公司", "有限公司 成立", "公司 成立"]
        {
            assert!(zh.contains(&expected.to_string()), "{expected}: {zh:?}");
        }
        assert!(!zh.contains(&"北京 有限公司".to_string()), "{zh:?}");
    }

    #[test]
    fn kana_and_hangul_become_bigrams() {
        assert_eq!(texts(Mode::Query, "김민수"), ["김민", "민수"]);
        assert_eq!(texts(Mode::Query, "カ"), ["カ"]);
    }

    #[test]
    fn prefixes_for_type_ahead() {
        assert_eq!(texts(Mode::Prefix, "Acme"), ["a", "ac", "acm", "acme"]);
        assert_eq!(texts(Mode::Prefix, "张三"), ["张", "张三"]);
        let edges: Vec<String> = analyze(&mut edge(3, 5), "415555")
            .into_iter()
            .map(|t| t.text)
            .collect();
        assert_eq!(edges, ["415", "4155", "41555"]);
    }
}
