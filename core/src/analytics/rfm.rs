//! RFM: recency, frequency and monetary value per customer, quintile scores and segments.

use std::collections::HashMap;
use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{AnalyticsError, AnalyticsResult, OrderFact, Rates};
use crate::model::{Money, RecordId};

/// What to score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RfmParams {
    /// The day the analysis is made (orders after it are ignored).
    pub as_of: NaiveDate,
    /// Frequency and monetary value count the orders of the `window_days` days ending on
    /// `as_of` (default 365).
    pub window_days: u32,
    /// Currency of the monetary value, with rates for orders in other currencies.
    pub rates: Rates,
}

impl RfmParams {
    /// Scoring as of a day over the default one-year window.
    pub fn new(as_of: NaiveDate, rates: Rates) -> Self {
        Self {
            as_of,
            window_days: 365,
            rates,
        }
    }
}

/// Quintile scores, each 1 (worst) to 5 (best).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RfmScore {
    /// Recency score: 5 for the most recent buyers.
    pub r: u8,
    /// Frequency score: 5 for the most frequent buyers.
    pub f: u8,
    /// Monetary score: 5 for the biggest spenders.
    pub m: u8,
}

impl fmt::Display for RfmScore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.r, self.f, self.m)
    }
}

/// A customer segment from the RFM scores. A score is *high* when it is 4 or 5 (the top two
/// quintiles) and *low* otherwise. The first rule that matches wins:
///
/// 1. `ImportantKeep`: R, F and M high;
/// 2. `ImportantDevelop`: F and M high, R low;
/// 3. `ImportantRetain`: R and F low, M high;
/// 4. `Churned`: R = 1 (the least recent fifth) and none of the above;
/// 5. `General`: everyone else.
///
/// The important segments go first because a valuable customer who lapsed is worth a call,
/// not a "churned" label.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Enum))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Segment {
    /// Recent, frequent, big spenders: keep them.
    ImportantKeep,
    /// Frequent big spenders who have not bought lately: develop them.
    ImportantDevelop,
    /// Big spenders who rarely and not lately buy: win them back.
    ImportantRetain,
    /// Everyone else.
    General,
    /// The least recent buyers who are not important.
    Churned,
}

impl Segment {
    /// The segment of a score triple (see the type's docs for the rules).
    pub fn of(score: RfmScore) -> Self {
        let high = |s: u8| s >= 4;
        match (high(score.r), high(score.f), high(score.m)) {
            (true, true, true) => Segment::ImportantKeep,
            (false, true, true) => Segment::ImportantDevelop,
            (false, false, true) => Segment::ImportantRetain,
            _ if score.r == 1 => Segment::Churned,
            _ => Segment::General,
        }
    }

    /// The segment's label, e.g. `important-keep`.
    pub fn label(self) -> &'static str {
        match self {
            Segment::ImportantKeep => "important-keep",
            Segment::ImportantDevelop => "important-develop",
            Segment::ImportantRetain => "important-retain",
            Segment::General => "general",
            Segment::Churned => "churned",
        }
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One customer's RFM values, scores and segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RfmRow {
    /// The customer (contact or company).
    pub customer: RecordId,
    /// Days from the customer's last order (at any time up to `as_of`) to `as_of`.
    pub recency_days: i64,
    /// Orders in the window.
    pub frequency: u64,
    /// Sum of the window's order totals, in the reporting currency.
    pub monetary: Money,
    /// Quintile scores.
    pub score: RfmScore,
    /// Segment from the scores.
    pub segment: Segment,
}

/// The 1-5 quintile score of the customer ranked `rank` (1-based, 1 = worst) out of `n`:
/// `max(1, ceil(5 (rank - 1) / (n - 1)))`, which is the bin pandas `qcut(ranks, 5)` gives
/// ranks 1..=n; a lone customer scores 3.
pub fn quintile(rank: usize, n: usize) -> u8 {
    if n <= 1 {
        return 3;
    }
    let num = 5 * (rank.saturating_sub(1)) as u128;
    let den = (n - 1) as u128;
    // rank <= n, so the quotient is at most 5.
    num.div_ceil(den).clamp(1, 5) as u8
}

/// 1-based ranks of `keys` in ascending order; equal keys are ranked in their input order
/// (pandas `rank(method="first")`).
fn ranks<K: Ord>(keys: &[K]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| keys[a].cmp(&keys[b])); // stable: ties keep input order
    let mut out = vec![0; keys.len()];
    for (rank, i) in order.into_iter().enumerate() {
        out[i] = rank + 1;
    }
    out
}

/// RFM per customer, sorted by customer id.
///
/// For each customer with at least one order dated on or before `as_of` (orders without a
/// customer are skipped):
/// - `recency_days` = `as_of` − date of the last such order (UTC dates);
/// - `frequency` = number of orders dated within the window (`as_of − window_days < date ≤
///   as_of`);
/// - `monetary` = Σ of those orders' totals, each converted into the reporting currency (and
///   rounded to its minor unit) first.
///
/// Scores: customers are put in id order, then ranked ascending by −recency (so the most recent
/// rank highest), by frequency and by monetary value; **ties are broken by that id order**
/// (the customer with the smaller id ranks lower), as pandas `rank(method="first")` does. A
/// rank r of n becomes the quintile `max(1, ceil(5 (r − 1) / (n − 1)))` — exactly the bins of
/// `pandas.qcut(ranks, 5, labels=[1, 2, 3, 4, 5])` — see [`quintile`].
pub fn rfm(orders: &[OrderFact], params: &RfmParams) -> AnalyticsResult<Vec<RfmRow>> {
    if params.window_days == 0 {
        return Err(AnalyticsError::InvalidParameter {
            name: "window_days",
            reason: "must be at least 1".into(),
        });
    }
    struct Acc {
        last: NaiveDate,
        frequency: u64,
        monetary: i128,
    }
    let mut by_customer: HashMap<RecordId, Acc> = HashMap::new();
    for order in orders {
        let Some(customer) = order.customer else {
            continue;
        };
        let date = order.at.date_naive();
        if date > params.as_of {
            continue;
        }
        let in_window = (params.as_of - date).num_days() < i64::from(params.window_days);
        let amount = if in_window {
            i128::from(params.rates.convert(order.total)?.minor)
        } else {
            0
        };
        let acc = by_customer.entry(customer).or_insert(Acc {
            last: date,
            frequency: 0,
            monetary: 0,
        });
        acc.last = acc.last.max(date);
        if in_window {
            acc.frequency += 1;
            acc.monetary += amount;
        }
    }
    let mut customers: Vec<(RecordId, Acc)> = by_customer.into_iter().collect();
    customers.sort_unstable_by_key(|(id, _)| *id);
    let n = customers.len();
    let recency: Vec<i64> = customers
        .iter()
        .map(|(_, a)| (params.as_of - a.last).num_days())
        .collect();
    let neg_recency: Vec<i64> = recency.iter().map(|d| -d).collect();
    let frequency: Vec<u64> = customers.iter().map(|(_, a)| a.frequency).collect();
    let monetary: Vec<i128> = customers.iter().map(|(_, a)| a.monetary).collect();
    let (r_ranks, f_ranks, m_ranks) = (ranks(&neg_recency), ranks(&frequency), ranks(&monetary));
    let currency = params.rates.target();
    customers
        .into_iter()
        .enumerate()
        .map(|(i, (customer, acc))| {
            let minor = i64::try_from(acc.monetary).map_err(|_| AnalyticsError::Overflow {
                what: format!("the orders of customer {customer}"),
            })?;
            let score = RfmScore {
                r: quintile(r_ranks[i], n),
                f: quintile(f_ranks[i], n),
                m: quintile(m_ranks[i], n),
            };
            Ok(RfmRow {
                customer,
                recency_days: recency[i],
                frequency: acc.frequency,
                monetary: Money { minor, currency },
                score,
                segment: Segment::of(score),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quintiles_match_qcut_bins() {
        // qcut of ranks 1..=10 into 5: edges 1, 2.8, 4.6, 6.4, 8.2, 10.
        let got: Vec<u8> = (1..=10).map(|r| quintile(r, 10)).collect();
        assert_eq!(got, vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        // n = 6: edges 1, 2, 3, 4, 5, 6.
        let got: Vec<u8> = (1..=6).map(|r| quintile(r, 6)).collect();
        assert_eq!(got, vec![1, 1, 2, 3, 4, 5]);
        assert_eq!(quintile(1, 1), 3);
        assert_eq!(quintile(2, 2), 5);
    }

    #[test]
    fn ties_rank_in_input_order() {
        assert_eq!(ranks(&[5, 1, 5, 3]), vec![3, 1, 4, 2]);
    }

    #[test]
    fn segments_follow_the_rule_order() {
        let s = |r, f, m| Segment::of(RfmScore { r, f, m });
        assert_eq!(s(5, 5, 5), Segment::ImportantKeep);
        assert_eq!(s(2, 4, 5), Segment::ImportantDevelop);
        assert_eq!(s(1, 1, 5), Segment::ImportantRetain);
        assert_eq!(s(1, 3, 3), Segment::Churned);
        assert_eq!(s(5, 1, 1), Segment::General);
    }
}
