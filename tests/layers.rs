//! The layers point downwards, checked on the sources: what a module may not import is
//! written here, so an arrow pointing upwards fails a test instead of waiting for a review.

use std::path::{Path, PathBuf};

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

fn core(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(relative)
}

/// The code of a file without its comments (doc links may name any module).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Files of `layer` (a module file and its directory) that name any of `forbidden`.
fn violations(layer: &str, forbidden: &[&str]) -> Vec<String> {
    let mut files = vec![core(&format!("{layer}.rs"))];
    if core(layer).is_dir() {
        files.extend(sources(&core(layer)));
    }
    let mut found = Vec::new();
    for file in files.into_iter().filter(|f| f.exists()) {
        let text = code(&file);
        for name in forbidden {
            if text.contains(name) {
                found.push(format!("{} names {name}", file.display()));
            }
        }
    }
    found
}

#[test]
fn no_layer_below_the_engine_imports_it() {
    let engine = ["crate::engine", "crate::Engine", "crate::EngineOptions"];
    let mut found = Vec::new();
    for layer in [
        "net",
        "sync",
        "analytics",
        "store",
        "search",
        "doc",
        "model",
        "query",
        "events",
        "import",
        "export",
    ] {
        found.extend(violations(layer, &engine));
    }
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_store_imports_nothing_above_it() {
    let above = [
        "crate::search",
        "crate::import",
        "crate::export",
        "crate::error",
        "crate::Error",
        "crate::Result",
        "crate::sync",
        "crate::net",
        "crate::analytics",
        "crate::query",
    ];
    let found = violations("store", &above);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_engines_error_is_imported_by_no_layer_it_wraps() {
    // error.rs wraps the errors of these layers; if one of them used `crate::Error` the
    // imports would go round in a cycle.
    let engine_error = ["crate::error", "crate::Error", "crate::Result"];
    let mut found = Vec::new();
    for layer in ["store", "search", "doc", "model", "import"] {
        found.extend(violations(layer, &engine_error));
    }
    assert!(found.is_empty(), "{found:#?}");
}
