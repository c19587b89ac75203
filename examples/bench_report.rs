//! The benchmark's printed report: the comparison table and the targets.

use std::collections::HashMap;

use super::{CHUNK, FSYNCS, LIST_RUNS, OPEN_CYCLES, POINT_READS, SINGLE_WRITES};

/// A number with thousands separators and `decimals` decimals.
fn fmt_num(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let s = format!("{:.*}", decimals, v.abs());
    let (int, frac) = s.split_once('.').map_or((s.as_str(), ""), |(a, b)| (a, b));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if v < 0.0 { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

/// Adds the derived metrics to one system's results.
fn derive(n: usize, results: &HashMap<String, f64>) -> HashMap<String, f64> {
    let get = |k: &str| results.get(k).copied().unwrap_or(f64::NAN);
    let mut out = results.clone();
    out.insert("import_per_cpu".into(), n as f64 / get("import_cpu"));
    out.insert("hwm_growth".into(), get("hwm_end") - get("rss_start"));
    out
}

pub fn report(n: usize, fsync: (f64, f64), crm: &HashMap<String, f64>, sql: &HashMap<String, f64>) {
    let (crm, sql) = (&derive(n, crm), &derive(n, sql));
    let get = |m: &HashMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(f64::NAN);
    // (label, crmsync, sqlite, decimals, higher is better)
    let mut rows: Vec<(&str, f64, f64, usize, bool)> = Vec::new();
    let mut row = |label, key: &str, decimals, higher| {
        rows.push((label, get(crm, key), get(sql, key), decimals, higher));
    };
    row("batch import (records/s)", "import_rate", 0, true);
    row("batch import, total time (s)", "import_secs", 2, false);
    row(
        "batch import, CPU time of the thread (s)",
        "import_cpu",
        2,
        false,
    );
    row(
        "batch import, waiting for a CPU (s)",
        "import_wait",
        2,
        false,
    );
    row(
        "batch import per CPU-second (records)",
        "import_per_cpu",
        0,
        true,
    );
    row("single create, median (µs)", "create_p50", 0, false);
    row("single create, p95 (µs)", "create_p95", 0, false);
    row("single update, median (µs)", "update_p50", 0, false);
    row("single update, p95 (µs)", "update_p95", 0, false);
    row(
        "checkpoint after the single writes (ms; crmsync)",
        "checkpoint_ms",
        2,
        false,
    );
    row(
        "search index catching up with the import (s; crmsync)",
        "index_catch_up_secs",
        2,
        false,
    );
    row("point read, median (µs)", "get_p50", 2, false);
    row("point read, p95 (µs)", "get_p95", 2, false);
    row("first page of 50, median (µs)", "list_p50", 1, false);
    row("first page of 50, p95 (µs)", "list_p95", 1, false);
    row("cold open + first page, median (ms)", "open_p50", 3, false);
    row(
        "cold open + first page, 1st cycle (ms)",
        "open_first",
        3,
        false,
    );
    row(
        "close (drop the handle), median (ms)",
        "close_p50",
        3,
        false,
    );
    row("file size after import (MiB)", "file_mb", 1, false);
    row(
        "search index dir beside it, at end (MiB)",
        "search_mb",
        1,
        false,
    );
    row("RSS at child start (MiB)", "rss_start", 1, false);
    row("RSS after import (MiB)", "rss_import", 1, false);
    row("RSS after reads, before close (MiB)", "rss_warm", 1, false);
    row("peak RSS, VmHWM (MiB)", "hwm_end", 1, false);
    row("peak RSS - RSS at start (MiB)", "hwm_growth", 1, false);

    println!();
    println!(
        "crmsync vs SQLite baseline: {} records (~20% companies, ~80% contacts)",
        fmt_num(n as f64, 0)
    );
    println!(
        "  import chunk {CHUNK}/transaction; {SINGLE_WRITES} single creates/updates; {POINT_READS} point reads; {LIST_RUNS} page lists; {OPEN_CYCLES} open cycles"
    );
    println!(
        "  SQLite: journal_mode=WAL, synchronous=FULL, one JSON row per record, index on (type, id)"
    );
    println!(
        "  each system ran in its own child process; OS page cache stays warm for the cold-open rows"
    );
    println!();
    println!(
        "| {:<40} | {:>12} | {:>12} | {:>7} | {:<8} |",
        "metric", "crmsync", "sqlite", "ratio", "better"
    );
    println!(
        "|{:-<42}|{:->14}|{:->14}|{:->9}|{:-<10}|",
        "", "", "", "", ""
    );
    for (label, c, s, decimals, higher) in &rows {
        let ratio = if *s != 0.0 {
            fmt_num(c / s, 2)
        } else {
            "n/a".into()
        };
        let better = if *higher { "higher" } else { "lower" };
        println!(
            "| {:<40} | {:>12} | {:>12} | {:>7} | {:<8} |",
            label,
            fmt_num(*c, *decimals),
            fmt_num(*s, *decimals),
            ratio,
            better
        );
    }
    println!("  ratio = crmsync / sqlite");
    println!();
    println!(
        "one fsync (4 KiB overwrite + File::sync_all, {FSYNCS} runs): median {} µs, p95 {} µs",
        fmt_num(fsync.0, 0),
        fmt_num(fsync.1, 0)
    );
    println!();
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    let import = get(crm, "import_rate");
    let read = get(crm, "get_p50");
    let edit = get(crm, "update_p50");
    let edit_limit = fsync.0 + 300.0;
    let open = get(crm, "open_p50");
    let size = get(crm, "file_mb") / get(sql, "file_mb");
    println!("targets:");
    println!(
        "  {} import >= 27,600 records/s: {} records/s",
        verdict(import >= 27_600.0),
        fmt_num(import, 0)
    );
    println!(
        "  {} point read median < 10 µs: {} µs",
        verdict(read < 10.0),
        fmt_num(read, 2)
    );
    println!(
        "  {} durable single edit median <= one fsync + 0.3 ms ({} µs): {} µs (single create: {} µs)",
        verdict(edit <= edit_limit),
        fmt_num(edit_limit, 0),
        fmt_num(edit, 0),
        fmt_num(get(crm, "create_p50"), 0)
    );
    println!(
        "  {} cold open to first page < 50 ms: {} ms",
        verdict(open < 50.0),
        fmt_num(open, 3)
    );
    println!(
        "  {} file size <= 3x SQLite: {}x",
        verdict(size <= 3.0),
        fmt_num(size, 2)
    );
}
