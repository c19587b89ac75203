//! Full-text search through the engine API: type-ahead, typos, phones, Chinese, filters,
//! deletes, merges, and an index that is rebuilt or catches up after a crash.

use std::path::Path;

use chrono::{Duration, Utc};
use crmsync::{
    DateRange, Engine, EngineOptions, Error, NewRecord, Page, Patch, RecordId, RecordType,
    SearchError, SearchFilters, SearchOptions, Value,
};

use crate::common::{company, engine, sync};

fn ids(e: &Engine, query: &str) -> Vec<RecordId> {
    ids_with(e, query, &SearchFilters::new())
}

fn ids_with(e: &Engine, query: &str, filters: &SearchFilters) -> Vec<RecordId> {
    e.search(query, filters, Page::first(50))
        .unwrap_or_else(|err| panic!("search {query:?}: {err}"))
        .hits
        .into_iter()
        .map(|h| h.id)
        .collect()
}

fn contact(first: &str, last: &str) -> NewRecord {
    NewRecord::new(RecordType::Contact)
        .with("first_name", first)
        .with("last_name", last)
}

fn note(e: &Engine, subject: &str, body: &str) -> RecordId {
    e.create(
        NewRecord::new(RecordType::Activity)
            .with("kind", "note")
            .with("subject", subject)
            .with("body", Value::LongText(body.to_string())),
    )
    .unwrap()
    .id
}

#[test]
fn type_ahead_finds_a_company_from_its_first_letters() {
    let e = engine();
    let acme = company(&e, "Acme Ltd");
    company(&e, "Globex");
    company(&e, "Academy of Arts");
    for typed in ["ac", "acm", "acme", "ACM", "acme l"] {
        let found = ids(&e, typed);
        assert!(found.contains(&acme), "{typed}: {found:?}");
    }
    assert_eq!(ids(&e, "acm")[0], acme);
    assert_eq!(ids(&e, "acme l"), [acme]);
    assert!(ids(&e, "zzz").is_empty());
}

#[test]
fn a_typo_still_finds_the_record_but_ranks_below_exact_matches() {
    let e = engine();
    let johnson = e.create(contact("Mary", "Johnson")).unwrap().id;
    let corp = company(&e, "Acme Corporation");
    assert_eq!(ids(&e, "jonhson"), [johnson]);
    assert_eq!(ids(&e, "corporaton"), [corp]);
    assert_eq!(
        ids(&e, "Acme Corprationn"),
        [corp],
        "two typos on a long word"
    );
    // Short words tolerate no typo.
    assert!(ids(&e, "mray").is_empty());
    let exact = e.create(contact("Jonhson", "Smith")).unwrap().id;
    assert_eq!(ids(&e, "jonhson"), [exact, johnson]);
}

#[test]
fn phone_numbers_match_in_any_format() {
    let e = engine();
    let ann = e
        .create(contact("Ann", "Lee").with("phones", Value::List(vec!["4155550000".into()])))
        .unwrap()
        .id;
    let bob = e
        .create(contact("Bob", "Wu").with("phones", Value::List(vec!["+86 138 1234 5678".into()])))
        .unwrap()
        .id;
    for typed in [
        "+1 (415) 555",
        "415-555-0000",
        "(415) 555 0000",
        "415555",
        "phone:415",
    ] {
        assert_eq!(ids(&e, typed), [ann], "{typed}");
    }
    for typed in ["13812345678", "+86 138", "0086 138 1234", "138-1234-5678"] {
        assert_eq!(ids(&e, typed), [bob], "{typed}");
    }
}

#[test]
fn chinese_names_companies_and_notes_are_found_by_their_words() {
    let e = engine();
    let zhang = e.create(contact("三", "张")).unwrap().id;
    let li = e
        .create(NewRecord::new(RecordType::Contact).with("first_name", "李四"))
        .unwrap()
        .id;
    let bj = company(&e, "北京科技有限公司");
    let mixed = company(&e, "Acme 上海 office");
    let quote = note(
        &e,
        "跟进",
        "今天拜访了客户。客户希望下周报价，预算大约五十万。",
    );
    assert_eq!(ids(&e, "张三"), [zhang]);
    assert_eq!(ids(&e, "张"), [zhang], "type-ahead on a family name");
    assert_eq!(ids(&e, "李四"), [li]);
    assert_eq!(ids(&e, "北京科技"), [bj]);
    assert_eq!(ids(&e, "科技公司"), [bj]);
    assert_eq!(ids(&e, "有限公司"), [bj]);
    assert_eq!(ids(&e, "报价"), [quote]);
    assert_eq!(ids(&e, "\"下周报价\""), [quote]);
    assert_eq!(ids(&e, "上海 acme"), [mixed]);
    let hit = &e
        .search("报价", &SearchFilters::new(), Page::default())
        .unwrap()
        .hits[0];
    let snippet = hit.snippet.as_ref().expect("a snippet of the note");
    assert_eq!(snippet.field, "body");
    assert!(snippet.marked("[", "]").contains("[报价]"), "{snippet:?}");
}

#[test]
fn phrases_scopes_and_exclusions() {
    let e = engine();
    let renewal = e
        .create(
            NewRecord::new(RecordType::Deal)
                .with("name", "Acme renewal 2025")
                .with(
                    "tags",
                    Value::List(vec!["VIP".into(), "key account".into()]),
                ),
        )
        .unwrap()
        .id;
    let other = e
        .create(NewRecord::new(RecordType::Deal).with("name", "Renewal of the Acme contract"))
        .unwrap()
        .id;
    let ann = e
        .create(
            contact("Ann", "Lee")
                .with("emails", Value::List(vec!["Ann.Lee@globex.example".into()])),
        )
        .unwrap()
        .id;
    let mut both = ids(&e, "acme renewal");
    both.sort();
    let mut expected = vec![renewal, other];
    expected.sort();
    assert_eq!(both, expected);
    assert_eq!(ids(&e, "\"acme renewal\""), [renewal]);
    assert_eq!(ids(&e, "acme -contract"), [renewal]);
    assert_eq!(ids(&e, "tag:vip"), [renewal]);
    assert_eq!(ids(&e, "tag:\"key account\""), [renewal]);
    assert_eq!(ids(&e, "email:ann.lee@globex.example"), [ann]);
    assert_eq!(ids(&e, "email:globex.example"), [ann]);
    assert_eq!(ids(&e, "ann.lee"), [ann]);
    assert_eq!(ids(&e, "globex"), [ann], "the domain is searchable");
    let mut scoped = ids(&e, "name:acme renewal");
    scoped.sort();
    assert_eq!(scoped, expected);
}

/// A phrase of three words or more is looked up by its word pairs; a record holding the pairs
/// apart ("quote next month ... next week") is not a hit, however well it would score, on any
/// page and in the total.
#[test]
fn longer_phrases_need_their_words_in_sequence() {
    let e = engine();
    let exact = note(
        &e,
        "Call with Acme",
        "A long call about many things: the customer said it wants a quote next week, after \
         the board meeting, and we agreed to send the draft contract before that",
    );
    let mut apart = Vec::new();
    for i in 0..15 {
        apart.push(note(
            &e,
            "Call",
            &format!("quote next month, next week {i}"),
        ));
    }
    let split = note(&e, "Call", "quote next. Week two.");
    let found = e
        .search(
            "\"quote next week\"",
            &SearchFilters::new(),
            Page::first(10).with_total(),
        )
        .unwrap();
    let mut hits: Vec<RecordId> = found.hits.iter().map(|h| h.id).collect();
    hits.sort();
    let mut sequences = vec![exact, split];
    sequences.sort();
    assert_eq!(hits, sequences, "punctuation does not break a sequence");
    assert_eq!(found.total, Some(2));
    let mut two_words = ids(&e, "\"next week\"");
    two_words.sort();
    let mut expected = apart.clone();
    expected.extend([exact, split]);
    expected.sort();
    assert_eq!(two_words, expected, "a two-word phrase is one pair");
    assert_eq!(ids(&e, "\"quote next week two\""), [split]);
    assert_eq!(ids(&e, "acme \"quote next week\""), [exact]);
    assert_eq!(ids(&e, "\"quote next week\" acme"), [exact]);
    assert!(ids(&e, "globex \"quote next week\"").is_empty());
    let mut scoped = ids(&e, "text:\"quote next week\"");
    scoped.sort();
    assert_eq!(scoped, sequences, "scoped phrases");
    let mut without = ids(&e, "call -\"quote next week\"");
    without.sort();
    apart.sort();
    assert_eq!(
        without, apart,
        "an excluded phrase excludes only the sequence"
    );
}

#[test]
fn filters_combine_with_text() {
    let e = engine();
    let acme = company(&e, "Acme");
    let deal = |name: &str, stage: &str, owner: &str| {
        e.create(
            NewRecord::new(RecordType::Deal)
                .with("name", name)
                .with("company", acme)
                .with("stage", stage)
                .with("owner", owner),
        )
        .unwrap()
        .id
    };
    let early = deal("Acme pilot", "prospecting", "alice");
    let late = deal("Acme rollout", "negotiation", "bob");
    let lead = e
        .create(
            contact("Acme", "Buyer")
                .with("lifecycle", "lead")
                .with("tags", Value::List(vec!["trade-show".into()])),
        )
        .unwrap()
        .id;
    let deals = SearchFilters::new().record_type(RecordType::Deal);
    let mut found = ids_with(&e, "acme", &deals);
    found.sort();
    assert_eq!(found, [early, late]);
    assert_eq!(
        ids_with(&e, "acme", &deals.clone().stage("negotiation")),
        [late]
    );
    assert_eq!(
        ids_with(&e, "acme", &SearchFilters::new().owner("alice")),
        [early]
    );
    assert_eq!(
        ids_with(&e, "acme", &SearchFilters::new().lifecycle("lead")),
        [lead]
    );
    assert_eq!(
        ids_with(&e, "acme", &SearchFilters::new().tag("Trade-Show")),
        [lead]
    );
    let now = Utc::now();
    let recent = DateRange::since(now - Duration::hours(1));
    assert_eq!(
        ids_with(&e, "acme", &deals.clone().created(recent)).len(),
        2
    );
    let future = DateRange::since(now + Duration::hours(1));
    assert!(ids_with(&e, "acme", &deals.clone().updated(future)).is_empty());
    // Filters alone list everything they allow.
    assert_eq!(ids_with(&e, "", &deals).len(), 2);
}

/// Filters are checked per hit rather than inside the query: hits that would outrank every
/// allowed record (companies named like the word) must not take the page's places, across
/// index segments, pages, totals, deletes and new writes.
#[test]
fn filtered_pages_hold_only_allowed_records_in_rank_order() {
    let e = engine();
    for _ in 0..12 {
        company(&e, "Zeta Zeta");
    }
    let mut allowed = Vec::new();
    for i in 0..30 {
        // Separate writes: the index sees several segments.
        let id = e
            .create(
                contact(&format!("Person{i}"), "Zeta")
                    .with("lifecycle", if i % 3 == 0 { "lead" } else { "customer" })
                    .with("tags", Value::List(vec![format!("t{}", i % 2)])),
            )
            .unwrap()
            .id;
        if i % 3 != 0 && i % 2 == 1 {
            allowed.push(id);
        }
    }
    let filters = SearchFilters::new()
        .record_type(RecordType::Contact)
        .record_type(RecordType::Deal)
        .lifecycle("customer")
        .tag("T1");
    let page = |offset| {
        e.search("zeta", &filters, Page::new(offset, 4).with_total())
            .unwrap()
    };
    let mut seen = Vec::new();
    for offset in (0..12).step_by(4) {
        let found = page(offset);
        assert_eq!(found.total, Some(allowed.len()));
        seen.extend(found.hits.iter().map(|h| h.id));
    }
    let mut sorted = seen.clone();
    sorted.sort();
    let mut expected = allowed.clone();
    expected.sort();
    assert_eq!(
        sorted, expected,
        "pages cover the allowed records once each"
    );
    assert_eq!(
        ids_with(&e, "zeta", &filters),
        seen,
        "pages follow the ranking"
    );
    e.delete(allowed[0]).unwrap();
    let fresh = e
        .create(
            contact("Fresh", "Zeta")
                .with("lifecycle", "customer")
                .with("tags", Value::List(vec!["t1".into()])),
        )
        .unwrap()
        .id;
    let mut now = ids_with(&e, "zeta", &filters);
    now.sort();
    let mut expected: Vec<RecordId> = allowed[1..].to_vec();
    expected.push(fresh);
    expected.sort();
    assert_eq!(now, expected);
    assert_eq!(page(0).total, Some(expected.len()));
}

#[test]
fn ties_are_ordered_by_id_and_pages_do_not_overlap() {
    let e = engine();
    let made: Vec<RecordId> = (0..25).map(|_| company(&e, "Widget Co")).collect();
    let all = e
        .search(
            "widget",
            &SearchFilters::new(),
            Page::first(100).with_total(),
        )
        .unwrap();
    assert_eq!(all.total, Some(25));
    let order: Vec<RecordId> = all.hits.iter().map(|h| h.id).collect();
    let mut sorted = made.clone();
    sorted.sort();
    assert_eq!(order, sorted, "equal scores: id order");
    let mut paged = Vec::new();
    let mut page = Page::first(10);
    loop {
        let hits = e
            .search("widget", &SearchFilters::new(), page)
            .unwrap()
            .hits;
        if hits.is_empty() {
            break;
        }
        paged.extend(hits.into_iter().map(|h| h.id));
        page = page.next();
    }
    assert_eq!(paged, order);
}

#[test]
fn deleted_records_never_appear_and_restored_ones_come_back() {
    let e = engine();
    let acme = company(&e, "Acme");
    assert_eq!(ids(&e, "acme"), [acme]);
    e.delete(acme).unwrap();
    assert!(ids(&e, "acme").is_empty());
    e.restore(acme).unwrap();
    assert_eq!(ids(&e, "acme"), [acme]);
    e.update(acme, Patch::new().set("name", "Initech")).unwrap();
    assert!(ids(&e, "acme").is_empty());
    assert_eq!(ids(&e, "initech"), [acme]);
}

#[test]
fn contacts_and_deals_are_found_by_their_company_name_even_after_a_rename() {
    let e = engine();
    let acme = company(&e, "Initech");
    let ann = e
        .create(contact("Ann", "Lee").with("company", acme))
        .unwrap()
        .id;
    let found = ids_with(
        &e,
        "initech",
        &SearchFilters::new().record_type(RecordType::Contact),
    );
    assert_eq!(found, [ann]);
    e.update(acme, Patch::new().set("name", "Initrode"))
        .unwrap();
    let contacts = SearchFilters::new().record_type(RecordType::Contact);
    assert_eq!(ids_with(&e, "initrode", &contacts), [ann]);
    assert!(ids_with(&e, "initech", &contacts).is_empty());
}

#[test]
fn a_record_merged_from_another_replica_becomes_searchable() {
    let a = engine();
    let b = engine();
    let acme = company(&a, "Acme Ltd");
    note(&a, "Kickoff", "Discussed the rollout plan with Acme");
    assert!(ids(&b, "acme").is_empty());
    sync(&a, &b);
    assert_eq!(ids(&b, "acme ltd"), [acme]);
    assert_eq!(ids(&b, "rollout").len(), 1);
    a.update(acme, Patch::new().set("name", "Acme Holdings"))
        .unwrap();
    sync(&a, &b);
    assert_eq!(ids(&b, "holdings"), [acme]);
}

#[test]
fn a_query_syntax_error_names_its_position() {
    let e = engine();
    match e.search("acme \"big deal", &SearchFilters::new(), Page::default()) {
        Err(Error::Search(SearchError::Syntax { position, .. })) => assert_eq!(position, 5),
        other => panic!("expected a syntax error, got {other:?}"),
    }
    match e.search("emial:ann", &SearchFilters::new(), Page::default()) {
        Err(Error::Search(SearchError::UnknownField { field, position })) => {
            assert_eq!((field.as_str(), position), ("emial", 0));
        }
        other => panic!("expected an unknown field, got {other:?}"),
    }
    let err = e
        .search("a - b", &SearchFilters::new(), Page::default())
        .unwrap_err();
    assert!(err.to_string().contains("character 2"), "{err}");
}

fn seed(e: &Engine) {
    company(e, "Acme Ltd");
    company(e, "北京科技有限公司");
    e.create(contact("Ann", "Lee").with("phones", Value::List(vec!["4155550000".into()])))
        .unwrap();
    note(e, "Call", "Customer wants a quote next week");
}

const QUERIES: [&str; 5] = ["acm", "北京", "+1 415 555", "quote", "custmer"];

fn snapshot(e: &Engine) -> Vec<Vec<RecordId>> {
    QUERIES.iter().map(|q| ids(e, q)).collect()
}

fn open(path: &Path) -> Engine {
    Engine::open(path).expect("database opens")
}

#[test]
fn a_deleted_or_corrupted_index_directory_is_rebuilt_with_the_same_results() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm.redb");
    let index_dir = Engine::search_dir(&path);
    let before = {
        let e = open(&path);
        seed(&e);
        snapshot(&e)
    };
    assert!(before.iter().all(|hits| hits.len() == 1), "{before:?}");
    assert!(index_dir.join("meta.json").exists());

    std::fs::remove_dir_all(&index_dir).unwrap();
    assert_eq!(snapshot(&open(&path)), before, "after deleting the index");

    std::fs::write(index_dir.join("meta.json"), b"{ not json").unwrap();
    assert_eq!(snapshot(&open(&path)), before, "after corrupting meta.json");

    for entry in std::fs::read_dir(&index_dir).unwrap() {
        let file = entry.unwrap().path();
        if file.extension().is_some_and(|x| x == "idx" || x == "term") {
            let mut bytes = std::fs::read(&file).unwrap();
            let n = bytes.len();
            bytes[n / 2] ^= 0xff;
            std::fs::write(&file, bytes).unwrap();
        }
    }
    assert_eq!(
        snapshot(&open(&path)),
        before,
        "after flipping bytes in segments"
    );

    std::fs::remove_dir_all(&index_dir).unwrap();
    std::fs::write(&index_dir, b"a file where the directory should be").unwrap();
    assert_eq!(
        snapshot(&open(&path)),
        before,
        "after replacing the directory"
    );
}

#[test]
fn the_index_catches_up_after_a_crash_between_store_and_index_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm.redb");
    let (acme, old) = {
        let e = open(&path);
        let acme = company(&e, "Acme Ltd");
        let old = company(&e, "Obsolete Inc");
        assert_eq!(ids(&e, "acme"), [acme]);
        (acme, old)
    };
    // Writes that reach the store but never the index: what a process killed right after the
    // store commit leaves behind.
    let fresh = {
        let no_index = SearchOptions {
            enabled: false,
            ..SearchOptions::default()
        };
        let e = Engine::open_with_search(&path, EngineOptions::default(), no_index).unwrap();
        assert!(matches!(
            e.search("acme", &SearchFilters::new(), Page::default()),
            Err(Error::Search(SearchError::Disabled))
        ));
        e.update(acme, Patch::new().set("name", "Acme Holdings"))
            .unwrap();
        e.delete(old).unwrap();
        company(&e, "Newco")
    };
    let e = open(&path);
    assert_eq!(ids(&e, "holdings"), [acme]);
    assert!(ids(&e, "obsolete").is_empty());
    assert_eq!(ids(&e, "newco"), [fresh]);
    assert!(ids(&e, "ltd").is_empty());
}

#[test]
fn a_write_is_searchable_as_soon_as_it_returns_on_any_thread() {
    let e = engine();
    let writer = e.clone();
    let handle = std::thread::spawn(move || {
        (0..20)
            .map(|i| company(&writer, &format!("Batch{i} Trading")))
            .collect::<Vec<_>>()
    });
    let made = handle.join().unwrap();
    for (i, id) in made.iter().enumerate() {
        assert_eq!(
            ids(&e, &format!("batch{i}"))[0],
            *id,
            "the exact word ranks first"
        );
    }
    let imported = e
        .create_many(
            (0..200)
                .map(|i| NewRecord::new(RecordType::Company).with("name", format!("Bulk {i}")))
                .collect(),
        )
        .unwrap();
    let total = e
        .search("bulk", &SearchFilters::new(), Page::first(1).with_total())
        .unwrap()
        .total;
    assert_eq!(total, Some(imported.len()));
}
