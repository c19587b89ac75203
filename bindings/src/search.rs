//! Full-text search: [`Engine::search`] and its filters and results.

use std::time::SystemTime;

use crmsync::{Page, RecordType};

use crate::engine::Engine;
use crate::error::CrmError;
use crate::runtime::run_blocking;
use crate::value::{to_usize, to_utc};

/// A time range: `from` inclusive, `to` exclusive; an open end is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct DateRange {
    /// Earliest time included.
    #[uniffi(default = None)]
    pub from: Option<SystemTime>,
    /// First time excluded.
    #[uniffi(default = None)]
    pub to: Option<SystemTime>,
}

impl TryFrom<DateRange> for crmsync::DateRange {
    type Error = CrmError;
    fn try_from(r: DateRange) -> Result<Self, CrmError> {
        Ok(crmsync::DateRange {
            from: r.from.map(to_utc).transpose()?,
            to: r.to.map(to_utc).transpose()?,
        })
    }
}

/// Restrictions combined with the query text (all must hold; within a list, any value).
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct SearchFilters {
    /// Record types (any of).
    #[uniffi(default)]
    pub types: Vec<String>,
    /// Deal stages (any of).
    #[uniffi(default)]
    pub stages: Vec<String>,
    /// Owners (any of), exact values.
    #[uniffi(default)]
    pub owners: Vec<String>,
    /// Contact lifecycles (any of).
    #[uniffi(default)]
    pub lifecycles: Vec<String>,
    /// Tags (all of), case-insensitive.
    #[uniffi(default)]
    pub tags: Vec<String>,
    /// Creation time.
    #[uniffi(default = None)]
    pub created: Option<DateRange>,
    /// Time of the latest change.
    #[uniffi(default = None)]
    pub updated: Option<DateRange>,
}

impl TryFrom<SearchFilters> for crmsync::SearchFilters {
    type Error = CrmError;
    fn try_from(f: SearchFilters) -> Result<Self, CrmError> {
        Ok(crmsync::SearchFilters {
            types: f.types.into_iter().map(RecordType::from).collect(),
            stages: f.stages,
            owners: f.owners,
            lifecycles: f.lifecycles,
            tags: f.tags,
            created: f.created.map(TryInto::try_into).transpose()?,
            updated: f.updated.map(TryInto::try_into).transpose()?,
        })
    }
}

/// A matched part of a snippet: UTF-8 byte offsets into its text, `start` inclusive, `end`
/// exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct Highlight {
    /// First byte.
    pub start: u64,
    /// Byte after the last.
    pub end: u64,
}

/// A fragment of a field's text with the matching words marked.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Snippet {
    /// The field the text comes from.
    pub field: String,
    /// The fragment.
    pub text: String,
    /// The matched parts, in order, not overlapping.
    pub highlights: Vec<Highlight>,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SearchHit {
    /// The record's id.
    pub id: String,
    /// Its type.
    pub record_type: String,
    /// Relevance (higher is better); ties are ordered by id.
    pub score: f32,
    /// The record's display title.
    pub title: String,
    /// Where the query matched; absent when only filters were given or the match was in a
    /// field not shown.
    pub snippet: Option<Snippet>,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SearchResults {
    /// The hits of the page, best first.
    pub hits: Vec<SearchHit>,
    /// How many records match in all, when the call asked for it (`with_total`).
    pub total: Option<u64>,
}

impl From<crmsync::SearchResults> for SearchResults {
    fn from(r: crmsync::SearchResults) -> Self {
        SearchResults {
            hits: r
                .hits
                .into_iter()
                .map(|h| SearchHit {
                    id: h.id.to_string(),
                    record_type: h.record_type.to_string(),
                    score: h.score,
                    title: h.title,
                    snippet: h.snippet.map(|s| Snippet {
                        field: s.field,
                        text: s.text,
                        highlights: s
                            .highlights
                            .into_iter()
                            .map(|r| Highlight {
                                start: r.start as u64,
                                end: r.end as u64,
                            })
                            .collect(),
                    }),
                })
                .collect(),
            total: r.total.map(|t| t as u64),
        }
    }
}

#[uniffi::export]
impl Engine {
    /// Full-text search over live records: words match as prefixes and with typos,
    /// `"phrases"`, `email:` / `tag:` / `name:` scopes, `-word` excludes, phone numbers in any
    /// format; ranked by relevance. Sees every write committed before the call. A malformed
    /// query fails with `Query`, naming the position. `with_total` also counts every match,
    /// which costs more: ask for it on the first page only.
    #[uniffi::method(default(filters = None, offset = 0, limit = 20, with_total = false))]
    pub async fn search(
        &self,
        query: String,
        filters: Option<SearchFilters>,
        offset: u64,
        limit: u64,
        with_total: bool,
    ) -> Result<SearchResults, CrmError> {
        let engine = self.core()?;
        let filters = filters.unwrap_or_default().try_into()?;
        let mut page = Page::new(to_usize(offset)?, to_usize(limit)?);
        if with_total {
            page = page.with_total();
        }
        run_blocking(move || Ok(engine.search(&query, &filters, page)?.into())).await
    }
}
