//! CSV import and export, JSON export.

use crmsync::{Error, FilterOp, ImportOptions, ListQuery, RecordType, Value};

use crate::common::engine;

const COMPANIES: &str = include_str!("../examples/data/companies.csv");
const CONTACTS: &str = include_str!("../examples/data/contacts.csv");

#[test]
fn shipped_csv_imports_with_bad_rows_reported_by_line() {
    let e = engine();
    let opts = ImportOptions::default();
    let companies = e
        .import_csv(COMPANIES.as_bytes(), &RecordType::Company, &opts)
        .unwrap();
    assert_eq!((companies.created.len(), companies.errors.len()), (5, 0));
    let contacts = e
        .import_csv(CONTACTS.as_bytes(), &RecordType::Contact, &opts)
        .unwrap();
    assert_eq!(contacts.created.len(), 5);
    let lines: Vec<u64> = contacts.errors.iter().map(|r| r.line).collect();
    assert_eq!(lines, [6, 7]);
    assert!(contacts.errors[0].message.contains("tom.reed@kestrel"));
    assert!(contacts.errors[1].message.contains("Unknown Co"));

    let zhang = e
        .list(&ListQuery::new(RecordType::Contact).filter("last_name", FilterOp::Eq, "张"))
        .unwrap();
    assert_eq!(zhang.len(), 1);
    let company = zhang[0].get("company").and_then(Value::as_link).unwrap();
    assert_eq!(
        e.get(company).unwrap().unwrap().text("name"),
        Some("北京科技有限公司")
    );
    let acme = e
        .list(&ListQuery::new(RecordType::Company).filter("name", FilterOp::Eq, "acme robotics"))
        .unwrap();
    assert_eq!(
        acme[0].get("annual_revenue"),
        Some(&Value::Money("58000000 USD".parse().unwrap()))
    );
    assert_eq!(
        acme[0].get("tags"),
        Some(&Value::List(vec!["key-account".into(), "west".into()]))
    );
}

#[test]
fn strict_import_stores_nothing_when_a_row_is_bad() {
    let e = engine();
    e.import_csv(
        COMPANIES.as_bytes(),
        &RecordType::Company,
        &ImportOptions::default(),
    )
    .unwrap();
    let err = e
        .import_csv(
            CONTACTS.as_bytes(),
            &RecordType::Contact,
            &ImportOptions { strict: true },
        )
        .unwrap_err();
    match &err {
        Error::Import(rows) => assert_eq!(rows.len(), 2),
        other => panic!("expected an import error, got {other:?}"),
    }
    assert!(err.to_string().contains("line 6"), "{err}");
    assert_eq!(e.count(&RecordType::Contact).unwrap(), 0);
}

#[test]
fn unknown_columns_and_ragged_rows_are_reported() {
    let e = engine();
    let err = e
        .import_csv(
            "name,colour\nAcme,red\n".as_bytes(),
            &RecordType::Company,
            &ImportOptions::default(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("colour"), "{err}");

    let report = e
        .import_csv(
            "name,employee_count\nA,3\nB\nC,lots\nD,4\n".as_bytes(),
            &RecordType::Company,
            &ImportOptions::default(),
        )
        .unwrap();
    assert_eq!(report.created.len(), 2);
    let lines: Vec<u64> = report.errors.iter().map(|r| r.line).collect();
    assert_eq!(lines, [3, 4]);
    assert!(report.errors[1].message.contains("lots"));
}

#[test]
fn csv_export_imports_back_to_the_same_values() {
    let a = engine();
    let opts = ImportOptions::default();
    a.import_csv(COMPANIES.as_bytes(), &RecordType::Company, &opts)
        .unwrap();
    let mut csv = Vec::new();
    assert_eq!(a.export_csv(&RecordType::Company, &mut csv).unwrap(), 5);
    // Drop the columns import does not take (id and timestamps) before importing back.
    let text = String::from_utf8(csv).unwrap();
    let mut reader = ::csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let keep: Vec<usize> = (0..headers.len())
        .filter(|&i| !["id", "created_at", "updated_at"].contains(&&headers[i]))
        .collect();
    let mut out = ::csv::Writer::from_writer(Vec::new());
    out.write_record(keep.iter().map(|&i| &headers[i])).unwrap();
    for row in reader.records() {
        let row = row.unwrap();
        out.write_record(keep.iter().map(|&i| &row[i])).unwrap();
    }
    let b = engine();
    let report = b
        .import_csv(
            out.into_inner().unwrap().as_slice(),
            &RecordType::Company,
            &opts,
        )
        .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let fields = |e: &crmsync::Engine| -> Vec<_> {
        e.list(&ListQuery::new(RecordType::Company))
            .unwrap()
            .into_iter()
            .map(|r| r.fields)
            .collect()
    };
    assert_eq!(fields(&a), fields(&b));
}

#[test]
fn json_export_writes_natural_values() {
    let e = engine();
    e.import_csv(
        COMPANIES.as_bytes(),
        &RecordType::Company,
        &ImportOptions::default(),
    )
    .unwrap();
    let mut out = Vec::new();
    assert_eq!(e.export_json(&RecordType::Company, &mut out).unwrap(), 5);
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let first = &json.as_array().unwrap()[0];
    assert_eq!(first["type"], "company");
    assert_eq!(first["fields"]["name"], "Acme Robotics");
    assert_eq!(first["fields"]["employee_count"], 420);
    assert_eq!(first["fields"]["annual_revenue"]["minor"], 5_800_000_000i64);
    assert_eq!(first["fields"]["annual_revenue"]["currency"], "USD");
    assert_eq!(first["fields"]["tags"][1], "west");
    let mut empty = Vec::new();
    assert_eq!(e.export_json(&RecordType::Deal, &mut empty).unwrap(), 0);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&empty).unwrap(),
        serde_json::json!([])
    );
}
