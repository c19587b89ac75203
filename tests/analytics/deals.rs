//! Pipeline report and stage funnel.

use chrono::Duration;
use crmsync::analytics::{PipelineParams, Rates, StageChange, StagePath, funnel};
use crmsync::{Currency, Money, Patch, Pipeline, Value};

use super::{at, date, deal, enum_, id, usd};
use crate::common::{engine, money};

#[test]
fn pipeline_forecast_matches_hand_computation() {
    let e = engine();
    let m = |s: &str| Value::Money(money(s));
    deal(
        &e,
        "D1",
        vec![
            ("stage", enum_("prospecting")),
            ("amount", m("1000.00 USD")),
            ("owner", "ana".into()),
            ("expected_close", date("2025-08-15").into()),
        ],
    );
    deal(
        &e,
        "D2",
        vec![
            ("stage", enum_("proposal")),
            ("amount", m("2000.00 USD")),
            ("probability", 70i64.into()),
            ("owner", "ben".into()),
            ("expected_close", date("2025-08-01").into()),
        ],
    );
    deal(
        &e,
        "D3",
        vec![
            ("stage", enum_("negotiation")),
            ("amount", m("500.00 EUR")),
            ("owner", "ana".into()),
            ("expected_close", date("2025-09-10").into()),
        ],
    );
    deal(
        &e,
        "D4",
        vec![
            ("stage", enum_("qualification")),
            ("amount", m("333.33 USD")),
        ],
    );
    deal(&e, "D8", vec![("amount", m("100.00 USD"))]);
    for (name, stage, days) in [("D5", "closed_won", 10), ("D6", "closed_won", 20)] {
        let d = deal(
            &e,
            name,
            vec![("stage", enum_(stage)), ("amount", m("900.00 USD"))],
        );
        let created = e.get(d).expect("get").expect("deal").created_at;
        e.update(
            d,
            Patch::new().set("closed_at", created + Duration::days(days)),
        )
        .expect("close");
    }
    deal(&e, "D7", vec![("stage", enum_("closed_lost"))]);

    let mut params = PipelineParams {
        rates: Some(
            Rates::new(usd())
                .with_rate(Currency::new("EUR").expect("EUR"), 1.1)
                .expect("rate"),
        ),
        ..PipelineParams::default()
    };
    params
        .stage_probability
        .insert("qualification".to_string(), 25);
    let report = e.pipeline_report(&params).expect("pipeline");
    // Weighted USD: (100000×10 + 200000×70 + 33333×25) / 100 = 158333.25 cents → 1583.33.
    assert_eq!(
        report.open.weighted,
        vec![money("400.00 EUR"), money("1583.33 USD")]
    );
    assert_eq!(
        report.open.value,
        vec![money("500.00 EUR"), money("3433.33 USD")]
    );
    assert_eq!(report.open.deals, 5);
    // 1583.3325 + 500 × 0.8 × 1.1 = 2023.3325.
    assert_eq!(report.open.converted_weighted, Some(money("2023.33 USD")));
    let stages: Vec<(Option<&str>, u64, Vec<Money>)> = report
        .by_stage
        .iter()
        .map(|s| {
            (
                s.stage.as_deref(),
                s.totals.deals,
                s.totals.weighted.clone(),
            )
        })
        .collect();
    assert_eq!(
        stages,
        vec![
            (Some("prospecting"), 1, vec![money("100.00 USD")]),
            (Some("qualification"), 1, vec![money("83.33 USD")]),
            (Some("proposal"), 1, vec![money("1400.00 USD")]),
            (Some("negotiation"), 1, vec![money("400.00 EUR")]),
            (None, 1, vec![money("0.00 USD")]),
        ]
    );
    let owners: Vec<(Option<&str>, u64)> = report
        .by_owner
        .iter()
        .map(|o| (o.owner.as_deref(), o.totals.deals))
        .collect();
    assert_eq!(owners, vec![(Some("ana"), 2), (Some("ben"), 1), (None, 2)]);
    let months: Vec<(Option<&str>, Vec<Money>)> = report
        .by_close_month
        .iter()
        .map(|m| (m.month.as_deref(), m.totals.weighted.clone()))
        .collect();
    assert_eq!(
        months,
        vec![
            (Some("2025-08"), vec![money("1500.00 USD")]),
            (Some("2025-09"), vec![money("400.00 EUR")]),
            (None, vec![money("83.33 USD")]),
        ]
    );
    assert_eq!((report.won, report.lost), (2, 1));
    assert!((report.win_rate.expect("closed deals") - 2.0 / 3.0).abs() < 1e-12);
    assert!((report.avg_cycle_days.expect("won deals") - 15.0).abs() < 1e-9);
    assert_eq!(report.won_value, vec![money("1800.00 USD")]);
    // Plain structs: they serialize.
    assert!(
        serde_json::to_string(&report)
            .expect("json")
            .contains("2025-08")
    );
}

fn path(deal: u128, steps: &[(&str, i64)]) -> StagePath {
    let start = at("2025-01-01");
    StagePath {
        deal: id(deal),
        changes: steps
            .iter()
            .map(|(stage, day)| StageChange {
                at: start + Duration::days(*day),
                stage: Some(stage.to_string()),
            })
            .collect(),
    }
}

#[test]
fn funnel_counts_skips_and_returns_by_hand() {
    let paths = [
        path(
            1,
            &[
                ("prospecting", 0),
                ("qualification", 2),
                ("proposal", 5),
                ("closed_won", 9),
            ],
        ),
        // Skips qualification, then is lost.
        path(
            2,
            &[("prospecting", 0), ("proposal", 4), ("closed_lost", 10)],
        ),
        // Goes back to qualification (its current stay there is not over).
        path(
            3,
            &[("qualification", 0), ("proposal", 1), ("qualification", 6)],
        ),
        path(4, &[("prospecting", 0)]),
    ];
    let report = funnel::funnel(&paths, &Pipeline::default());
    assert_eq!((report.deals, report.lost), (4, 1));
    type Step<'a> = (&'a str, u64, u64, Option<f64>, Option<f64>);
    let got: Vec<Step> = report
        .stages
        .iter()
        .map(|s| {
            (
                s.stage.as_str(),
                s.entered,
                s.reached,
                s.conversion_to_next,
                s.median_days,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("prospecting", 3, 4, Some(0.75), Some(3.0)), // stays 2 and 4 days
            ("qualification", 2, 3, Some(1.0), Some(2.0)), // 3 and 1 days
            ("proposal", 3, 3, Some(1.0 / 3.0), Some(5.0)), // 4, 6 and 5 days
            ("negotiation", 0, 1, Some(1.0), None),
            ("closed_won", 1, 1, None, None),
        ]
    );
}

#[test]
fn funnel_reads_stage_history_through_the_engine() {
    let e = engine();
    let skipper = deal(&e, "skips", vec![("stage", enum_("prospecting"))]);
    e.update(skipper, Patch::new().set("stage", "proposal"))
        .expect("move");
    let back = deal(&e, "goes back", vec![("stage", enum_("qualification"))]);
    e.update(back, Patch::new().set("stage", "negotiation"))
        .expect("move");
    e.update(back, Patch::new().set("stage", "proposal"))
        .expect("move back");
    let report = e.stage_funnel().expect("funnel");
    let reached: Vec<u64> = report.stages.iter().map(|s| s.reached).collect();
    let entered: Vec<u64> = report.stages.iter().map(|s| s.entered).collect();
    assert_eq!(reached, vec![2, 2, 2, 1, 0]);
    assert_eq!(entered, vec![1, 1, 2, 1, 0]);
    assert_eq!(report.stages[2].conversion_to_next, Some(0.5));
    // Finished stays: prospecting (skipper), qualification and negotiation (back).
    let timed: Vec<u64> = report.stages.iter().map(|s| s.deals_timed).collect();
    assert_eq!(timed, vec![1, 1, 0, 1, 0]);
}
