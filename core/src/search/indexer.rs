//! Opening (or rebuilding) the index, and the thread that keeps it in step with the store's log.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tantivy::collector::{Count, DocSetCollector};
use tantivy::index::SegmentId;
use tantivy::query::{BooleanQuery, EnableScoring, Occur, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, Term};

use super::Result;
use super::collect::{SegmentIds, TopById, record_id};
use super::fields::{self, Fields};
use super::filter::FilterCache;
use super::on_disk::{open_dir, payload};
use super::plan::Planner;
use super::stats::StatsCache;
use super::{Page, SearchError, SearchFilters, SearchHit, SearchOptions, SearchResults};
use super::{document, snippet, syntax};
use crate::events::ChangeKind;
use crate::model::{Record, RecordId, RecordType};
use crate::store::Store;

/// Log entries read per batch while catching up.
const BATCH: usize = 5_000;
/// Records a long catch-up indexes between commits.
const COMMIT_EVERY: usize = 50_000;
/// Deepest hit served (offset + limit), so a huge offset cannot allocate a huge heap.
const MAX_DEPTH: usize = 100_000;

/// How long the indexer gathers edits before committing them when no search is waiting.
const COMMIT_PAUSE: Duration = Duration::from_millis(200);

#[derive(Debug)]
struct State {
    /// The newest log sequence known to be committed in the store.
    wanted: u64,
    /// The log sequence the committed, reloaded index reflects.
    searchable: u64,
    /// The last failure, and the sequence the indexer was trying to reach.
    failed: Option<(u64, String)>,
    /// Set when the engine is dropped (or the indexer thread died).
    stop: bool,
    /// Searches waiting for the index to reach a sequence.
    waiting: usize,
}

struct Shared {
    reader: IndexReader,
    fields: Fields,
    state: Mutex<State>,
    changed: Condvar,
    /// The id columns and order of each live segment (segments never change once written).
    segments: Mutex<HashMap<SegmentId, SegmentIds>>,
    /// Filter bitsets per live segment.
    filters: Arc<FilterCache>,
    /// BM25 statistics of the current searcher.
    stats: StatsCache,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // State updates are single assignments: a poisoned lock still holds a valid state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn known_segments(&self) -> MutexGuard<'_, HashMap<SegmentId, SegmentIds>> {
        self.segments.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Per segment of `searcher`: its id columns and order, if already known.
    fn segment_ids(&self, searcher: &Searcher) -> Vec<Option<SegmentIds>> {
        let known = self.known_segments();
        searcher
            .segment_readers()
            .iter()
            .map(|s| known.get(&s.segment_id()).cloned())
            .collect()
    }

    /// Checks the order of segments the reader has not seen before (off the lock: a large
    /// segment takes a millisecond or so), and forgets merged-away ones.
    fn note_order(&self) {
        let searcher = self.reader.searcher();
        let segments = searcher.segment_readers();
        let fresh: Vec<_> = {
            let live: Vec<SegmentId> = segments.iter().map(|s| s.segment_id()).collect();
            self.filters.retain_segments(&live);
            let mut known = self.known_segments();
            known.retain(|id, _| live.contains(id));
            segments
                .iter()
                .filter(|s| !known.contains_key(&s.segment_id()))
                .collect()
        };
        let checked: Vec<_> = fresh
            .into_iter()
            .map(|s| (s.segment_id(), SegmentIds::of(s)))
            .collect();
        self.known_segments().extend(checked);
    }
}

/// The search index of one engine and its indexer thread.
pub(crate) struct SearchIndex {
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("state", &*self.shared.lock())
            .finish_non_exhaustive()
    }
}

impl SearchIndex {
    /// Opens the index in `dir` (in memory when `None`) and starts its indexer, which first
    /// rebuilds it or catches up with the store's log.
    pub fn open(store: Arc<Store>, dir: Option<&Path>, options: &SearchOptions) -> Result<Self> {
        let last = store.last_seq()?;
        let (index, resume) = match dir {
            Some(dir) => open_dir(dir, &store, last)?,
            None => (Index::create_in_ram(Fields::schema().0), None),
        };
        fields::register_analyzers(&index);
        let fields = Fields::of(&index).ok_or_else(|| {
            SearchError::Indexing("the index schema does not match this build".into())
        })?;
        let threads = options.writer_threads.max(1);
        let wanted = if resume.is_none() {
            options.writer_memory.max(options.rebuild_memory)
        } else {
            options.writer_memory
        };
        let memory = wanted.max(threads * (15 << 20) + (1 << 20));
        let writer: IndexWriter = index
            .writer_with_num_threads(threads, memory)
            .map_err(SearchError::from)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(SearchError::from)?;
        let shared = Arc::new(Shared {
            reader,
            fields,
            state: Mutex::new(State {
                wanted: last,
                searchable: resume.unwrap_or(0),
                failed: None,
                stop: false,
                waiting: 0,
            }),
            changed: Condvar::new(),
            segments: Mutex::new(HashMap::new()),
            filters: Arc::default(),
            stats: StatsCache::default(),
        });
        let mut indexer = Indexer {
            shared: shared.clone(),
            store,
            writer,
            indexed: resume.unwrap_or(0),
        };
        let rebuild = resume.is_none();
        let worker = std::thread::Builder::new()
            .name("crmsync-search".into())
            .spawn(move || indexer.run(rebuild))
            .map_err(|e| SearchError::Indexing(format!("cannot start the indexer: {e}")))?;
        Ok(Self {
            shared,
            worker: Mutex::new(Some(worker)),
        })
    }

    /// Tells the indexer the store's log reached `seq`.
    pub fn notify(&self, seq: u64) {
        let mut state = self.shared.lock();
        if seq > state.wanted {
            state.wanted = seq;
            self.shared.changed.notify_all();
        }
    }

    /// Waits until the index reflects log sequence `target`.
    fn wait_for(&self, target: u64) -> Result<(), SearchError> {
        let mut state = self.shared.lock();
        if state.searchable >= target {
            return Ok(());
        }
        if target > state.wanted {
            state.wanted = target;
            self.shared.changed.notify_all();
        }
        state.waiting += 1;
        // The indexer may be pausing to gather edits: it has a search waiting now.
        self.shared.changed.notify_all();
        let outcome = loop {
            if state.searchable >= target {
                break Ok(());
            }
            if let Some((at, message)) = &state.failed
                && *at >= target
            {
                break Err(SearchError::Indexing(message.clone()));
            }
            if state.stop {
                break Err(SearchError::Indexing("the indexer stopped".into()));
            }
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        };
        state.waiting -= 1;
        outcome
    }

    /// Runs a query once the index has caught up with every write committed before the call.
    pub fn search(
        &self,
        store: &Store,
        query: &str,
        filters: &SearchFilters,
        page: Page,
    ) -> Result<SearchResults> {
        let clauses = syntax::parse(query)?;
        self.wait_for(store.last_seq()?)?;
        let searcher = self.shared.reader.searcher();
        let plan =
            Planner::new(self.shared.fields.clone(), searcher.clone()).plan(&clauses, filters);
        let offset = page.offset.min(MAX_DEPTH);
        let limit = page.limit.min(Page::MAX_LIMIT).min(MAX_DEPTH - offset);
        let query = &*plan.query;
        let total = if page.total {
            let count = match &plan.verify {
                Some(verify) => searcher.search(
                    &BooleanQuery::new(vec![
                        (Occur::Must, query.box_clone()),
                        (Occur::Must, verify.box_clone()),
                    ]),
                    &Count,
                ),
                None => searcher.search(query, &Count),
            };
            Some(count.map_err(SearchError::from)?)
        } else {
            None
        };
        let top = if limit == 0 {
            Vec::new()
        } else {
            let mut collector = TopById::new(offset + limit, self.shared.segment_ids(&searcher));
            if let Some(verify) = &plan.verify {
                let weight = verify
                    .weight(EnableScoring::disabled_from_searcher(&searcher))
                    .map_err(SearchError::from)?;
                collector = collector.verified_by(weight);
            }
            let ranked = match plan.ranked {
                Some((text, groups)) => {
                    collector = collector.filtered_by(self.shared.filters.clone(), groups);
                    text
                }
                None => plan.query,
            };
            searcher
                .search_with_statistics_provider(
                    &*ranked,
                    &collector,
                    &self.shared.stats.of(&searcher),
                )
                .map_err(SearchError::from)?
        };
        let page: Vec<_> = top.into_iter().skip(offset).collect();
        let ids: Vec<RecordId> = page.iter().map(|(_, id)| *id).collect();
        let records = store.get_many(&ids)?;
        let mut hits = Vec::with_capacity(limit);
        let mut analyzer = snippet::analyzer();
        for ((score, id), record) in page.into_iter().zip(records) {
            let Some(record) = record.filter(|r| !r.deleted) else {
                continue;
            };
            hits.push(SearchHit {
                id,
                record_type: record.record_type.clone(),
                score,
                title: record.title(),
                snippet: snippet::snippet(&mut analyzer, &record, &plan.needles),
            });
        }
        Ok(SearchResults { hits, total })
    }
}

impl Drop for SearchIndex {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        let worker = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(worker) = worker
            && worker.join().is_err()
        {
            tracing::error!("the search indexer panicked");
        }
    }
}

/// Marks the indexer stopped when its thread ends, even by a panic, so no search waits forever.
struct StopOnExit(Arc<Shared>);

impl Drop for StopOnExit {
    fn drop(&mut self) {
        self.0.lock().stop = true;
        self.0.changed.notify_all();
    }
}

/// The indexer thread's side.
struct Indexer {
    shared: Arc<Shared>,
    store: Arc<Store>,
    writer: IndexWriter,
    /// The sequence the last commit covers.
    indexed: u64,
}

impl Indexer {
    fn run(&mut self, rebuild: bool) {
        let _stop = StopOnExit(self.shared.clone());
        self.shared.note_order();
        if rebuild {
            let wanted = self.shared.lock().wanted;
            let done = self.rebuild().and_then(|seq| self.commit(seq));
            self.finish(wanted, done);
        }
        while let Some(wanted) = self.next_target() {
            let done = self
                .catch_up(self.indexed, wanted)
                .and_then(|seq| self.commit(seq));
            self.finish(wanted, done);
        }
    }

    /// Waits for work; `None` when the engine is dropped.
    fn next_target(&self) -> Option<u64> {
        let mut state = self.shared.lock();
        loop {
            if state.stop {
                return None;
            }
            let retry = state
                .failed
                .as_ref()
                .is_none_or(|(at, _)| state.wanted > *at);
            if state.wanted > state.searchable && retry {
                // Edits come one at a time (typing into a note, a rep working a list): index
                // what gathers for a moment in one commit rather than one commit (files,
                // fsyncs, a reader reload) per edit. A search waiting ends the pause.
                let (paused, _) = self
                    .shared
                    .changed
                    .wait_timeout_while(state, COMMIT_PAUSE, |s| s.waiting == 0 && !s.stop)
                    .unwrap_or_else(|p| p.into_inner());
                state = paused;
                if state.stop {
                    return None;
                }
                return Some(state.wanted);
            }
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    fn finish(&mut self, wanted: u64, done: Result<u64>) {
        let mut state = self.shared.lock();
        match done {
            Ok(seq) => {
                self.indexed = seq;
                // The log holds nothing past `seq`, so the index reflects `wanted` too.
                state.searchable = seq.max(wanted).max(state.searchable);
                state.failed = None;
            }
            Err(e) => {
                if !state.stop {
                    tracing::error!(error = %e, "search indexing failed");
                }
                state.failed = Some((wanted, e.to_string()));
                drop(state);
                if let Err(e) = self.writer.rollback() {
                    tracing::error!(error = %e, "search index rollback failed");
                }
                state = self.shared.lock();
            }
        }
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Stops a long rebuild or catch-up when the engine is dropped (the next open resumes).
    fn check_stop(&self) -> Result<()> {
        if self.shared.lock().stop {
            return Err(SearchError::Indexing("the engine was closed".into()));
        }
        Ok(())
    }

    fn commit(&mut self, seq: u64) -> Result<u64> {
        let mut prepared = self.writer.prepare_commit().map_err(SearchError::from)?;
        prepared.set_payload(&payload(&self.store, seq));
        prepared.commit().map_err(SearchError::from)?;
        self.shared.reader.reload().map_err(SearchError::from)?;
        self.shared.note_order();
        Ok(seq)
    }

    /// Indexes every record of the store from scratch; returns the sequence it covers.
    fn rebuild(&mut self) -> Result<u64> {
        let seq = self.store.last_seq()?;
        self.writer
            .delete_all_documents()
            .map_err(SearchError::from)?;
        // Company names first, so contacts and deals find theirs without a lookup each.
        let mut names = HashMap::new();
        let store = self.store.clone();
        store.scan_type(&RecordType::Company, |record| {
            names.insert(record.id, record.text("name").map(str::to_string));
            true
        })?;
        // Then every record in id order, whatever its type (types the schema does not declare
        // included): each segment then lists its documents in id order, which lets a search
        // settle ties without looking at every tied match (see `collect`).
        let mut records = Vec::new();
        let mut failed = None;
        store.scan_all(|record| {
            if !record.deleted {
                records.push(record);
            }
            if records.len() < 1024 {
                return true;
            }
            let batch = std::mem::take(&mut records);
            match self.index_batch(batch, &mut names) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        self.index_batch(records, &mut names)?;
        Ok(seq)
    }

    /// Adds live records read by a scan.
    fn index_batch(
        &mut self,
        records: Vec<Record>,
        names: &mut HashMap<RecordId, Option<String>>,
    ) -> Result<()> {
        self.check_stop()?;
        for record in records {
            self.add(&record, names)?;
        }
        Ok(())
    }

    /// Re-indexes the records written after `from`, at least up to `until`; returns the
    /// sequence reached. While no search waits, writes that keep arriving join this commit
    /// (fewer, larger segments during an import or a first sync); once `until` is indexed and
    /// a search waits for it, the catch-up stops so the search goes ahead. A long backlog is
    /// committed every [`COMMIT_EVERY`] records, so its progress survives the engine being
    /// closed before the end.
    fn catch_up(&mut self, from: u64, until: u64) -> Result<u64> {
        let mut seq = from;
        let mut uncommitted = 0;
        loop {
            if seq >= until && self.shared.lock().waiting > 0 {
                return Ok(seq);
            }
            if uncommitted >= COMMIT_EVERY {
                self.commit(seq)?;
                self.reached(seq);
                uncommitted = 0;
            }
            self.check_stop()?;
            let events = self.store.changes_since(seq, BATCH)?;
            let Some(last) = events.last() else {
                return Ok(seq);
            };
            seq = last.seq;
            let mut seen = HashSet::new();
            let mut ids = Vec::new();
            for e in &events {
                if seen.insert(e.id) {
                    ids.push(e.id);
                }
            }
            // Contacts and deals carry their company's name: a changed company re-indexes them.
            for e in &events {
                if e.record_type == RecordType::Company && e.kind != ChangeKind::Created {
                    for dependent in self.dependents(e.id)? {
                        if seen.insert(dependent) {
                            ids.push(dependent);
                        }
                    }
                }
            }
            uncommitted += ids.len();
            let mut names = HashMap::new();
            for id in ids {
                self.index(id, true, &mut names)?;
            }
        }
    }

    /// Publishes an intermediate commit of a catch-up that goes on.
    fn reached(&mut self, seq: u64) {
        self.indexed = seq;
        let mut state = self.shared.lock();
        state.searchable = state.searchable.max(seq);
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Records whose committed index document links to `company`.
    fn dependents(&self, company: RecordId) -> Result<Vec<RecordId>> {
        let searcher = self.shared.reader.searcher();
        let term = Term::from_field_bytes(
            self.shared.fields.company_id,
            company.uuid().as_bytes().as_slice(),
        );
        let docs = searcher
            .search(
                &TermQuery::new(term, IndexRecordOption::Basic),
                &DocSetCollector,
            )
            .map_err(SearchError::from)?;
        let mut out = Vec::with_capacity(docs.len());
        for address in docs {
            if let Some(id) = record_id(&searcher, address) {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Replaces a record's document (drops it when the record is deleted or unknown).
    fn index(
        &mut self,
        id: RecordId,
        replace: bool,
        names: &mut HashMap<RecordId, Option<String>>,
    ) -> Result<()> {
        let f = &self.shared.fields;
        if replace {
            self.writer.delete_term(Term::from_field_bytes(
                f.id,
                id.uuid().as_bytes().as_slice(),
            ));
        }
        let Some(record) = self.store.get(id)? else {
            return Ok(());
        };
        if record.deleted {
            return Ok(());
        }
        self.add(&record, names)
    }

    fn add(
        &mut self,
        record: &Record,
        names: &mut HashMap<RecordId, Option<String>>,
    ) -> Result<()> {
        let f = &self.shared.fields;
        let store = &self.store;
        let mut company_name = |company: RecordId| {
            names
                .entry(company)
                .or_insert_with(|| {
                    let row = store.get(company).ok().flatten()?;
                    (!row.deleted)
                        .then(|| row.text("name").map(str::to_string))
                        .flatten()
                })
                .clone()
        };
        let doc = document::build(f, record, &mut company_name);
        self.writer.add_document(doc).map_err(SearchError::from)?;
        Ok(())
    }
}
