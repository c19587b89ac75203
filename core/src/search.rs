//! Full-text search: a tantivy index derived from the store, always in step with it.
//!
//! The index lives in a directory beside the database file (`crm.redb` → `crm.redb.search/`),
//! or in memory for in-memory engines. The store is the truth: the index is rebuilt when it is
//! missing, corrupt, or written by another index version or for another database, and otherwise
//! catches up from the last local log sequence it indexed (kept in its commit payload).
//!
//! **Freshness.** One indexer thread per engine owns the index writer. Every committed write
//! (local create / update / delete / restore, import, merge) wakes it with its log sequence; it
//! reads the log from the last sequence it indexed, re-indexes the records named there, commits
//! once for the whole batch and reloads the reader. Writes arriving during a commit are batched
//! into the next one (group commit), so commits never queue up. Index commits are not fsynced
//! (see the `indexer` module): a commit then costs a few milliseconds instead of ~90, which keeps a write
//! searchable well within 100 ms without an overlay. A search first reads the store's newest log
//! sequence and waits until the index has reached it, so a search never misses a write that
//! committed before it started, whichever path made the write.
//!
//! **Crash safety.** If the process dies between a store commit and the index commit, the
//! index's payload names an older sequence and the next open catches up. If power loss tears an
//! unsynced index, its checksums fail on open and it is rebuilt from the store.

mod collect;
mod directory;
mod document;
mod exclusion;
mod fields;
mod filter;
mod indexer;
mod on_disk;
mod plan;
mod snippet;
mod stats;
mod syntax;
mod tokenizer;
mod typos;

use std::ops::Range;

use chrono::{DateTime, Utc};

use crate::model::{RecordId, RecordType};

pub(crate) use indexer::SearchIndex;

/// A search failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SearchError {
    /// The query is malformed.
    #[error("search query, at character {position}: {message}")]
    Syntax {
        /// Character (not byte) offset of the problem, from 0.
        position: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A `field:` scope names no searchable field.
    #[error(
        "search query, at character {position}: unknown field '{field}' (known: {}); put text with a colon in quotes",
        syntax::SCOPE_NAMES
    )]
    UnknownField {
        /// The name before the colon.
        field: String,
        /// Character offset of the name, from 0.
        position: usize,
    },
    /// The index failed (I/O, or corrupt data found while searching).
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// The index directory could not be prepared.
    #[error("search index directory {path}: {source}")]
    Io {
        /// The directory.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The indexer could not bring the index up to date; it retries on the next write.
    #[error("search index is behind the store: {0}")]
    Indexing(String),
    /// The engine was opened with search disabled.
    #[error("search is disabled for this engine (EngineOptions::search.enabled)")]
    Disabled,
    /// Reading the records or the log to index failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The result type of search.
pub type Result<T, E = SearchError> = std::result::Result<T, E>;

/// Options of the search index.
#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// Whether the engine keeps a search index (default true). Without one, `search` fails with
    /// [`SearchError::Disabled`]; an index left on disk catches up when it is enabled again.
    pub enabled: bool,
    /// Indexing threads of the writer (default: 2, or 1 on a single core).
    pub writer_threads: usize,
    /// Memory budget of the writer in bytes, shared by its threads (default 64 MB; at least
    /// 15 MB per thread).
    pub writer_memory: usize,
    /// Memory budget of the writer when the index is built from scratch (default 256 MB; the
    /// larger of this and `writer_memory` applies). Each thread's share of the budget fills one
    /// segment before it is written: at 64 MB a 200k-record rebuild wrote and then merged a
    /// dozen segments, at 256 MB it writes about two, which is faster to build and to search.
    /// The memory is taken only while segments that large are being filled.
    pub rebuild_memory: usize,
}

impl Default for SearchOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            enabled: true,
            writer_threads: cores.clamp(1, 2),
            writer_memory: 64 << 20,
            rebuild_memory: 256 << 20,
        }
    }
}

/// A time range: `from` inclusive, `to` exclusive; an open end is `None`.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DateRange {
    /// Earliest time included.
    #[cfg_attr(feature = "uniffi", uniffi(default = None))]
    pub from: Option<DateTime<Utc>>,
    /// First time excluded.
    #[cfg_attr(feature = "uniffi", uniffi(default = None))]
    pub to: Option<DateTime<Utc>>,
}

impl DateRange {
    /// `from <= t < to`.
    pub fn between(from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        Self {
            from: Some(from),
            to: Some(to),
        }
    }

    /// `t >= from`.
    pub fn since(from: DateTime<Utc>) -> Self {
        Self {
            from: Some(from),
            to: None,
        }
    }

    /// `t < to`.
    pub fn before(to: DateTime<Utc>) -> Self {
        Self {
            from: None,
            to: Some(to),
        }
    }
}

/// Restrictions combined with the query text (all must hold; within a list, any value).
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchFilters {
    /// Record types (any of).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub types: Vec<RecordType>,
    /// Deal stages (any of).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub stages: Vec<String>,
    /// Owners (any of), exact values.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub owners: Vec<String>,
    /// Contact lifecycles (any of).
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub lifecycles: Vec<String>,
    /// Tags (all of), case-insensitive.
    #[cfg_attr(feature = "uniffi", uniffi(default))]
    pub tags: Vec<String>,
    /// Creation time.
    #[cfg_attr(feature = "uniffi", uniffi(default = None))]
    pub created: Option<DateRange>,
    /// Time of the latest change.
    #[cfg_attr(feature = "uniffi", uniffi(default = None))]
    pub updated: Option<DateRange>,
}

impl SearchFilters {
    /// No restriction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also allows records of this type (the first call restricts to it).
    pub fn record_type(mut self, t: RecordType) -> Self {
        self.types.push(t);
        self
    }

    /// Also allows deals in this stage.
    pub fn stage(mut self, stage: &str) -> Self {
        self.stages.push(stage.to_string());
        self
    }

    /// Also allows records of this owner.
    pub fn owner(mut self, owner: &str) -> Self {
        self.owners.push(owner.to_string());
        self
    }

    /// Also allows contacts in this lifecycle stage.
    pub fn lifecycle(mut self, lifecycle: &str) -> Self {
        self.lifecycles.push(lifecycle.to_string());
        self
    }

    /// Requires this tag.
    pub fn tag(mut self, tag: &str) -> Self {
        self.tags.push(tag.to_string());
        self
    }

    /// Restricts the creation time.
    pub fn created(mut self, range: DateRange) -> Self {
        self.created = Some(range);
        self
    }

    /// Restricts the time of the latest change.
    pub fn updated(mut self, range: DateRange) -> Self {
        self.updated = Some(range);
        self
    }
}

/// Which hits to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Hits skipped.
    pub offset: usize,
    /// Hits returned at most (capped at [`Page::MAX_LIMIT`]).
    pub limit: usize,
    /// Whether to count every match ([`SearchResults::total`]). Counting evaluates every match
    /// instead of only the best ones, so ask for it once (e.g. on the first page).
    pub total: bool,
}

impl Default for Page {
    /// The first 20 hits.
    fn default() -> Self {
        Self::first(20)
    }
}

impl Page {
    /// The largest page served.
    pub const MAX_LIMIT: usize = 1000;

    /// The first `limit` hits.
    pub fn first(limit: usize) -> Self {
        Self::new(0, limit)
    }

    /// `limit` hits after skipping `offset`.
    pub fn new(offset: usize, limit: usize) -> Self {
        Self {
            offset,
            limit,
            total: false,
        }
    }

    /// The same page, also counting every match.
    pub fn with_total(self) -> Self {
        Self {
            total: true,
            ..self
        }
    }

    /// The page after this one (without the count).
    pub fn next(self) -> Self {
        Self::new(self.offset.saturating_add(self.limit), self.limit)
    }
}

/// A fragment of a field's text with the matching words marked.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    /// The field the text comes from.
    pub field: String,
    /// The fragment (long text is cut to a window around the densest matches).
    pub text: String,
    /// Byte ranges of `text` that matched, in order, not overlapping.
    pub highlights: Vec<Range<usize>>,
}

impl Snippet {
    /// The text with every highlight wrapped in `open` and `close` (e.g. `<b>` and `</b>`).
    pub fn marked(&self, open: &str, close: &str) -> String {
        let mut out = String::with_capacity(self.text.len() + 8 * self.highlights.len());
        let mut at = 0;
        for r in &self.highlights {
            let (Some(before), Some(word)) = (self.text.get(at..r.start), self.text.get(r.clone()))
            else {
                continue;
            };
            out.push_str(before);
            out.push_str(open);
            out.push_str(word);
            out.push_str(close);
            at = r.end;
        }
        out.push_str(self.text.get(at..).unwrap_or_default());
        out
    }
}

/// One search result.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// The record.
    pub id: RecordId,
    /// Its type.
    pub record_type: RecordType,
    /// Relevance (higher is better); ties are ordered by id.
    pub score: f32,
    /// The record's display title (name, subject, or first and last name).
    pub title: String,
    /// Where the query matched, with highlights; `None` when only filters were given or the match
    /// was in a field not shown (such as a company name or a phone number).
    pub snippet: Option<Snippet>,
}

/// A page of results.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchResults {
    /// The hits of the page, best first.
    pub hits: Vec<SearchHit>,
    /// How many records match in all, when the page asked for it ([`Page::with_total`]).
    pub total: Option<usize>,
}
