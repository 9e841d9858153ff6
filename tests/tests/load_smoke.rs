//! `kubecast-load` works: one tiny run (a few MiB, 100 keystrokes, 10
//! sessions) against every target — the upstream, socat, the tokio relay and
//! `kubecast proxy` without recording, recording to a directory and to a
//! recorder — completes without errors and fills every cell of its table.
//! Speed is not judged here (that is `docs/benchmarks.md`'s job).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `kubecast` binary of the same profile as this test: `cargo test
/// --workspace` builds it beside the test binaries; build it here when this
/// crate's tests run alone (building it always would rebuild it with this
/// package's feature set and make the next workspace build redo it).
fn kubecast_binary() -> PathBuf {
    let profile_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    let binary = profile_dir.join("kubecast");
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "kubecast", "--bin", "kubecast"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        assert!(
            build.status().unwrap().success(),
            "building kubecast failed"
        );
    }
    assert!(binary.exists(), "{} was not built", binary.display());
    binary
}

fn socat_available() -> bool {
    let found = Command::new("socat")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "socat is missing (tests/install-deps.sh installs it)"
        );
        eprintln!("\n*** load_smoke: socat is not installed: SKIPPING the socat column ***\n");
    }
    found
}

/// The data rows of the Markdown table that starts with `header_start`.
fn table<'a>(markdown: &'a str, header_start: &str) -> (Vec<&'a str>, Vec<Vec<&'a str>>) {
    let mut lines = markdown
        .lines()
        .skip_while(|l| !l.starts_with(header_start))
        .take_while(|l| l.starts_with('|'));
    let split =
        |l: &'a str| -> Vec<&'a str> { l.trim_matches('|').split('|').map(str::trim).collect() };
    let header = split(lines.next().expect("the table's header"));
    let rows = lines.skip(1).map(split).collect();
    (header, rows)
}

/// Runs `kubecast-load ARGS` against the `kubecast` binary, asserts it
/// succeeded, and returns the Markdown table it wrote.
fn run_load(name: &str, args: &[&str]) -> String {
    let dir = std::env::temp_dir().join(format!("kubecast-load-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let markdown_path = dir.join("load.md");
    let output = Command::new(env!("CARGO_BIN_EXE_kubecast-load"))
        .arg("--kubecast")
        .arg(kubecast_binary())
        .args(args)
        .arg("--markdown")
        .arg(&markdown_path)
        .output()
        .expect("run kubecast-load");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kubecast-load failed:\n{stderr}");
    let markdown = std::fs::read_to_string(&markdown_path).expect("the Markdown table");
    let _ = std::fs::remove_dir_all(&dir);
    markdown
}

#[test]
fn a_tiny_load_run_against_every_target_fills_the_whole_table() {
    let mut targets = vec!["direct", "relay", "proxy", "proxy-dir", "proxy-recorder"];
    if socat_available() {
        targets.insert(1, "socat");
    }
    let markdown = run_load(
        "smoke",
        &[
            "--targets",
            &targets.join(","),
            "--mib",
            "3",
            "--keys",
            "100",
            "--sessions",
            "10",
            "--busy-percent",
            "20",
            "--busy-mib",
            "1",
        ],
    );
    assert!(!markdown.contains("Errors:"), "{markdown}");

    let (header, rows) = table(&markdown, "| scenario | unit |");
    assert_eq!(
        header.len(),
        2 + targets.len(),
        "one column per target: {header:?}"
    );
    let mut labels = Vec::new();
    for row in &rows {
        assert_eq!(row.len(), header.len(), "{row:?}");
        labels.push(row[0]);
        for (column, cell) in row.iter().enumerate().skip(2) {
            let direct_memory = header[column] == "(a) direct" && row[0].contains("RSS");
            if direct_memory {
                assert_eq!(
                    *cell, "n/a",
                    "the upstream has no process in between: {row:?}"
                );
            } else {
                let value: f64 = cell.parse().unwrap_or_else(|_| panic!("a figure: {row:?}"));
                assert!(value >= 0.0, "{row:?}");
            }
        }
        if row[0].ends_with("failed sessions") {
            assert!(row[2..].iter().all(|c| *c == "0"), "{row:?}");
        }
    }
    for protocol in ["ws-v5", "ws-v4", "spdy-v4"] {
        for scenario in [
            format!("throughput {protocol} (3 MiB)"),
            format!("latency {protocol} (100 keys) p50"),
            format!("latency {protocol} (100 keys) p99"),
            format!("latency {protocol} (100 keys) p99.9"),
        ] {
            assert!(
                labels.contains(&scenario.as_str()),
                "{scenario} in {labels:?}"
            );
        }
    }
    for scenario in [
        "10 sessions: failed sessions",
        "10 sessions: throughput of 2 busy",
        "10 sessions: RSS per idle session",
        "10 sessions: peak RSS per session",
    ] {
        assert!(labels.contains(&scenario), "{scenario} in {labels:?}");
    }

    let (ratio_header, ratio_rows) = table(&markdown, "| scenario | (c)");
    let baselines = targets
        .iter()
        .filter(|t| ["direct", "socat", "relay"].contains(t));
    assert_eq!(
        ratio_header.len(),
        1 + 3 * baselines.count(),
        "{ratio_header:?}"
    );
    assert_eq!(
        ratio_rows.len(),
        rows.len() - 1,
        "every row but the failure count"
    );
    for row in &ratio_rows {
        for cell in &row[1..] {
            let ok = *cell == "n/a" || cell.contains('×');
            assert!(ok, "a ratio: {row:?}");
        }
    }
}

#[test]
fn rounds_report_medians_with_their_range() {
    let markdown = run_load(
        "rounds",
        &[
            "--targets",
            "relay,proxy-recorder",
            "--scenarios",
            "throughput",
            "--protocols",
            "ws-v5",
            "--mib",
            "1",
            "--rounds",
            "2",
        ],
    );
    assert!(markdown.starts_with("Median of 2 rounds"), "{markdown}");
    let (_, rows) = table(&markdown, "| scenario | unit |");
    assert_eq!(rows.len(), 1, "{markdown}");
    let (_, ratios) = table(&markdown, "| scenario | (e)");
    for cell in rows[0][2..].iter().chain(&ratios[0][1..]) {
        // "median (lowest…highest)"
        let (median, range) = cell.split_once(" (").expect("a median and its range");
        let (lo, hi) = range
            .trim_end_matches(')')
            .split_once('…')
            .expect("a range");
        let number = |s: &str| -> f64 { s.trim_end_matches('×').parse().expect("a number") };
        let (median, lo, hi) = (number(median), number(lo), number(hi));
        assert!(lo <= median && median <= hi && lo > 0.0, "{cell}");
    }
}
