//! Funnel: conversion between consecutive pipeline stages and time spent in each, from the
//! history of every deal's stage.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::median;
use crate::model::{Pipeline, RecordId};

/// One value a deal's stage took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageChange {
    /// When it was set.
    pub at: DateTime<Utc>,
    /// The stage (`None`: unset).
    pub stage: Option<String>,
}

/// The successive stages of one deal, oldest first (from `Engine::field_history`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagePath {
    /// The deal.
    pub deal: RecordId,
    /// Its stage changes, in causal order.
    pub changes: Vec<StageChange>,
}

/// One step of the funnel.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunnelStage {
    /// The stage.
    pub stage: String,
    /// Deals that were ever in this stage.
    pub entered: u64,
    /// Deals that got at least this far: ever in this stage or a later funnel stage.
    pub reached: u64,
    /// `reached(next) / reached(this)`; `None` for the last step or when nothing reached it.
    pub conversion_to_next: Option<f64>,
    /// Median over deals of the days each spent in this stage (its finished stays added up);
    /// `None` when no deal has left it yet.
    pub median_days: Option<f64>,
    /// Deals with at least one finished stay in this stage.
    pub deals_timed: u64,
}

/// The funnel report.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunnelReport {
    /// Deals whose history reached at least the first funnel step they were seen in.
    pub deals: u64,
    /// Deals whose last stage is a closed stage that is not won.
    pub lost: u64,
    /// The steps: the pipeline's open stages in order, then its won stages.
    pub stages: Vec<FunnelStage>,
}

/// The stage funnel over deal stage histories.
///
/// Steps are the open stages of `pipeline` in order, then its won stages; lost stages are not
/// steps. A deal *reached* step i when the furthest step it was ever in is i or later, so a
/// deal that skipped a stage counts as having passed it and a deal that went back still counts
/// for the furthest stage it got to: `conversion(i → i+1) = reached(i+1) / reached(i)`, never
/// above 1. `entered` counts only deals actually seen in the stage.
///
/// Time in stage: after merging repeated equal values, each change opens a stay that the next
/// change closes; a deal's time in a stage is the sum of its closed stays there (in days,
/// negative clock skew counted as 0), and `median_days` is the median of that over the deals
/// that have one. The current stay of a deal is not counted, since it has not ended.
pub fn funnel(paths: &[StagePath], pipeline: &Pipeline) -> FunnelReport {
    let steps: Vec<&str> = pipeline
        .stages
        .iter()
        .filter(|s| !s.closed)
        .chain(pipeline.stages.iter().filter(|s| s.closed && s.won))
        .map(|s| s.name.as_str())
        .collect();
    let position: HashMap<&str, usize> = steps.iter().enumerate().map(|(i, s)| (*s, i)).collect();
    let mut reached = vec![0u64; steps.len()];
    let mut entered = vec![0u64; steps.len()];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); steps.len()];
    let (mut deals, mut lost) = (0u64, 0u64);
    for path in paths {
        // Collapse repeats: a stage set again to the same value does not start a new stay.
        let mut changes: Vec<&StageChange> = Vec::with_capacity(path.changes.len());
        for change in &path.changes {
            if changes.last().is_none_or(|last| last.stage != change.stage) {
                changes.push(change);
            }
        }
        let mut seen = vec![false; steps.len()];
        let mut spent = vec![None::<f64>; steps.len()];
        let mut furthest = None::<usize>;
        for (i, change) in changes.iter().enumerate() {
            let Some(pos) = change
                .stage
                .as_deref()
                .and_then(|s| position.get(s).copied())
            else {
                continue;
            };
            seen[pos] = true;
            furthest = furthest.max(Some(pos));
            if let Some(next) = changes.get(i + 1) {
                let days = (next.at - change.at).num_milliseconds().max(0) as f64 / 86_400_000.0;
                *spent[pos].get_or_insert(0.0) += days;
            }
        }
        if let Some(last) = changes.last().and_then(|c| c.stage.as_deref())
            && pipeline.stage(last).is_some_and(|s| s.closed && !s.won)
        {
            lost += 1;
        }
        let Some(furthest) = furthest else {
            continue;
        };
        deals += 1;
        for count in &mut reached[..=furthest] {
            *count += 1;
        }
        for (pos, was) in seen.iter().enumerate() {
            if *was {
                entered[pos] += 1;
            }
            if let Some(days) = spent[pos] {
                times[pos].push(days);
            }
        }
    }
    let stages = steps
        .iter()
        .enumerate()
        .map(|(i, name)| FunnelStage {
            stage: name.to_string(),
            entered: entered[i],
            reached: reached[i],
            conversion_to_next: match reached.get(i + 1) {
                Some(next) if reached[i] > 0 => Some(*next as f64 / reached[i] as f64),
                _ => None,
            },
            deals_timed: times[i].len() as u64,
            median_days: median(std::mem::take(&mut times[i])),
        })
        .collect();
    FunnelReport {
        deals,
        lost,
        stages,
    }
}
