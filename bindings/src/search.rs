//! Full-text search: [`Engine::search`] and its filters and results.

use std::ops::Range;

use chrono::{DateTime, Utc};
use crmsync::{
    DateRange, Page, RecordId, RecordType, SearchFilters, SearchHit, SearchResults, Snippet,
};

use crate::engine::Engine;
use crate::error::CrmError;
use crate::runtime::run_blocking;
use crate::value::to_usize;

crmsync::uniffi_remote_DateRange!();
crmsync::uniffi_remote_SearchFilters!();
crmsync::uniffi_remote_Snippet!();
crmsync::uniffi_remote_SearchHit!();
crmsync::uniffi_remote_SearchResults!();

// The core's snippet marks its matches with byte ranges; they cross as `Highlight` records.
type ByteRange = Range<usize>;

uniffi::custom_type!(
    /// A matched part of a snippet's text (a `Highlight`).
    ByteRange, Highlight, {
        remote,
        lower: |r| Highlight { start: r.start as u64, end: r.end as u64 },
        try_lift: |h| Ok(to_usize(h.start)?..to_usize(h.end)?),
    }
);

/// A matched part of a snippet: UTF-8 byte offsets into its text, `start` inclusive, `end`
/// exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct Highlight {
    /// First byte.
    pub start: u64,
    /// Byte after the last.
    pub end: u64,
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
        let filters = filters.unwrap_or_default();
        let mut page = Page::new(to_usize(offset)?, to_usize(limit)?);
        if with_total {
            page = page.with_total();
        }
        run_blocking(move || Ok(engine.search(&query, &filters, page)?)).await
    }
}
