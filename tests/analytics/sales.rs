//! Sales forecast and product associations.

use chrono::Datelike as _;
use crmsync::analytics::{
    AnalyticsError, AprioriParams, Baskets, ForecastMethod, ForecastParams, HoltWinters, Rates,
    RfmParams, Smoothing, apriori, rfm,
};
use crmsync::{Currency, NewRecord, RecordType};

use super::{Mix, at, companies, date, order, usd};
use crate::common::{engine, money};

#[test]
fn holt_matches_hand_computation() {
    // y = 10, 12, 15; α = β = 0.5. Init b = 2, l = 8. t0: ŷ 10, l 10, b 2. t1: ŷ 12, l 12,
    // b 2. t2: ŷ 14 (error 1), l = 0.5·15 + 0.5·14 = 14.5, b = 0.5·2.5 + 0.5·2 = 2.25.
    let p = Smoothing {
        alpha: 0.5,
        beta: 0.5,
        gamma: 0.0,
    };
    let model = HoltWinters::fit(&[10.0, 12.0, 15.0], 12, Some(p)).expect("fit");
    assert_eq!(model.method, ForecastMethod::Holt);
    assert_eq!((model.initial_level, model.initial_trend), (8.0, 2.0));
    assert_eq!((model.level, model.trend, model.sse), (14.5, 2.25, 1.0));
    assert_eq!(model.forecast(2), vec![16.75, 19.0]);
}

#[test]
fn linear_monthly_sales_are_forecast_exactly() {
    let e = engine();
    let c = companies(&e, 1)[0];
    // 30 months of revenue 100 + 10 t, split over two orders a month.
    for t in 0..30i64 {
        let month = date("2023-01-01") + chrono::Months::new(t as u32);
        let half = 50.0 + 5.0 * t as f64;
        for day in [3, 17] {
            let when = month.with_day0(day - 1).expect("day");
            order(&e, Some(c), &when.to_string(), &format!("{half:.2} USD"));
        }
    }
    let mut params = ForecastParams::new(Rates::new(usd()));
    params.horizon = 6;
    for smoothing in [
        None,
        Some(Smoothing {
            alpha: 0.3,
            beta: 0.1,
            gamma: 0.2,
        }),
    ] {
        params.smoothing = smoothing;
        let f = e.sales_forecast(&params).expect("forecast");
        assert_eq!(f.model.method, ForecastMethod::HoltWinters);
        assert_eq!(f.history.len(), 30);
        assert_eq!(f.history[0].month, "2023-01");
        assert_eq!(f.forecast[0].month, "2025-07");
        for (k, point) in f.forecast.iter().enumerate() {
            let want = 100.0 + 10.0 * (30 + k) as f64;
            assert!((point.value - want).abs() < 1e-6, "{k}: {}", point.value);
        }
        assert_eq!(f.model.fitted, smoothing.is_none());
    }
    // Too little history for any model.
    let lone = engine();
    order(&lone, None, "2025-01-01", "1.00 USD");
    assert!(matches!(
        lone.sales_forecast(&params),
        Err(AnalyticsError::NotEnoughData { .. })
    ));
}

fn textbook_baskets() -> Vec<Vec<&'static str>> {
    vec![
        vec!["bread", "milk"],
        vec!["bread", "diapers", "beer", "eggs"],
        vec!["milk", "diapers", "beer", "cola"],
        vec!["bread", "milk", "diapers", "beer"],
        vec!["bread", "milk", "diapers", "cola"],
    ]
}

#[test]
fn apriori_matches_the_textbook_example() {
    let baskets: Baskets = textbook_baskets().into_iter().collect();
    let params = AprioriParams {
        min_support: 0.6,
        min_confidence: 0.7,
        max_len: None,
    };
    let a = apriori::associations(&baskets, &params).expect("apriori");
    assert_eq!(a.baskets, 5);
    let sets: Vec<(Vec<&str>, u64)> = a
        .itemsets
        .iter()
        .map(|s| (s.items.iter().map(String::as_str).collect(), s.count))
        .collect();
    assert_eq!(
        sets,
        vec![
            (vec!["bread"], 4),
            (vec!["diapers"], 4),
            (vec!["milk"], 4),
            (vec!["beer"], 3),
            (vec!["beer", "diapers"], 3),
            (vec!["bread", "diapers"], 3),
            (vec!["bread", "milk"], 3),
            (vec!["diapers", "milk"], 3),
        ]
    );
    // {bread, milk, diapers} is in 2 of 5 baskets: not frequent at 0.6.
    assert_eq!(a.rules.len(), 8);
    let top = &a.rules[0];
    assert_eq!(
        (top.antecedent.as_slice(), top.consequent.as_slice()),
        (&["beer".to_string()][..], &["diapers".to_string()][..])
    );
    assert_eq!((top.support, top.confidence), (0.6, 1.0));
    assert!((top.lift - 1.25).abs() < 1e-12);
    let second = &a.rules[1]; // diapers → beer: 0.75 / 0.6
    assert_eq!(second.antecedent, vec!["diapers"]);
    assert!((second.confidence - 0.75).abs() < 1e-12 && (second.lift - 1.25).abs() < 1e-12);
    // bread → milk: 0.75 / 0.8.
    let bm = a
        .rules
        .iter()
        .find(|r| r.antecedent == ["bread"] && r.consequent == ["milk"])
        .expect("bread → milk");
    assert!((bm.lift - 0.9375).abs() < 1e-12);

    let recs = apriori::recommend(&a, &["bread".to_string()], 5);
    let items: Vec<&str> = recs.iter().map(|r| r.item.as_str()).collect();
    assert_eq!(items, vec!["diapers", "milk"]); // both at confidence 0.75: by name
    let recs = apriori::recommend(&a, &["beer".to_string()], 5);
    assert_eq!(recs[0].item, "diapers");
    assert_eq!(recs[0].because.confidence, 1.0);
}

#[test]
fn apriori_equals_brute_force_on_random_baskets() {
    let mut rng = Mix(7);
    let items = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let baskets: Vec<Vec<&str>> = (0..300)
        .map(|_| {
            items
                .iter()
                .enumerate()
                .filter(|(i, _)| rng.below(10) < 2 + (*i as u64 % 4))
                .map(|(_, s)| *s)
                .collect()
        })
        .collect();
    let nonempty: Vec<&Vec<&str>> = baskets.iter().filter(|b| !b.is_empty()).collect();
    let params = AprioriParams {
        min_support: 0.05,
        min_confidence: 0.3,
        max_len: None,
    };
    let a = apriori::associations(&baskets.iter().cloned().collect(), &params).expect("apriori");
    // Every subset of the 8 items, counted directly.
    let n = nonempty.len() as f64;
    let mut want = Vec::new();
    for mask in 1u32..256 {
        let set: Vec<&str> = (0..8)
            .filter(|b| mask & (1 << b) != 0)
            .map(|b| items[b])
            .collect();
        let count = nonempty
            .iter()
            .filter(|b| set.iter().all(|i| b.contains(i)))
            .count();
        if count as f64 / n >= params.min_support {
            want.push((
                set.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                count as u64,
            ));
        }
    }
    let mut got: Vec<(Vec<String>, u64)> = a
        .itemsets
        .iter()
        .map(|s| (s.items.clone(), s.count))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert!(a.itemsets.iter().any(|s| s.items.len() >= 3));
    for s in &a.itemsets {
        assert!((0.0..=1.0).contains(&s.support));
    }
    for r in &a.rules {
        assert!((0.0..=1.0).contains(&r.support) && (0.0..=1.0).contains(&r.confidence));
        assert!(r.confidence >= params.min_confidence && r.lift > 0.0);
        assert!(r.support <= r.antecedent_support && r.support <= r.consequent_support);
    }
}

#[test]
fn order_lines_become_baskets_and_recommendations() {
    let e = engine();
    let customers = companies(&e, 5);
    for (customer, lines) in customers.iter().zip([
        "BREAD x 1 @ 2.00 USD;MILK x 2 @ 1.00 USD",
        "BREAD x 1 @ 2.00 USD;DIAPERS x 1 @ 9.00 USD;BEER x 6 @ 1.50 USD;EGGS x 12 @ 0.30 USD",
        "MILK x 1 @ 1.00 USD;DIAPERS x 1 @ 9.00 USD;BEER x 6 @ 1.50 USD;COLA x 2 @ 1.20 USD",
        "BREAD x 1 @ 2.00 USD;MILK x 1 @ 1.00 USD;DIAPERS x 1 @ 9.00 USD;BEER x 4 @ 1.50 USD",
        "BREAD x 2 @ 2.00 USD;MILK x 1 @ 1.00 USD;DIAPERS x 2 @ 9.00 USD;COLA x 1 @ 1.20 USD",
    ]) {
        let lines = crmsync::model::parse_value(&crmsync::FieldKind::Lines, lines).expect("lines");
        e.create(
            NewRecord::new(RecordType::Order)
                .with("customer", *customer)
                .with("ordered_at", at("2025-05-05"))
                .with("lines", lines),
        )
        .expect("order");
    }
    let params = AprioriParams {
        min_support: 0.6,
        min_confidence: 0.7,
        max_len: None,
    };
    let a = e.product_associations(&params).expect("associations");
    assert_eq!((a.baskets, a.itemsets.len(), a.rules.len()), (5, 8, 8));
    assert_eq!(a.rules[0].antecedent, vec!["BEER"]);
    // The first customer bought bread and milk: diapers is suggested (bread → diapers 0.75).
    let recs = e
        .recommend_products(customers[0], &params, 3)
        .expect("recommendations");
    let items: Vec<&str> = recs.iter().map(|r| r.item.as_str()).collect();
    assert_eq!(items, vec!["DIAPERS"]);
    // The order total came from the lines: 2.00 + 2 × 1.00.
    let facts = e.order_facts().expect("facts");
    let first = facts
        .iter()
        .find(|f| f.customer == Some(customers[0]))
        .expect("first order");
    assert_eq!(first.total, money("4.00 USD"));
}

#[test]
fn bad_parameters_are_typed_errors() {
    let baskets: Baskets = textbook_baskets().into_iter().collect();
    for s in [0.0, -0.1, 1.5, f64::NAN] {
        let params = AprioriParams {
            min_support: s,
            ..AprioriParams::default()
        };
        assert!(matches!(
            apriori::associations(&baskets, &params),
            Err(AnalyticsError::InvalidParameter {
                name: "min_support",
                ..
            })
        ));
    }
    let mut params = RfmParams::new(date("2025-01-01"), Rates::new(usd()));
    params.window_days = 0;
    assert!(rfm::rfm(&[], &params).is_err());
    assert!(
        Rates::new(usd())
            .with_rate(Currency::new("EUR").expect("EUR"), 0.0)
            .is_err()
    );
    // No data is not an error for RFM, and yields nothing.
    params.window_days = 30;
    assert!(rfm::rfm(&[], &params).expect("empty").is_empty());
}
