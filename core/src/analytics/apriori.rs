//! Product associations: Apriori frequent itemsets over order baskets, association rules with
//! support, confidence and lift, and "customers who bought X also bought Y" recommendations.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{AnalyticsError, AnalyticsResult, check_range};

/// Largest itemset rules are drawn from (every split of an itemset is a candidate rule).
const MAX_RULE_ITEMSET: usize = 20;

/// Baskets of items with the item names interned: what Apriori reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baskets {
    names: Vec<String>,
    ids: HashMap<String, u32>,
    baskets: Vec<Vec<u32>>,
}

impl Baskets {
    /// No baskets yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a basket; repeated items count once, and an empty basket is not added (the support
    /// denominator is the number of non-empty baskets).
    pub fn push<I, S>(&mut self, items: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut basket: Vec<u32> = items.into_iter().map(|s| self.intern(s.as_ref())).collect();
        basket.sort_unstable();
        basket.dedup();
        if !basket.is_empty() {
            self.baskets.push(basket);
        }
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    /// Number of (non-empty) baskets.
    pub fn len(&self) -> usize {
        self.baskets.len()
    }

    /// Whether there is no basket.
    pub fn is_empty(&self) -> bool {
        self.baskets.is_empty()
    }

    /// The baskets, each as its distinct item names (in first-seen order of the names).
    pub fn iter(&self) -> impl Iterator<Item = Vec<&str>> + '_ {
        self.baskets
            .iter()
            .map(|b| b.iter().map(|&i| self.names[i as usize].as_str()).collect())
    }
}

impl<I, S> FromIterator<I> for Baskets
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    fn from_iter<T: IntoIterator<Item = I>>(iter: T) -> Self {
        let mut out = Baskets::new();
        for basket in iter {
            out.push(basket);
        }
        out
    }
}

/// Thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AprioriParams {
    /// Minimum support `s` of a frequent itemset, in (0, 1] (default 0.01).
    pub min_support: f64,
    /// Minimum confidence `c` of a rule, in [0, 1] (default 0.5).
    pub min_confidence: f64,
    /// Largest itemset searched (default: no limit).
    pub max_len: Option<usize>,
}

impl Default for AprioriParams {
    fn default() -> Self {
        Self {
            min_support: 0.01,
            min_confidence: 0.5,
            max_len: None,
        }
    }
}

/// A frequent itemset.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Itemset {
    /// Its items, sorted.
    pub items: Vec<String>,
    /// Baskets holding every item.
    pub count: u64,
    /// `count / baskets`.
    pub support: f64,
}

/// An association rule `antecedent → consequent`.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[cfg_attr(feature = "uniffi", uniffi(name = "AssociationRule"))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Items bought (sorted).
    pub antecedent: Vec<String>,
    /// Items also bought (sorted).
    pub consequent: Vec<String>,
    /// `supp(X ∪ Y)`.
    pub support: f64,
    /// `supp(X)`.
    pub antecedent_support: f64,
    /// `supp(Y)`.
    pub consequent_support: f64,
    /// `supp(X ∪ Y) / supp(X)`.
    pub confidence: f64,
    /// `confidence / supp(Y)`.
    pub lift: f64,
}

/// Frequent itemsets and rules.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Associations {
    /// Number of baskets (the support denominator).
    pub baskets: u64,
    /// Frequent itemsets by size, then support (highest first), then items.
    pub itemsets: Vec<Itemset>,
    /// Rules by lift, then confidence (highest first), then items.
    pub rules: Vec<Rule>,
}

/// A product to suggest, with the best rule suggesting it.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// The item.
    pub item: String,
    /// The rule: its antecedent is within what the customer bought.
    pub because: Rule,
}

/// Frequent itemsets and association rules (the Apriori algorithm).
///
/// With `n` baskets and `count(Z)` the baskets holding every item of Z:
/// `support(Z) = count(Z) / n`; Z is frequent when `support(Z) ≥ min_support`. Level k keeps
/// the frequent k-itemsets; candidates of level k+1 join two frequent k-itemsets sharing their
/// first k−1 items and are pruned unless all their k-subsets are frequent (the Apriori
/// property), then counted in one pass over the baskets (pairs are counted directly, with no
/// candidate list).
///
/// Rules: for every frequent Z with |Z| ≥ 2 and every non-empty proper subset X, with
/// Y = Z \ X: `confidence = support(Z) / support(X)`, `lift = confidence / support(Y)`; kept
/// when `confidence ≥ min_confidence`. Itemsets of more than 20 items give no rules.
pub fn associations(baskets: &Baskets, params: &AprioriParams) -> AnalyticsResult<Associations> {
    if !(params.min_support > 0.0 && params.min_support <= 1.0) {
        return Err(AnalyticsError::InvalidParameter {
            name: "min_support",
            reason: format!("must be within (0, 1], got {}", params.min_support),
        });
    }
    check_range("min_confidence", params.min_confidence, 0.0, 1.0)?;
    let n = baskets.baskets.len();
    let max_len = params.max_len.unwrap_or(usize::MAX);
    let frequent = if n == 0 || max_len == 0 {
        Vec::new()
    } else {
        frequent_itemsets(baskets, params.min_support, max_len)
    };
    let nf = n as f64;
    let counts: HashMap<&[u32], u64> = frequent.iter().map(|(z, c)| (z.as_slice(), *c)).collect();
    let names = |ids: &[u32]| -> Vec<String> {
        let mut v: Vec<String> = ids
            .iter()
            .map(|&i| baskets.names[i as usize].clone())
            .collect();
        v.sort();
        v
    };
    let mut rules = Vec::new();
    for (z, count_z) in &frequent {
        if z.len() < 2 || z.len() > MAX_RULE_ITEMSET {
            continue;
        }
        let full: u32 = (1u32 << z.len()) - 1;
        for mask in 1..full {
            let (x, y): (Vec<u32>, Vec<u32>) = {
                let mut x = Vec::new();
                let mut y = Vec::new();
                for (bit, item) in z.iter().enumerate() {
                    if mask & (1 << bit) != 0 {
                        x.push(*item);
                    } else {
                        y.push(*item);
                    }
                }
                (x, y)
            };
            // Subsets of a frequent itemset are frequent, so both are counted.
            let (Some(&cx), Some(&cy)) = (counts.get(x.as_slice()), counts.get(y.as_slice()))
            else {
                continue;
            };
            let confidence = *count_z as f64 / cx as f64;
            if confidence < params.min_confidence {
                continue;
            }
            let consequent_support = cy as f64 / nf;
            // count(Z)·n / (count(X)·count(Y)): integer products are exact in f64, so equal
            // ratios give equal lifts.
            let lift = (*count_z as f64 * nf) / (cx as f64 * cy as f64);
            rules.push(Rule {
                antecedent: names(&x),
                consequent: names(&y),
                support: *count_z as f64 / nf,
                antecedent_support: cx as f64 / nf,
                consequent_support,
                confidence,
                lift,
            });
        }
    }
    rules.sort_by(|a, b| {
        b.lift
            .total_cmp(&a.lift)
            .then(b.confidence.total_cmp(&a.confidence))
            .then_with(|| a.antecedent.cmp(&b.antecedent))
            .then_with(|| a.consequent.cmp(&b.consequent))
    });
    let mut itemsets: Vec<Itemset> = frequent
        .iter()
        .map(|(z, count)| Itemset {
            items: names(z),
            count: *count,
            support: *count as f64 / nf,
        })
        .collect();
    itemsets.sort_by(|a, b| {
        a.items
            .len()
            .cmp(&b.items.len())
            .then(b.count.cmp(&a.count))
            .then_with(|| a.items.cmp(&b.items))
    });
    Ok(Associations {
        baskets: n as u64,
        itemsets,
        rules,
    })
}

/// Level-wise search; itemsets as sorted ids of the frequent single items, with counts.
fn frequent_itemsets(baskets: &Baskets, min_support: f64, max_len: usize) -> Vec<(Vec<u32>, u64)> {
    let nf = baskets.baskets.len() as f64;
    let is_frequent = |count: u64| count as f64 / nf >= min_support;
    let mut single = vec![0u64; baskets.names.len()];
    for basket in &baskets.baskets {
        for &i in basket {
            single[i as usize] += 1;
        }
    }
    let mut out: Vec<(Vec<u32>, u64)> = Vec::new();
    let mut level: Vec<Vec<u32>> = Vec::new();
    for (i, &c) in single.iter().enumerate() {
        if is_frequent(c) {
            out.push((vec![i as u32], c));
            level.push(vec![i as u32]);
        }
    }
    // Keep only frequent items in each basket; baskets with fewer than 2 cannot hold a pair.
    let keep: HashSet<u32> = level.iter().map(|z| z[0]).collect();
    let mut txns: Vec<Vec<u32>> = baskets
        .baskets
        .iter()
        .map(|b| {
            b.iter()
                .copied()
                .filter(|i| keep.contains(i))
                .collect::<Vec<_>>()
        })
        .filter(|b: &Vec<u32>| b.len() >= 2)
        .collect();
    if level.len() < 2 || max_len < 2 {
        return out;
    }
    // Level 2 without materializing candidates: count every pair of frequent items.
    level = count_pairs(&level, &txns, &mut out, is_frequent);
    let mut k = 2;
    loop {
        // Items in no frequent k-itemset cannot be in a frequent (k+1)-itemset.
        let alive: HashSet<u32> = level.iter().flatten().copied().collect();
        for t in &mut txns {
            t.retain(|i| alive.contains(i));
        }
        txns.retain(|t| t.len() > k);
        if level.is_empty() || k >= max_len {
            break;
        }
        let candidates = candidates(&level);
        if candidates.is_empty() {
            break;
        }
        let counts = count(&candidates, &txns, k + 1);
        level.clear();
        for (z, c) in candidates.into_iter().zip(counts) {
            if is_frequent(c) {
                out.push((z.clone(), c));
                level.push(z);
            }
        }
        k += 1;
    }
    out
}

/// Counts the pairs of the frequent `items` (1-itemsets, in id order) in the baskets, pushes
/// the frequent ones to `out` and returns them: a dense triangle of counts when the items are
/// few, a hash map otherwise.
fn count_pairs(
    items: &[Vec<u32>],
    txns: &[Vec<u32>],
    out: &mut Vec<(Vec<u32>, u64)>,
    is_frequent: impl Fn(u64) -> bool,
) -> Vec<Vec<u32>> {
    const DENSE_LIMIT: usize = 2048;
    let ids: Vec<u32> = items.iter().map(|z| z[0]).collect();
    let f = ids.len();
    let mut found: Vec<(Vec<u32>, u64)> = Vec::new();
    if f <= DENSE_LIMIT {
        let dense: HashMap<u32, usize> = ids.iter().enumerate().map(|(d, &i)| (i, d)).collect();
        // Row a holds pairs (a, b) for b > a at a * f + b (upper triangle of an f × f grid).
        let mut grid = vec![0u32; f * f];
        let mut local = Vec::new();
        for t in txns {
            local.clear();
            local.extend(t.iter().filter_map(|i| dense.get(i).copied()));
            local.sort_unstable();
            for (p, &a) in local.iter().enumerate() {
                for &b in &local[p + 1..] {
                    grid[a * f + b] += 1;
                }
            }
        }
        for a in 0..f {
            for b in a + 1..f {
                let c = u64::from(grid[a * f + b]);
                if c > 0 && is_frequent(c) {
                    found.push((vec![ids[a], ids[b]], c));
                }
            }
        }
    } else {
        let mut counts: HashMap<(u32, u32), u64> = HashMap::new();
        for t in txns {
            for (p, &a) in t.iter().enumerate() {
                for &b in &t[p + 1..] {
                    *counts.entry((a, b)).or_default() += 1;
                }
            }
        }
        found = counts
            .into_iter()
            .filter(|(_, c)| is_frequent(*c))
            .map(|((a, b), c)| (vec![a, b], c))
            .collect();
        found.sort();
    }
    let level = found.iter().map(|(z, _)| z.clone()).collect();
    out.extend(found);
    level
}

/// Apriori candidate generation: join k-itemsets (sorted) sharing their first k−1 items, keep
/// a join when every k-subset is frequent. Returns sorted (k+1)-itemsets.
fn candidates(level: &[Vec<u32>]) -> Vec<Vec<u32>> {
    let mut sorted: Vec<&Vec<u32>> = level.iter().collect();
    sorted.sort();
    let known: HashSet<&[u32]> = level.iter().map(Vec::as_slice).collect();
    let mut out = Vec::new();
    let mut subset = Vec::new();
    for (i, a) in sorted.iter().enumerate() {
        let k = a.len();
        for b in &sorted[i + 1..] {
            if a[..k - 1] != b[..k - 1] {
                break; // sorted: no later itemset shares the prefix
            }
            let mut z = (*a).clone();
            z.push(b[k - 1]);
            // Drop each of the first k−1 items in turn (dropping a[k-1] or b[k-1] gives a, b).
            let all_frequent = (0..k - 1).all(|skip| {
                subset.clear();
                subset.extend(
                    z.iter()
                        .enumerate()
                        .filter(|(j, _)| *j != skip)
                        .map(|(_, v)| *v),
                );
                known.contains(subset.as_slice())
            });
            if all_frequent {
                out.push(z);
            }
        }
    }
    out
}

/// Counts the baskets holding each candidate of size `size`.
fn count(candidates: &[Vec<u32>], txns: &[Vec<u32>], size: usize) -> Vec<u64> {
    let mut counts = vec![0u64; candidates.len()];
    let index: HashMap<&[u32], usize> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (c.as_slice(), i))
        .collect();
    let mut buf = Vec::with_capacity(size);
    for t in txns {
        if t.len() < size {
            continue;
        }
        if binomial(t.len(), size) <= candidates.len() as u128 {
            subsets(t, size, 0, &mut buf, &mut |s| {
                if let Some(&i) = index.get(s) {
                    counts[i] += 1;
                }
            });
        } else {
            for (i, c) in candidates.iter().enumerate() {
                if is_subset(c, t) {
                    counts[i] += 1;
                }
            }
        }
    }
    counts
}

fn binomial(n: usize, k: usize) -> u128 {
    let k = k.min(n - k) as u128;
    let mut r: u128 = 1;
    for i in 0..k {
        r = r.saturating_mul(n as u128 - i) / (i + 1);
    }
    r
}

/// Calls `f` with every `size`-subset of the sorted `items` (in sorted order).
fn subsets(
    items: &[u32],
    size: usize,
    start: usize,
    buf: &mut Vec<u32>,
    f: &mut impl FnMut(&[u32]),
) {
    if buf.len() == size {
        f(buf);
        return;
    }
    let need = size - buf.len();
    for i in start..=items.len() - need {
        buf.push(items[i]);
        subsets(items, size, i + 1, buf, f);
        buf.pop();
    }
}

/// Whether sorted `small` is within sorted `big`.
fn is_subset(small: &[u32], big: &[u32]) -> bool {
    let mut it = big.iter();
    small.iter().all(|s| it.any(|b| b == s))
}

/// "Customers who bought X also bought Y": items the customer has not bought, each with the
/// best rule whose antecedent is within `bought` (highest confidence, then lift, then the
/// rule order), ranked by that rule's confidence then lift; at most `limit`.
pub fn recommend(
    associations: &Associations,
    bought: &[String],
    limit: usize,
) -> Vec<Recommendation> {
    let have: HashSet<&str> = bought.iter().map(String::as_str).collect();
    let mut best: HashMap<&str, &Rule> = HashMap::new();
    for rule in &associations.rules {
        if !rule.antecedent.iter().all(|i| have.contains(i.as_str())) {
            continue;
        }
        for item in &rule.consequent {
            if have.contains(item.as_str()) {
                continue;
            }
            let entry = best.entry(item.as_str()).or_insert(rule);
            if rule.confidence > entry.confidence
                || (rule.confidence == entry.confidence && rule.lift > entry.lift)
            {
                *entry = rule;
            }
        }
    }
    let mut out: Vec<Recommendation> = best
        .into_iter()
        .map(|(item, rule)| Recommendation {
            item: item.to_string(),
            because: rule.clone(),
        })
        .collect();
    out.sort_by(|a, b| {
        b.because
            .confidence
            .total_cmp(&a.because.confidence)
            .then(b.because.lift.total_cmp(&a.because.lift))
            .then_with(|| a.item.cmp(&b.item))
    });
    out.truncate(limit);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_joined_and_pruned() {
        // {1,2},{1,3},{2,3},{2,4}: join gives {1,2,3} (all subsets frequent) and {2,3,4}
        // (pruned: {3,4} is not frequent).
        let level = vec![vec![1, 2], vec![1, 3], vec![2, 3], vec![2, 4]];
        assert_eq!(candidates(&level), vec![vec![1, 2, 3]]);
    }

    #[test]
    fn subsets_and_binomials() {
        let mut seen = Vec::new();
        subsets(&[1, 2, 3, 4], 3, 0, &mut Vec::new(), &mut |s| {
            seen.push(s.to_vec())
        });
        assert_eq!(seen.len() as u128, binomial(4, 3));
        assert!(is_subset(&[2, 4], &[1, 2, 3, 4]));
        assert!(!is_subset(&[2, 5], &[1, 2, 3, 4]));
    }
}
