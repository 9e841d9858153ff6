//! The results table: absolute figures per target, then the proxy columns
//! as ratios to the upstream (a) and to the two relays (b) — ratios are
//! what counts on a noisy shared machine.

use crate::targets::Kind;

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell {
    Value(f64),
    /// The figure does not exist for this target (memory of "direct",
    /// which has no process in between).
    NotApplicable,
    /// The scenario failed on this target (see the notes).
    Failed,
}

/// What a row measures, and which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    MibPerSec,
    Micros,
    Kib,
    Count,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::MibPerSec => "MiB/s",
            Unit::Micros => "µs",
            Unit::Kib => "KiB",
            Unit::Count => "count",
        }
    }

    fn format(self, v: f64) -> String {
        match self {
            Unit::Count => format!("{v:.0}"),
            _ => format!("{v:.1}"),
        }
    }
}

#[derive(Debug, Clone)]
struct Row {
    label: String,
    unit: Unit,
    /// Per target, the cell of each round (a round not reached is failed).
    cells: Vec<Vec<Cell>>,
}

/// Rows of figures for the targets `kinds`, in the order they were added.
///
/// With several rounds (every target measured once per round, targets in
/// turn), a figure is the median of its rounds, and a ratio is the median
/// of the ratios *within* each round: a proxy column is only ever divided by
/// a baseline measured minutes from it, not by one from another round.
#[derive(Debug, Clone)]
pub struct Table {
    kinds: Vec<Kind>,
    rows: Vec<Row>,
    round: usize,
    /// What went wrong, one line per failure.
    pub errors: Vec<String>,
}

/// The baselines the proxy columns are compared with.
const BASELINES: [Kind; 3] = [Kind::Direct, Kind::Socat, Kind::Relay];
/// The columns compared.
const PROXIES: [Kind; 3] = [Kind::Proxy, Kind::ProxyDir, Kind::ProxyRecorder];

impl Table {
    pub fn new(kinds: &[Kind]) -> Table {
        Table {
            kinds: kinds.to_vec(),
            rows: Vec::new(),
            round: 0,
            errors: Vec::new(),
        }
    }

    /// Starts round `round` (0-based); later [`Table::set`] calls fill it.
    pub fn start_round(&mut self, round: usize) {
        self.round = round;
    }

    /// Sets the figure of `label` for `kind` in the current round (adding
    /// the row if new).
    pub fn set(&mut self, label: &str, unit: Unit, kind: Kind, cell: Cell) {
        let Some(column) = self.kinds.iter().position(|k| *k == kind) else {
            return;
        };
        let index = match self.rows.iter().position(|r| r.label == label) {
            Some(i) => i,
            None => {
                self.rows.push(Row {
                    label: label.to_string(),
                    unit,
                    cells: vec![Vec::new(); self.kinds.len()],
                });
                self.rows.len() - 1
            }
        };
        let rounds = &mut self.rows[index].cells[column];
        if rounds.len() <= self.round {
            rounds.resize(self.round + 1, Cell::Failed);
        }
        rounds[self.round] = cell;
    }

    /// The cells of `kind` in `row`, one per round (missing rounds failed).
    fn rounds(&self, row: &Row, kind: Kind) -> Vec<Cell> {
        let Some(column) = self.kinds.iter().position(|k| *k == kind) else {
            return Vec::new();
        };
        let mut cells = row.cells.get(column).cloned().unwrap_or_default();
        cells.resize(self.round + 1, Cell::Failed);
        cells
    }

    /// The whole report as Markdown: figures, ratios, errors.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        if self.round > 0 {
            out.push_str(&format!(
                "Median of {} rounds (range in brackets); ratios are medians of the ratios within each round.\n\n",
                self.round + 1
            ));
        }
        out.push_str("| scenario | unit |");
        for kind in &self.kinds {
            out.push_str(&format!(" {} |", kind.heading()));
        }
        out.push_str("\n|---|---|");
        out.push_str(&"---:|".repeat(self.kinds.len()));
        out.push('\n');
        for row in &self.rows {
            out.push_str(&format!("| {} | {} |", row.label, row.unit.name()));
            for kind in &self.kinds {
                let text = summarise(&self.rounds(row, *kind), |v| row.unit.format(v));
                out.push_str(&format!(" {text} |"));
            }
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.ratios());
        if !self.errors.is_empty() {
            out.push_str("\nErrors:\n\n");
            for e in &self.errors {
                out.push_str(&format!("- {}\n", e.replace('\n', " ⏎ ")));
            }
        }
        out
    }

    /// Each proxy column divided by each baseline (throughput: higher is
    /// better; latency and memory: lower is better, and latency also shows
    /// the microseconds added).
    fn ratios(&self) -> String {
        let pairs: Vec<(Kind, Kind)> = PROXIES
            .iter()
            .filter(|p| self.kinds.contains(p))
            .flat_map(|p| {
                BASELINES
                    .iter()
                    .filter(|b| self.kinds.contains(b))
                    .map(move |b| (*p, *b))
            })
            .collect();
        if pairs.is_empty() {
            return String::new();
        }
        let mut out = String::from("| scenario |");
        for (p, b) in &pairs {
            out.push_str(&format!(" {} ÷ {} |", short(*p), short(*b)));
        }
        out.push_str("\n|---|");
        out.push_str(&"---:|".repeat(pairs.len()));
        out.push('\n');
        for row in self.rows.iter().filter(|r| r.unit != Unit::Count) {
            out.push_str(&format!("| {} |", row.label));
            for (p, b) in &pairs {
                let (xs, ys) = (self.rounds(row, *p), self.rounds(row, *b));
                let quotient = |f: fn(f64, f64) -> f64| -> Vec<Cell> {
                    xs.iter()
                        .zip(&ys)
                        .map(|pair| match pair {
                            (Cell::Value(x), Cell::Value(y)) => Cell::Value(f(*x, *y)),
                            (Cell::NotApplicable, _) | (_, Cell::NotApplicable) => {
                                Cell::NotApplicable
                            }
                            _ => Cell::Failed,
                        })
                        .collect()
                };
                let ratio = summarise(&quotient(|x, y| x / y), |v| {
                    if v.is_finite() {
                        format!("{v:.2}×")
                    } else {
                        "∞".to_string()
                    }
                });
                let text = if row.unit == Unit::Micros && ratio != "FAILED" && ratio != "n/a" {
                    let added = summarise(&quotient(|x, y| x - y), |v| format!("{v:+.1}"));
                    format!("{ratio} ({added} µs)")
                } else {
                    ratio
                };
                out.push_str(&format!(" {text} |"));
            }
            out.push('\n');
        }
        out
    }
}

/// One cell's text: FAILED if any round failed, n/a if the figure does not
/// exist, else the median, with the range when there are several rounds.
fn summarise(cells: &[Cell], format: impl Fn(f64) -> String) -> String {
    let mut values = Vec::with_capacity(cells.len());
    for cell in cells {
        match cell {
            Cell::Value(v) => values.push(*v),
            Cell::NotApplicable => return "n/a".to_string(),
            Cell::Failed => return "FAILED".to_string(),
        }
    }
    values.sort_by(f64::total_cmp);
    let Some(median) = median(&values) else {
        return "FAILED".to_string();
    };
    match (values.first(), values.last()) {
        (Some(lo), Some(hi)) if values.len() > 1 => {
            format!("{} ({}…{})", format(median), format(*lo), format(*hi))
        }
        _ => format(median),
    }
}

/// The median of sorted `values` (the mean of the middle two for an even
/// count).
fn median(values: &[f64]) -> Option<f64> {
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => values.get(n / 2).copied(),
        _ => Some((values.get(n / 2 - 1)? + values.get(n / 2)?) / 2.0),
    }
}

/// `(c)`, `(d)`… plus a word, for the ratio headings.
fn short(kind: Kind) -> &'static str {
    match kind {
        Kind::Direct => "(a)",
        Kind::Socat => "socat",
        Kind::Relay => "relay",
        Kind::Proxy => "(c)",
        Kind::ProxyDir => "(d)",
        Kind::ProxyRecorder => "(e)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_then_ratios_of_each_proxy_column_to_each_baseline() {
        let kinds = [Kind::Direct, Kind::Relay, Kind::Proxy];
        let mut table = Table::new(&kinds);
        for (kind, mib, us) in [
            (Kind::Direct, 1000.0, 20.0),
            (Kind::Relay, 500.0, 50.0),
            (Kind::Proxy, 450.0, 60.0),
        ] {
            table.set("throughput", Unit::MibPerSec, kind, Cell::Value(mib));
            table.set("latency p50", Unit::Micros, kind, Cell::Value(us));
            table.set("failed", Unit::Count, kind, Cell::Value(0.0));
        }
        table.set("memory", Unit::Kib, Kind::Direct, Cell::NotApplicable);
        table.set("memory", Unit::Kib, Kind::Relay, Cell::Value(20.0));
        // The proxy's memory cell is never set: it reads as failed.
        let markdown = table.markdown();
        let lines: Vec<&str> = markdown.lines().collect();
        assert_eq!(
            lines[0],
            "| scenario | unit | (a) direct | (b) tokio relay | (c) proxy, no recording |"
        );
        assert_eq!(lines[2], "| throughput | MiB/s | 1000.0 | 500.0 | 450.0 |");
        assert_eq!(lines[4], "| failed | count | 0 | 0 | 0 |");
        assert_eq!(lines[5], "| memory | KiB | n/a | 20.0 | FAILED |");
        assert_eq!(lines[7], "| scenario | (c) ÷ (a) | (c) ÷ relay |");
        assert_eq!(lines[9], "| throughput | 0.45× | 0.90× |");
        assert_eq!(
            lines[10],
            "| latency p50 | 3.00× (+40.0 µs) | 1.20× (+10.0 µs) |"
        );
        // Counts have no ratios; a missing figure shows as such.
        assert_eq!(lines[11], "| memory | n/a | FAILED |");
        assert_eq!(lines.len(), 12);
    }

    #[test]
    fn rounds_give_medians_and_ratios_within_each_round() {
        let kinds = [Kind::Relay, Kind::ProxyRecorder];
        let mut table = Table::new(&kinds);
        // The relay is fast in round 0 and slow in round 2; the recorder
        // follows it, so the ratio within each round is steady.
        for (round, relay, recorder) in [(0, 1000.0, 600.0), (1, 800.0, 500.0), (2, 500.0, 320.0)] {
            table.start_round(round);
            table.set(
                "throughput",
                Unit::MibPerSec,
                Kind::Relay,
                Cell::Value(relay),
            );
            table.set(
                "throughput",
                Unit::MibPerSec,
                Kind::ProxyRecorder,
                Cell::Value(recorder),
            );
            table.set("p50", Unit::Micros, Kind::Relay, Cell::Value(50.0));
            table.set(
                "p50",
                Unit::Micros,
                Kind::ProxyRecorder,
                Cell::Value(60.0 + round as f64),
            );
        }
        // One round of one cell failed: the whole cell says so.
        table.set("memory", Unit::Kib, Kind::Relay, Cell::Value(10.0));
        let markdown = table.markdown();
        let lines: Vec<&str> = markdown.lines().collect();
        assert!(lines[0].starts_with("Median of 3 rounds"), "{markdown}");
        assert_eq!(
            lines[4],
            "| throughput | MiB/s | 800.0 (500.0…1000.0) | 500.0 (320.0…600.0) |"
        );
        assert_eq!(lines[6], "| memory | KiB | FAILED | FAILED |");
        assert_eq!(lines[10], "| throughput | 0.62× (0.60×…0.64×) |");
        assert_eq!(
            lines[11],
            "| p50 | 1.22× (1.20×…1.24×) (+11.0 (+10.0…+12.0) µs) |"
        );
    }
}
