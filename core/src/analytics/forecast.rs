//! Monthly sales forecast: Holt-Winters with additive trend and seasonality, or Holt's linear
//! trend when there is less than two seasons of data.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{AnalyticsError, AnalyticsResult, Month, OrderFact, Rates, check_range};
use crate::model::Currency;

/// Longest forecast accepted, in months.
const MAX_HORIZON: usize = 1200;

/// Smoothing parameters, each within 0..=1.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Smoothing {
    /// Level smoothing α.
    pub alpha: f64,
    /// Trend smoothing β.
    pub beta: f64,
    /// Seasonal smoothing γ (ignored by Holt's method).
    pub gamma: f64,
}

/// Which model was fitted.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Enum))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForecastMethod {
    /// Additive trend and additive seasonality.
    HoltWinters,
    /// Additive trend only.
    Holt,
}

/// A fitted exponential smoothing model.
///
/// Recursions (Hyndman's error-correction form, as in statsmodels `ExponentialSmoothing` with
/// `trend="add", seasonal="add"`), for t = 0..n with states starting at t = −1:
///
/// ```text
/// ŷ_t = l_{t−1} + b_{t−1} + s_{t−m}
/// l_t = α (y_t − s_{t−m}) + (1 − α)(l_{t−1} + b_{t−1})
/// b_t = β (l_t − l_{t−1}) + (1 − β) b_{t−1}
/// s_t = γ (y_t − l_{t−1} − b_{t−1}) + (1 − γ) s_{t−m}
/// forecast ŷ_{n−1+h} = l_{n−1} + h·b_{n−1} + s_{n−1+h−m·⌈h/m⌉}
/// ```
///
/// Holt's method is the same without `s`. Initial states, from the first two seasons (means
/// `ȳ₁` of `y_0..y_{m−1}` and `ȳ₂` of `y_m..y_{2m−1}`): `b = (ȳ₂ − ȳ₁) / m`;
/// `l = ȳ₁ − b·((m − 1)/2 + 1)` (the first season's mean sits at its middle, t = (m−1)/2, and
/// the state is at t = −1); `s_i = y_i − (ȳ₁ + (i − (m−1)/2)·b)` (detrended, summing to 0).
/// Holt: `b = y_1 − y_0`, `l = y_0 − b`. Both make a perfectly linear series fit and forecast
/// exactly, whatever the smoothing.
///
/// Fitting (when no smoothing is given) minimizes the sum of squared one-step errors over
/// α, β, γ in [0, 1]: a grid of step 0.1, then a pattern search halving its step to 1e-5.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[cfg_attr(feature = "uniffi", uniffi(name = "ForecastModel"))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoltWinters {
    /// Which model.
    pub method: ForecastMethod,
    /// Season length `m` (0 for Holt).
    pub season_length: usize,
    /// Smoothing used (`gamma` is 0 for Holt).
    pub smoothing: Smoothing,
    /// Whether the smoothing was fitted (false when the caller fixed it).
    pub fitted: bool,
    /// Initial level `l_{−1}`.
    pub initial_level: f64,
    /// Initial trend `b_{−1}`.
    pub initial_trend: f64,
    /// Initial seasonal states `s_{−m}..s_{−1}`, i.e. the ones applied to `y_0..y_{m−1}`.
    pub initial_seasonal: Vec<f64>,
    /// Final level.
    pub level: f64,
    /// Final trend.
    pub trend: f64,
    /// Final seasonal states by phase: `seasonal[t % m]` is the latest state for time t.
    pub seasonal: Vec<f64>,
    /// Number of observations.
    pub n: usize,
    /// Sum of squared one-step errors.
    pub sse: f64,
}

struct Init {
    level: f64,
    trend: f64,
    seasonal: Vec<f64>,
}

fn initial(y: &[f64], m: usize) -> Init {
    if m == 0 {
        let trend = y[1] - y[0];
        return Init {
            level: y[0] - trend,
            trend,
            seasonal: Vec::new(),
        };
    }
    let mf = m as f64;
    let mean1 = y[..m].iter().sum::<f64>() / mf;
    let mean2 = y[m..2 * m].iter().sum::<f64>() / mf;
    let trend = (mean2 - mean1) / mf;
    let center = (mf - 1.0) / 2.0;
    Init {
        level: mean1 - trend * (center + 1.0),
        trend,
        seasonal: (0..m)
            .map(|i| y[i] - (mean1 + (i as f64 - center) * trend))
            .collect(),
    }
}

/// Runs the recursions; returns (level, trend, seasonal by phase, SSE).
fn run(y: &[f64], init: &Init, p: Smoothing) -> (f64, f64, Vec<f64>, f64) {
    let (mut l, mut b) = (init.level, init.trend);
    let mut s = init.seasonal.clone();
    let m = s.len();
    let mut sse = 0.0;
    for (t, &yt) in y.iter().enumerate() {
        let st = if m > 0 { s[t % m] } else { 0.0 };
        let err = yt - (l + b + st);
        sse += err * err;
        let l_new = p.alpha * (yt - st) + (1.0 - p.alpha) * (l + b);
        let b_new = p.beta * (l_new - l) + (1.0 - p.beta) * b;
        if m > 0 {
            s[t % m] = p.gamma * (yt - l - b) + (1.0 - p.gamma) * st;
        }
        l = l_new;
        b = b_new;
    }
    (l, b, s, sse)
}

fn fit_smoothing(y: &[f64], init: &Init, seasonal: bool) -> Smoothing {
    let sse = |p: Smoothing| {
        let v = run(y, init, p).3;
        if v.is_finite() { v } else { f64::INFINITY }
    };
    let gammas: Vec<f64> = if seasonal {
        (0..=10).map(|i| f64::from(i) / 10.0).collect()
    } else {
        vec![0.0]
    };
    let mut best = Smoothing {
        alpha: 0.5,
        beta: 0.1,
        gamma: 0.0,
    };
    let mut best_sse = f64::INFINITY;
    for a in 0..=10 {
        for bt in 0..=10 {
            for &gamma in &gammas {
                let p = Smoothing {
                    alpha: f64::from(a) / 10.0,
                    beta: f64::from(bt) / 10.0,
                    gamma,
                };
                let v = sse(p);
                if v < best_sse {
                    (best, best_sse) = (p, v);
                }
            }
        }
    }
    let dims = if seasonal { 3 } else { 2 };
    let mut step = 0.05;
    while step >= 1e-5 {
        let mut improved = false;
        for dim in 0..dims {
            for dir in [-1.0, 1.0] {
                let mut p = best;
                let v = match dim {
                    0 => &mut p.alpha,
                    1 => &mut p.beta,
                    _ => &mut p.gamma,
                };
                *v = (*v + dir * step).clamp(0.0, 1.0);
                let e = sse(p);
                if e < best_sse {
                    (best, best_sse) = (p, e);
                    improved = true;
                }
            }
        }
        if !improved {
            step /= 2.0;
        }
    }
    best
}

impl HoltWinters {
    /// Fits a series: Holt-Winters with season length `m` when `m >= 2` and the series holds at
    /// least two seasons (`2m` points), else Holt's linear trend (at least 2 points). With
    /// `smoothing` the parameters are fixed, otherwise fitted (see the type docs).
    pub fn fit(y: &[f64], m: usize, smoothing: Option<Smoothing>) -> AnalyticsResult<Self> {
        if y.len() < 2 {
            return Err(AnalyticsError::NotEnoughData {
                what: "forecast: months of history",
                needed: 2,
                found: y.len(),
            });
        }
        if let Some(s) = smoothing {
            check_range("alpha", s.alpha, 0.0, 1.0)?;
            check_range("beta", s.beta, 0.0, 1.0)?;
            check_range("gamma", s.gamma, 0.0, 1.0)?;
        }
        if let Some(bad) = y.iter().find(|v| !v.is_finite()) {
            return Err(AnalyticsError::InvalidParameter {
                name: "series",
                reason: format!("values must be finite, found {bad}"),
            });
        }
        let seasonal = m >= 2 && y.len() >= 2 * m;
        let m = if seasonal { m } else { 0 };
        let init = initial(y, m);
        let fitted = smoothing.is_none();
        let mut smoothing = smoothing.unwrap_or_else(|| fit_smoothing(y, &init, seasonal));
        if !seasonal {
            smoothing.gamma = 0.0;
        }
        let (level, trend, seasonal_states, sse) = run(y, &init, smoothing);
        Ok(Self {
            method: if seasonal {
                ForecastMethod::HoltWinters
            } else {
                ForecastMethod::Holt
            },
            season_length: m,
            smoothing,
            fitted,
            initial_level: init.level,
            initial_trend: init.trend,
            initial_seasonal: init.seasonal,
            level,
            trend,
            seasonal: seasonal_states,
            n: y.len(),
            sse,
        })
    }

    /// Point forecasts for the `h` steps after the series.
    pub fn forecast(&self, h: usize) -> Vec<f64> {
        let m = self.seasonal.len();
        (1..=h)
            .map(|k| {
                let s = if m > 0 {
                    self.seasonal[(self.n + k - 1) % m]
                } else {
                    0.0
                };
                self.level + k as f64 * self.trend + s
            })
            .collect()
    }
}

/// What to forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastParams {
    /// Months to forecast (default 12, at most 1200).
    pub horizon: usize,
    /// Season length in months (default 12).
    pub season_length: usize,
    /// Fixed smoothing; `None` fits it (default).
    pub smoothing: Option<Smoothing>,
    /// Revenue currency, with rates for orders in other currencies.
    pub rates: Rates,
    /// The history ends with the month of this day (default: the month of the last order);
    /// later orders are ignored. Set it to the last complete month to keep a partial month
    /// out of the model.
    pub through: Option<NaiveDate>,
}

impl ForecastParams {
    /// A 12-month forecast with yearly seasonality and fitted smoothing.
    pub fn new(rates: Rates) -> Self {
        Self {
            horizon: 12,
            season_length: 12,
            smoothing: None,
            rates,
            through: None,
        }
    }
}

/// A month's value, in major units of the forecast's currency.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonthValue {
    /// `YYYY-MM`.
    pub month: String,
    /// Revenue (history) or point forecast.
    pub value: f64,
}

/// The monthly history, the fitted model and the forecast.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SalesForecast {
    /// Currency of every value.
    pub currency: Currency,
    /// Revenue per month, from the first order's month through the last one, months without
    /// orders as 0.
    pub history: Vec<MonthValue>,
    /// The fitted model, with its parameters.
    pub model: HoltWinters,
    /// Point forecasts for the months after the history.
    pub forecast: Vec<MonthValue>,
}

/// Revenue per month: Σ of order totals (converted into the reporting currency) by the UTC
/// month of `ordered_at`, from the first order's month through `through` (default: the last
/// order's month), empty months as 0.
pub fn monthly_revenue(
    orders: &[OrderFact],
    rates: &Rates,
    through: Option<NaiveDate>,
) -> AnalyticsResult<Vec<(Month, f64)>> {
    let last = through.map(Month::of);
    let mut sums: BTreeMap<Month, f64> = BTreeMap::new();
    for order in orders {
        let month = Month::of(order.at.date_naive());
        if last.is_some_and(|l| month > l) {
            continue;
        }
        *sums.entry(month).or_default() += rates.to_major(order.total)?;
    }
    let (Some(first), Some(max)) = (sums.keys().next().copied(), sums.keys().last().copied())
    else {
        return Ok(Vec::new());
    };
    let end = last.unwrap_or(max);
    Ok((0..=first.until(end))
        .map(|i| {
            let m = first.plus(i);
            (m, sums.get(&m).copied().unwrap_or(0.0))
        })
        .collect())
}

/// Monthly revenue ([`monthly_revenue`]) forecast `horizon` months ahead with
/// [`HoltWinters::fit`].
pub fn sales_forecast(
    orders: &[OrderFact],
    params: &ForecastParams,
) -> AnalyticsResult<SalesForecast> {
    if params.horizon > MAX_HORIZON {
        return Err(AnalyticsError::InvalidParameter {
            name: "horizon",
            reason: format!(
                "must be at most {MAX_HORIZON} months, got {}",
                params.horizon
            ),
        });
    }
    let series = monthly_revenue(orders, &params.rates, params.through)?;
    let values: Vec<f64> = series.iter().map(|(_, v)| *v).collect();
    let model = HoltWinters::fit(&values, params.season_length, params.smoothing)?;
    let next = series
        .last()
        .map(|(m, _)| m.plus(1))
        .ok_or(AnalyticsError::NotEnoughData {
            what: "forecast: months of history",
            needed: 2,
            found: 0,
        })?;
    let forecast = model
        .forecast(params.horizon)
        .into_iter()
        .enumerate()
        .map(|(i, value)| MonthValue {
            month: next.plus(i as i64).to_string(),
            value,
        })
        .collect();
    Ok(SalesForecast {
        currency: params.rates.target(),
        history: series
            .into_iter()
            .map(|(m, value)| MonthValue {
                month: m.to_string(),
                value,
            })
            .collect(),
        model,
        forecast,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_series_is_forecast_exactly_by_both_methods() {
        let y: Vec<f64> = (0..30).map(|t| 100.0 + 7.5 * f64::from(t)).collect();
        for m in [12, 0] {
            let p = Smoothing {
                alpha: 0.3,
                beta: 0.2,
                gamma: 0.4,
            };
            let model = HoltWinters::fit(&y, m, Some(p)).unwrap();
            assert!(model.sse < 1e-12, "sse {}", model.sse);
            for (k, f) in model.forecast(5).into_iter().enumerate() {
                let want = 100.0 + 7.5 * (30 + k) as f64;
                assert!((f - want).abs() < 1e-9, "{f} vs {want}");
            }
        }
    }

    #[test]
    fn pure_seasonal_series_is_learned() {
        let pattern = [5.0, 9.0, 2.0, 4.0];
        let y: Vec<f64> = (0..16).map(|t| 50.0 + pattern[t % 4]).collect();
        let model = HoltWinters::fit(&y, 4, None).unwrap();
        assert_eq!(model.method, ForecastMethod::HoltWinters);
        for (k, f) in model.forecast(4).into_iter().enumerate() {
            assert!((f - (50.0 + pattern[k])).abs() < 1e-6, "{k}: {f}");
        }
    }

    #[test]
    fn short_series_fall_back_to_holt_and_tiny_ones_fail() {
        let model = HoltWinters::fit(&[1.0, 2.0, 4.0], 12, None).unwrap();
        assert_eq!(model.method, ForecastMethod::Holt);
        assert!(HoltWinters::fit(&[1.0], 12, None).is_err());
        let bad = Smoothing {
            alpha: 1.5,
            beta: 0.0,
            gamma: 0.0,
        };
        assert!(HoltWinters::fit(&[1.0, 2.0], 0, Some(bad)).is_err());
    }
}
