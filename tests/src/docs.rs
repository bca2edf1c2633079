//! Generated sections of the documentation, checked for drift.
//!
//! A section sits between `<!-- BEGIN GENERATED: name -->` and `<!-- END GENERATED: name -->`
//! in a Markdown file. [`check_section`] fails when the committed text differs from what the
//! code generates now; with `ORIGINSTACK_UPDATE_DOCS=1` (what `make generate` sets) it writes
//! the new text instead.

use std::path::{Path, PathBuf};

/// Set to `1` to rewrite generated sections instead of checking them.
pub const UPDATE_ENV: &str = "ORIGINSTACK_UPDATE_DOCS";

/// `docs/<name>` in the repository.
pub fn doc_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name)
}

/// Checks (or, with [`UPDATE_ENV`], rewrites) section `name` of `file` against `generated`.
pub fn check_section(file: &Path, name: &str, generated: &str) {
    let begin = format!("<!-- BEGIN GENERATED: {name} -->\n");
    let end = format!("<!-- END GENERATED: {name} -->");
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    let (Some(start), Some(stop)) = (text.find(&begin), text.find(&end)) else {
        panic!(
            "{} has no section `{name}` (markers {begin:?} and {end:?})",
            file.display()
        );
    };
    let committed = &text[start + begin.len()..stop];
    let generated = format!("{}\n", generated.trim_end());
    if committed == generated {
        return;
    }
    if std::env::var(UPDATE_ENV).as_deref() == Ok("1") {
        let updated = format!(
            "{}{generated}{}",
            &text[..start + begin.len()],
            &text[stop..]
        );
        std::fs::write(file, updated).unwrap();
        return;
    }
    let first_difference = committed
        .lines()
        .zip(generated.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
    panic!(
        "section `{name}` of {} is out of date with the code (first difference at line {} of \
         the section); regenerate it with `make generate`\n--- committed\n{}\n--- generated\n{}",
        file.display(),
        first_difference + 1,
        committed.lines().nth(first_difference).unwrap_or("<end>"),
        generated.lines().nth(first_difference).unwrap_or("<end>"),
    );
}

/// Escapes text for a Markdown table cell.
pub fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// One family of a Prometheus/OpenMetrics text exposition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricFamily {
    /// As in `# TYPE` (a counter's samples add `_total`).
    pub name: String,
    pub kind: String,
    pub unit: Option<String>,
    pub help: String,
    /// Label names seen on its samples.
    pub labels: Vec<String>,
}

impl MetricFamily {
    /// The sample name users query: counters end in `_total`.
    pub fn sample_name(&self) -> String {
        if self.kind == "counter" {
            format!("{}_total", self.name)
        } else {
            self.name.clone()
        }
    }
}

/// The families of an exposition, in order; label names from the samples (`le` and
/// `quantile` left out: they belong to the type).
pub fn metric_families(exposition: &str) -> Vec<MetricFamily> {
    let mut families: Vec<MetricFamily> = Vec::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            families.push(MetricFamily {
                name: name.into(),
                kind: String::new(),
                unit: None,
                help: help.into(),
                labels: Vec::new(),
            });
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let (Some(family), Some((_, kind))) = (families.last_mut(), rest.split_once(' ')) {
                family.kind = kind.into();
            }
        } else if let Some(rest) = line.strip_prefix("# UNIT ") {
            if let (Some(family), Some((_, unit))) = (families.last_mut(), rest.split_once(' ')) {
                family.unit = Some(unit.into());
            }
        } else if !line.starts_with('#')
            && let Some((_, labels)) = line.split_once('{')
            && let Some(family) = families.last_mut()
        {
            for pair in labels.split(',') {
                if let Some((label, _)) = pair.split_once('=') {
                    let label = label.trim().to_string();
                    if !["le", "quantile"].contains(&label.as_str())
                        && !family.labels.contains(&label)
                    {
                        family.labels.push(label);
                    }
                }
            }
        }
    }
    families
}

/// A Markdown table of `families`.
pub fn metrics_table(families: &[MetricFamily]) -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for family in families {
        let labels = if family.labels.is_empty() {
            "—".to_string()
        } else {
            family
                .labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let kind = match &family.unit {
            Some(unit) => format!("{} ({unit})", family.kind),
            None => family.kind.clone(),
        };
        out.push_str(&format!(
            "| `{}` | {kind} | {labels} | {} |\n",
            family.sample_name(),
            cell(&family.help)
        ));
    }
    out
}
