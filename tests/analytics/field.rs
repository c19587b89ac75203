//! Visit plan and service statistics.

use chrono::Duration;
use crmsync::analytics::{
    FactorKind, Rates, RfmRow, RfmScore, Segment, ServiceParams, VisitInputs, VisitPlanParams,
    visit_plan,
};
use crmsync::{ListQuery, NewRecord, Patch, Pipeline, RecordId, RecordType, Value};

use super::{at, date, deal, enum_, usd};
use crate::common::{engine, money};

#[test]
fn visit_plan_ranks_and_explains_by_hand() {
    let e = engine();
    let mk = |name: &str, owner: &str, region: Option<&str>| {
        let mut new = NewRecord::new(RecordType::Company)
            .with("name", name)
            .with("owner", owner);
        if let Some(r) = region {
            new = new.with("region", r);
        }
        e.create(new).expect("company").id
    };
    let a = mk("A", "ana", Some("west"));
    let b = mk("B", "ana", Some("west"));
    let c = mk("C", "ben", Some("east"));
    let contact = e
        .create(
            NewRecord::new(RecordType::Contact)
                .with("first_name", "Chen")
                .with("company", c),
        )
        .expect("contact")
        .id;
    deal(
        &e,
        "big",
        vec![
            ("company", a.into()),
            ("stage", enum_("proposal")),
            ("amount", Value::Money(money("10000.00 USD"))),
        ],
    );
    deal(
        &e,
        "small",
        vec![
            ("company", b.into()),
            ("stage", enum_("prospecting")),
            ("amount", Value::Money(money("2000.00 USD"))),
        ],
    );
    for (who, done) in [(a, "2025-06-21"), (c, "2025-01-01")] {
        e.create(
            NewRecord::new(RecordType::Activity)
                .with("kind", "visit")
                .with("done_at", at(done))
                .with("related", Value::Links(vec![who])),
        )
        .expect("activity");
    }
    let case = |who: RecordId, status: &str| {
        e.create(
            NewRecord::new(RecordType::Case)
                .with("subject", "broken")
                .with("company", who)
                .with("status", status),
        )
        .expect("case");
    };
    case(a, "open");
    case(a, "resolved");
    for _ in 0..4 {
        case(c, "new");
    }

    let mut params = VisitPlanParams::new(date("2025-07-01"), Rates::new(usd()));
    params.owner = Some("ANA".to_string());
    let plan = e.visit_plan(&params).expect("plan");
    // A: 0.4·(5000/5000) + 0.3·(10/90) + 0.1·(1/3); B: 0.4·(200/5000) + 0.3·1.
    let got: Vec<(RecordId, f64)> = plan.iter().map(|v| (v.customer, v.score)).collect();
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].0, got[1].0), (a, b));
    assert!((got[0].1 - (0.4 + 0.3 / 9.0 + 0.1 / 3.0)).abs() < 1e-12);
    assert!((got[1].1 - (0.4 * 0.04 + 0.3)).abs() < 1e-12);
    let kinds: Vec<FactorKind> = plan[0].factors.iter().map(|f| f.kind).collect();
    assert_eq!(kinds[0], FactorKind::OpenDeals);
    assert_eq!(
        plan[0].factors[0].detail,
        "open deals worth 5000.00 USD weighted"
    );
    assert_eq!(plan[1].factors[0].detail, "no activity on record");
    assert_eq!(plan[0].days_since_activity, Some(10));
    assert_eq!(plan[0].open_cases, 1);

    // Region east: C and its contact (which takes the company's region). C: 0.3·1 + 0.1·1,
    // plus 0.2 when its RFM segment is important-retain.
    params.owner = None;
    params.region = Some("east".to_string());
    let plan = e.visit_plan(&params).expect("plan");
    assert_eq!(plan.len(), 2);
    assert_eq!(plan[0].customer, c);
    assert!((plan[0].score - 0.4).abs() < 1e-12);
    assert_eq!(plan[1].customer, contact);
    let customers = e
        .list(&ListQuery::new(RecordType::Company))
        .expect("companies");
    let cases = e.list(&ListQuery::new(RecordType::Case)).expect("cases");
    let rfm_row = RfmRow {
        customer: c,
        recency_days: 400,
        frequency: 0,
        monetary: money("0.00 USD"),
        score: RfmScore { r: 1, f: 1, m: 5 },
        segment: Segment::ImportantRetain,
    };
    let pipeline = Pipeline::default();
    let inputs = VisitInputs {
        customers: &customers,
        deals: &[],
        activities: &[],
        cases: &cases,
        rfm: std::slice::from_ref(&rfm_row),
        pipeline: &pipeline,
    };
    let plan = visit_plan::visit_plan(inputs, &params).expect("plan");
    assert!((plan[0].score - 0.6).abs() < 1e-12);
    assert!(
        plan[0]
            .factors
            .iter()
            .any(|f| f.kind == FactorKind::AtRisk && f.detail.contains("important-retain"))
    );
}

#[test]
fn service_stats_match_hand_computation() {
    let e = engine();
    let a = crate::common::company(&e, "A");
    let p = e
        .create(NewRecord::new(RecordType::Contact).with("last_name", "P"))
        .expect("contact")
        .id;
    let case = |fields: Vec<(&str, Value)>, resolved_after_hours: Option<i64>| {
        let mut new = NewRecord::new(RecordType::Case).with("subject", "help");
        for (k, v) in fields {
            new = new.with(k, v);
        }
        let r = e.create(new).expect("case");
        if let Some(h) = resolved_after_hours {
            e.update(
                r.id,
                Patch::new().set("resolved_at", r.created_at + Duration::hours(h)),
            )
            .expect("resolve");
        }
    };
    let sat = |n: i64| Value::Int(n);
    case(
        vec![
            ("status", enum_("resolved")),
            ("priority", enum_("high")),
            ("satisfaction", sat(4)),
            ("company", a.into()),
        ],
        Some(2),
    );
    case(
        vec![
            ("status", enum_("closed")),
            ("priority", enum_("low")),
            ("satisfaction", sat(2)),
            ("company", a.into()),
        ],
        Some(10),
    );
    case(
        vec![
            ("status", enum_("open")),
            ("priority", enum_("high")),
            ("company", a.into()),
        ],
        None,
    );
    case(
        vec![
            ("status", enum_("new")),
            ("priority", enum_("urgent")),
            ("contact", p.into()),
        ],
        None,
    );
    case(
        vec![("satisfaction", sat(5)), ("contact", p.into())],
        Some(4),
    );
    let s = e.service_stats(&ServiceParams::default()).expect("stats");
    assert_eq!(s.cases, 5);
    let status: Vec<(&str, u64)> = s.by_status.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        status,
        vec![
            ("closed", 1),
            ("new", 1),
            ("open", 1),
            ("resolved", 1),
            ("unset", 1)
        ]
    );
    let priority: Vec<(&str, u64)> = s
        .by_priority
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        priority,
        vec![("high", 2), ("low", 1), ("unset", 1), ("urgent", 1)]
    );
    assert_eq!((s.resolved, s.median_resolution_hours), (3, Some(4.0)));
    assert_eq!(s.rated, 3);
    assert!((s.avg_satisfaction.expect("rated") - 11.0 / 3.0).abs() < 1e-12);
    let repeats: Vec<(RecordId, u64, u64)> = s
        .repeat_customers
        .iter()
        .map(|r| (r.customer, r.cases, r.open))
        .collect();
    assert_eq!(repeats, vec![(a, 3, 1), (p, 2, 2)]);
}
