//! RFM and lifetime value.

use chrono::Duration;
use crmsync::analytics::{AnalyticsError, CltvParams, Rates, RfmParams, RfmScore, Segment, rfm};
use crmsync::{Currency, Engine, Money, NewRecord, RecordId, RecordType};

use super::{Mix, at, companies, date, id, order, usd};
use crate::common::{engine, money};

/// Six customers; see `rfm_matches_hand_computed_scores` for the numbers.
fn rfm_dataset() -> (Engine, Vec<RecordId>) {
    let e = engine();
    let c = companies(&e, 6);
    for (customer, when, total) in [
        (0, "2025-06-30", "100.00 USD"),
        (0, "2025-05-01", "200.00 USD"),
        (0, "2025-01-10", "3000.00 USD"),
        (1, "2025-06-01", "40.00 EUR"),  // 50.00 USD at 1.25
        (1, "2025-07-05", "999.00 USD"), // after as_of: ignored
        (2, "2025-03-03", "1000.00 USD"),
        (2, "2025-04-02", "1000.00 USD"),
        (3, "2024-01-15", "500.00 USD"), // before the window: recency only
        (4, "2025-06-20", "80.00 USD"),
        (4, "2025-06-25", "80.00 USD"),
        (4, "2025-06-28", "80.00 USD"),
        (4, "2025-06-29", "80.00 USD"),
        (5, "2024-12-01", "5000.00 USD"),
    ] {
        order(&e, Some(c[customer]), when, total);
    }
    order(&e, None, "2025-06-01", "7.00 USD"); // no customer: skipped
    let cancelled = NewRecord::new(RecordType::Order)
        .with("customer", c[3])
        .with("ordered_at", at("2025-06-30"))
        .with("total", money("1.00 USD"))
        .with("status", "cancelled");
    e.create(cancelled).expect("cancelled order");
    (e, c)
}

fn rates() -> Rates {
    Rates::new(usd())
        .with_rate(Currency::new("EUR").expect("EUR"), 1.25)
        .expect("rate")
}

#[test]
fn rfm_matches_hand_computed_scores() {
    let (e, c) = rfm_dataset();
    let rows = e
        .rfm(&RfmParams::new(date("2025-07-01"), rates()))
        .expect("rfm");
    // recency (days), frequency, monetary (cents), R, F, M, segment. With n = 6 the ranks
    // 1..=6 get quintiles 1,1,2,3,4,5. F ties (C2 and C6 at 1) rank C2 first (smaller id).
    let want = [
        (1, 3, 330_000, (5, 4, 4), Segment::ImportantKeep),
        (30, 1, 5_000, (3, 1, 1), Segment::General),
        (90, 2, 200_000, (2, 3, 3), Segment::General),
        (533, 0, 0, (1, 1, 1), Segment::Churned),
        (2, 4, 32_000, (4, 5, 2), Segment::General),
        (212, 1, 500_000, (1, 2, 5), Segment::ImportantRetain),
    ];
    assert_eq!(rows.len(), 6);
    for (i, (row, (r, f, m, (rs, fs, ms), segment))) in rows.iter().zip(want).enumerate() {
        assert_eq!(row.customer, c[i]);
        assert_eq!(
            (row.recency_days, row.frequency, row.monetary.minor),
            (r, f, m),
            "C{}",
            i + 1
        );
        assert_eq!(row.monetary.currency, usd());
        assert_eq!(
            row.score,
            RfmScore {
                r: rs,
                f: fs,
                m: ms
            },
            "C{}",
            i + 1
        );
        assert_eq!(row.segment, segment, "C{}", i + 1);
    }
    assert_eq!(rows[0].score.to_string(), "544");
}

#[test]
fn rfm_refuses_a_currency_without_a_rate() {
    let (e, _) = rfm_dataset();
    let err = e
        .rfm(&RfmParams::new(date("2025-07-01"), Rates::new(usd())))
        .expect_err("EUR order without a rate");
    assert!(matches!(err, AnalyticsError::MissingRate { .. }), "{err}");
    assert!(err.to_string().contains("EUR"));
}

#[test]
fn lifetime_value_matches_hand_computation_and_ranks() {
    let (e, c) = rfm_dataset();
    let mut params = CltvParams::new(date("2025-07-01"), rates());
    params.discount_rate = 0.10;
    params.horizon_years = 2;
    params.retention = 0.5;
    params.margin = 0.5;
    let rows = e.lifetime_values(&params).expect("cltv");
    // Σ_{t=0..2} (0.5 / 1.1)^t = 1 + 5/11 + 25/121 = 201/121.
    let factor = 201.0 / 121.0;
    let order: Vec<RecordId> = rows.iter().map(|r| r.customer).collect();
    assert_eq!(order, vec![c[5], c[0], c[2], c[3], c[4], c[1]]);
    let c6 = &rows[0];
    assert_eq!((c6.rank, c6.tenure_years), (1, 1.0)); // 212 days: at least one year
    assert!((c6.yearly_margin - 2500.0).abs() < 1e-9);
    assert!((c6.cltv - 2500.0 * factor).abs() < 1e-9);
    assert!((rows[1].cltv - 331_650.0 / 121.0).abs() < 1e-9); // C1: 0.5 × 3300 × 201/121
    // C4: one order 533 days ago, tenure 533 / 365.25 years.
    let c4 = &rows[3];
    let tenure = 533.0 / 365.25;
    assert!((c4.tenure_years - tenure).abs() < 1e-12);
    assert!((c4.cltv - 0.5 * 500.0 / tenure * factor).abs() < 1e-9);
    assert!(rows.windows(2).all(|w| w[0].cltv >= w[1].cltv));

    params.retention = 1.5;
    assert!(matches!(
        e.lifetime_values(&params),
        Err(AnalyticsError::InvalidParameter {
            name: "retention",
            ..
        })
    ));
}

#[test]
fn rfm_scores_stay_in_range_and_fill_quintiles_evenly() {
    let mut rng = Mix(42);
    let as_of = date("2025-07-01");
    let orders: Vec<crmsync::analytics::OrderFact> = (0..5000)
        .map(|i| crmsync::analytics::OrderFact {
            order: id(1_000_000 + i),
            customer: Some(id(1 + u128::from(rng.below(997)))),
            at: at("2023-07-01") + Duration::days(rng.below(731) as i64),
            total: Money::new(100 * (1 + rng.below(5) as i64), "USD").expect("money"),
        })
        .collect();
    let rows = rfm::rfm(&orders, &RfmParams::new(as_of, Rates::new(usd()))).expect("rfm");
    let n = rows.len();
    assert!(n > 900);
    for pick in [|s: RfmScore| s.r, |s: RfmScore| s.f, |s: RfmScore| s.m] {
        let mut counts = [0usize; 5];
        for row in &rows {
            let s = pick(row.score);
            assert!((1..=5).contains(&s));
            counts[usize::from(s - 1)] += 1;
        }
        // qcut on distinct ranks: every quintile holds about n/5 customers.
        for c in counts {
            assert!(c.abs_diff(n / 5) <= 2, "{counts:?} of {n}");
        }
    }
    assert!(rows.windows(2).all(|w| w[0].customer < w[1].customer));
}
