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
    cells: Vec<Cell>,
}

/// Rows of figures for the targets `kinds`, in the order they were added.
#[derive(Debug, Clone)]
pub struct Table {
    kinds: Vec<Kind>,
    rows: Vec<Row>,
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
            errors: Vec::new(),
        }
    }

    /// Sets the figure of `label` for `kind` (adding the row if new).
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
                    cells: vec![Cell::Failed; self.kinds.len()],
                });
                self.rows.len() - 1
            }
        };
        self.rows[index].cells[column] = cell;
    }

    fn cell(&self, row: &Row, kind: Kind) -> Option<Cell> {
        let column = self.kinds.iter().position(|k| *k == kind)?;
        row.cells.get(column).copied()
    }

    /// The whole report as Markdown: figures, ratios, errors.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        out.push_str("| scenario | unit |");
        for kind in &self.kinds {
            out.push_str(&format!(" {} |", kind.heading()));
        }
        out.push_str("\n|---|---|");
        out.push_str(&"---:|".repeat(self.kinds.len()));
        out.push('\n');
        for row in &self.rows {
            out.push_str(&format!("| {} | {} |", row.label, row.unit.name()));
            for cell in &row.cells {
                let text = match cell {
                    Cell::Value(v) => row.unit.format(*v),
                    Cell::NotApplicable => "n/a".to_string(),
                    Cell::Failed => "FAILED".to_string(),
                };
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
                let text = match (self.cell(row, *p), self.cell(row, *b)) {
                    (Some(Cell::Value(x)), Some(Cell::Value(y))) if y > 0.0 => {
                        if row.unit == Unit::Micros {
                            format!("{:.2}× ({:+.1} µs)", x / y, x - y)
                        } else {
                            format!("{:.2}×", x / y)
                        }
                    }
                    (Some(Cell::Value(_)), Some(Cell::Value(_))) => "∞".to_string(),
                    (Some(Cell::NotApplicable), _) | (_, Some(Cell::NotApplicable)) => {
                        "n/a".to_string()
                    }
                    _ => "FAILED".to_string(),
                };
                out.push_str(&format!(" {text} |"));
            }
            out.push('\n');
        }
        out
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
}
