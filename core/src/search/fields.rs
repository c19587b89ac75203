//! The index schema: which tantivy fields exist and how each is analyzed.

use tantivy::Index;
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, NumericOptions, STRING, Schema, TextFieldIndexing,
    TextOptions,
};

use super::tokenizer::{self, Mode};

/// Version of the index layout and analysis. An index written with another version is rebuilt.
/// Bump it whenever the fields, the analyzers or what a record contributes change.
pub(crate) const INDEX_VERSION: u32 = 2;

const WORDS: &str = "crm_words";
const PREFIX: &str = "crm_prefix";
const FUZZY: &str = "crm_fuzzy";
const KEYWORD: &str = "crm_keyword";
const PHONE_EDGE: &str = "crm_phone_edge";
const PAIRS: &str = "crm_pairs";

/// Shortest phone-number prefix indexed for type-ahead, in digits.
pub(crate) const MIN_PHONE_PREFIX: usize = 3;
/// Longest phone-number prefix indexed: longer typed prefixes match on their first digits
/// (every longer prefix would be a distinct term per number, bloating the term dictionary).
pub(crate) const MAX_PHONE_PREFIX: usize = 8;

/// Handles to every field of the index schema.
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    /// Record id (16 bytes), for deletes and lookups.
    pub id: Field,
    /// High and low halves of the record id: the stable tiebreak and the hit's id.
    pub id_hi: Field,
    pub id_lo: Field,
    /// Record type name (filter).
    pub record_type: Field,
    /// Deal stage, contact lifecycle, owner (filters, exact values).
    pub stage: Field,
    pub lifecycle: Field,
    pub owner: Field,
    /// Id of the linked company (to re-index contacts and deals when a company is renamed).
    pub company_id: Field,
    /// Creation and last-change time in milliseconds since the epoch (range filters).
    pub created: Field,
    pub updated: Field,
    /// Names (company, person, deal, product, campaign).
    pub name: Field,
    /// Names of the linked company on contacts and deals.
    pub company: Field,
    /// Titles and subjects.
    pub title: Field,
    /// Long text and other text fields, custom text fields included.
    pub text: Field,
    /// Emails whole, local part and domain (lowercased keywords).
    pub email: Field,
    /// Phone numbers as digits, with and without a country code.
    pub phone: Field,
    /// Tags (lowercased keywords).
    pub tag: Field,
    /// Prefixes of the words of names, companies, titles, emails and tags (type-ahead).
    pub prefix: Field,
    /// Prefixes of phone digits (type-ahead).
    pub phone_prefix: Field,
    /// Every alphabetic word of the record's text fields, for typo-tolerant matching (with
    /// frequencies, so that its term queries can be pruned by block-WAND).
    pub all: Field,
    /// Adjacent word pairs of names, companies, titles and text, for phrase queries.
    pub pair: Field,
}

fn text(analyzer: &str, record: IndexRecordOption) -> TextOptions {
    TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(analyzer)
            .set_index_option(record),
    )
}

impl Fields {
    /// The schema and the handles to its fields.
    pub fn schema() -> (Schema, Fields) {
        use IndexRecordOption::{WithFreqs, WithFreqsAndPositions};
        let mut b = Schema::builder();
        let num = NumericOptions::default() | INDEXED | FAST;
        let fields = Fields {
            id: b.add_bytes_field("id", INDEXED),
            id_hi: b.add_u64_field("id_hi", FAST),
            id_lo: b.add_u64_field("id_lo", FAST),
            record_type: b.add_text_field("type", STRING),
            stage: b.add_text_field("stage", STRING),
            lifecycle: b.add_text_field("lifecycle", STRING),
            owner: b.add_text_field("owner", STRING),
            company_id: b.add_bytes_field("company_id", INDEXED),
            created: b.add_i64_field("created", num.clone()),
            updated: b.add_i64_field("updated", num),
            name: b.add_text_field("name", text(WORDS, WithFreqsAndPositions)),
            company: b.add_text_field("company", text(WORDS, WithFreqsAndPositions)),
            title: b.add_text_field("title", text(WORDS, WithFreqsAndPositions)),
            text: b.add_text_field("text", text(WORDS, WithFreqsAndPositions)),
            email: b.add_text_field("email", text(KEYWORD, WithFreqs)),
            phone: b.add_text_field("phone", text(KEYWORD, WithFreqs)),
            tag: b.add_text_field("tag", text(KEYWORD, WithFreqs)),
            prefix: b.add_text_field("prefix", text(PREFIX, WithFreqs)),
            phone_prefix: b.add_text_field("phone_prefix", text(PHONE_EDGE, WithFreqs)),
            all: b.add_text_field("all", text(FUZZY, WithFreqs)),
            pair: b.add_text_field("pair", text(PAIRS, WithFreqs)),
        };
        (b.build(), fields)
    }

    /// Resolves the handles against an opened index's schema (fails if a field is missing).
    pub fn of(index: &Index) -> Option<Fields> {
        let (expected, _) = Fields::schema();
        if index.schema() != expected {
            return None;
        }
        Some(Fields::schema().1)
    }
}

/// Registers the analyzers the schema names.
pub(crate) fn register_analyzers(index: &Index) {
    let m = index.tokenizers();
    m.register(WORDS, tokenizer::words(Mode::Index));
    m.register(PREFIX, tokenizer::words(Mode::Prefix));
    m.register(FUZZY, tokenizer::words(Mode::Fuzzy));
    m.register(KEYWORD, tokenizer::keyword());
    m.register(PAIRS, tokenizer::pairs());
    m.register(
        PHONE_EDGE,
        tokenizer::edge(MIN_PHONE_PREFIX, MAX_PHONE_PREFIX),
    );
}
