//! Results and how they are written: every figure is measured with its baseline in the same
//! run, once per repeat; the report shows min / median / max of both and of their ratio, and
//! judges targets on the worst repeat. Pure: results in, Markdown out.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::stats::Spread;

/// One scenario's outcome, saved as JSON under `bench/out/` and rendered into the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// Short name (`relay`, `streams`, ...), also the JSON file name.
    pub id: String,
    pub title: String,
    /// How it was measured (Markdown).
    pub method: String,
    /// UTC time the scenario started.
    pub measured_at: String,
    pub load_before: [f64; 3],
    pub load_after: [f64; 3],
    pub repeats: usize,
    pub figures: Vec<Figure>,
    /// Anything a reader must know to trust the figures (Markdown, one paragraph each).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    pub label: String,
    pub unit: String,
    /// What is measured (usually the proxy) and what it is compared with.
    pub subject: String,
    pub baseline: String,
    /// One value per repeat, and the baseline measured in the same repeat.
    pub values: Vec<f64>,
    pub baselines: Vec<f64>,
    pub target: Option<Target>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Bound {
    /// subject / baseline >= limit
    RatioAtLeast,
    /// subject / baseline <= limit
    RatioAtMost,
    /// subject <= limit (in the figure's unit)
    ValueAtMost,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    pub bound: Bound,
    pub limit: f64,
    /// As the issue states it, e.g. "relay >= 80% of the plain TCP relay".
    pub text: String,
}

impl Figure {
    pub fn new(label: &str, unit: &str, subject: &str, baseline: &str) -> Self {
        Self {
            label: label.to_owned(),
            unit: unit.to_owned(),
            subject: subject.to_owned(),
            baseline: baseline.to_owned(),
            values: Vec::new(),
            baselines: Vec::new(),
            target: None,
        }
    }

    pub fn with_target(mut self, bound: Bound, limit: f64, text: &str) -> Self {
        self.target = Some(Target {
            bound,
            limit,
            text: text.to_owned(),
        });
        self
    }

    /// Adds one repeat's value and the baseline measured with it.
    pub fn push(&mut self, value: f64, baseline: f64) {
        self.values.push(value);
        self.baselines.push(baseline);
    }

    /// subject / baseline per repeat (NaN where the baseline is 0).
    pub fn ratios(&self) -> Vec<f64> {
        self.values
            .iter()
            .zip(&self.baselines)
            .map(|(v, b)| if *b == 0.0 { f64::NAN } else { v / b })
            .collect()
    }

    /// The repeat furthest from meeting the target: (figure judged, met?).
    pub fn verdict(&self) -> Option<(f64, bool)> {
        let target = self.target.as_ref()?;
        let judged = match target.bound {
            Bound::RatioAtLeast | Bound::RatioAtMost => self.ratios(),
            Bound::ValueAtMost => self.values.clone(),
        };
        let spread = Spread::of(&judged)?;
        Some(match target.bound {
            Bound::RatioAtLeast => (spread.min, spread.min >= target.limit),
            Bound::RatioAtMost | Bound::ValueAtMost => (spread.max, spread.max <= target.limit),
        })
    }
}

/// A number with about three significant digits, without noise for large values.
pub fn number(value: f64) -> String {
    if value.is_nan() {
        return "–".to_owned();
    }
    let magnitude = value.abs();
    if magnitude >= 100.0 || magnitude == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

fn spread_text(values: &[f64]) -> String {
    match Spread::of(values) {
        None => "–".to_owned(),
        Some(s) if values.len() == 1 => number(s.median),
        Some(s) => format!(
            "{} / **{}** / {}",
            number(s.min),
            number(s.median),
            number(s.max)
        ),
    }
}

/// What the whole report says about the machine and the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub command: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    /// File name of the chart next to the report, if one was drawn.
    pub chart: Option<String>,
    pub chart_note: Option<String>,
}

/// Renders the report. `why_missed` explains targets (by their text) in case they are missed.
pub fn render(info: &RunInfo, scenarios: &[ScenarioResult], why_missed: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# OriginStack benchmark report\n");
    let _ = writeln!(
        out,
        "Written by `{}` on a {}-core machine with {:.0} GiB of memory (Linux {}), shared with other \
         engineers: each scenario states the load average (1/5/15 min) before and after it ran.\n",
        info.command, info.cores, info.memory_gib, info.kernel
    );
    let _ = writeln!(
        out,
        "How to read it: each figure is measured for the subject (usually the proxy) and for its \
         baseline in the same run, once per repeat, so that load from other processes hits both \
         alike. Cells show min / **median** / max over the repeats; the ratio is taken per repeat \
         (subject ÷ baseline). A target is judged on the worst repeat.\n"
    );
    let _ = writeln!(out, "## Targets\n");
    let _ = writeln!(out, "| target | figure | worst repeat | met |");
    let _ = writeln!(out, "|---|---|---|---|");
    for scenario in scenarios {
        for figure in &scenario.figures {
            let (Some(target), Some((worst, met))) = (&figure.target, figure.verdict()) else {
                continue;
            };
            let worst = match target.bound {
                Bound::ValueAtMost => format!("{} {}", number(worst), figure.unit),
                _ => format!("{}×", number(worst)),
            };
            let _ = writeln!(
                out,
                "| {} | {}. {} | {} | {} |",
                target.text,
                number_of(scenarios, scenario),
                figure.label,
                worst,
                if met { "yes" } else { "**no**" }
            );
        }
    }
    out.push('\n');
    if let Some(chart) = &info.chart {
        let _ = writeln!(
            out,
            "![median ratio to baseline, min–max whiskers]({chart})\n"
        );
    }
    if let Some(note) = &info.chart_note {
        let _ = writeln!(out, "{note}\n");
    }
    for (i, scenario) in scenarios.iter().enumerate() {
        let _ = writeln!(out, "## {}. {}\n", i + 1, scenario.title);
        let _ = writeln!(
            out,
            "Measured {}, {} repeat{}; load average {} before, {} after.\n",
            scenario.measured_at,
            scenario.repeats,
            if scenario.repeats == 1 { "" } else { "s" },
            load_text(scenario.load_before),
            load_text(scenario.load_after)
        );
        let _ = writeln!(out, "{}\n", scenario.method);
        let _ = writeln!(out, "| figure | subject | baseline | ratio | target |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for figure in &scenario.figures {
            let target = match (&figure.target, figure.verdict()) {
                (Some(target), Some((_, met))) => {
                    format!(
                        "{}: {}",
                        target.text,
                        if met { "met" } else { "**missed**" }
                    )
                }
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "| {} ({}) | {}: {} | {}: {} | {}× | {} |",
                figure.label,
                figure.unit,
                figure.subject,
                spread_text(&figure.values),
                figure.baseline,
                spread_text(&figure.baselines),
                spread_text(&figure.ratios()),
                target
            );
        }
        out.push('\n');
        for note in &scenario.notes {
            let _ = writeln!(out, "{note}\n");
        }
        for figure in &scenario.figures {
            let (Some(target), Some((_, false))) = (&figure.target, figure.verdict()) else {
                continue;
            };
            if let Some((_, why)) = why_missed.iter().find(|(text, _)| *text == target.text) {
                let _ = writeln!(out, "**Why \"{}\" is missed:** {why}\n", target.text);
            }
        }
    }
    out
}

/// One line per figure, medians only: what a terminal run prints.
pub fn summary(result: &ScenarioResult) -> String {
    let median = |values: &[f64]| number(Spread::of(values).map_or(f64::NAN, |s| s.median));
    let mut out = String::new();
    for figure in &result.figures {
        let _ = writeln!(
            out,
            "{:<58} {} {} {} vs {} {}: ratio {}",
            format!("{}: {}", result.id, figure.label),
            figure.subject,
            median(&figure.values),
            figure.unit,
            figure.baseline,
            median(&figure.baselines),
            median(&figure.ratios()),
        );
    }
    out
}

/// The section number of `scenario` in the report.
fn number_of(scenarios: &[ScenarioResult], scenario: &ScenarioResult) -> usize {
    scenarios
        .iter()
        .position(|s| std::ptr::eq(s, scenario))
        .map_or(0, |i| i + 1)
}

fn load_text(load: [f64; 3]) -> String {
    format!("{:.2} / {:.2} / {:.2}", load[0], load[1], load[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(figures: Vec<Figure>) -> ScenarioResult {
        ScenarioResult {
            id: "relay".into(),
            title: "RTMP relay".into(),
            method: "One publisher.".into(),
            measured_at: "2026-01-01T00:00:00Z".into(),
            load_before: [0.5, 1.0, 1.5],
            load_after: [0.6, 1.0, 1.5],
            repeats: 3,
            figures,
            notes: vec!["A note.".into()],
        }
    }

    #[test]
    fn targets_are_judged_on_the_worst_repeat() {
        let mut relay = Figure::new("throughput", "MB/s", "proxy", "TCP relay").with_target(
            Bound::RatioAtLeast,
            0.8,
            "relay >= 80% of the plain TCP relay",
        );
        relay.push(90.0, 100.0);
        relay.push(70.0, 100.0);
        relay.push(95.0, 100.0);
        assert_eq!(relay.verdict(), Some((0.7, false)));
        let mut memory = Figure::new("RSS", "KiB/stream", "proxy", "TCP relay").with_target(
            Bound::ValueAtMost,
            64.0,
            "<= 64 KiB per stream",
        );
        memory.push(40.0, 20.0);
        memory.push(50.0, 20.0);
        assert_eq!(memory.verdict(), Some((50.0, true)));
        let mut balance = Figure::new("busiest", "streams", "max", "mean").with_target(
            Bound::RatioAtMost,
            1.15,
            "busiest <= 1.15x mean",
        );
        balance.push(101.0, 100.0);
        assert_eq!(balance.verdict().map(|(_, met)| met), Some(true));
        assert_eq!(Figure::new("x", "u", "a", "b").verdict(), None);
    }

    #[test]
    fn renders_every_figure_with_its_spread_and_verdict() {
        let mut relay = Figure::new("throughput", "MB/s", "proxy", "TCP relay").with_target(
            Bound::RatioAtLeast,
            0.8,
            "relay >= 80%",
        );
        relay.push(600.0, 400.0);
        relay.push(620.0, 410.0);
        relay.push(580.0, 0.0);
        let info = RunInfo {
            command: "make bench".into(),
            cores: 2,
            memory_gib: 24.0,
            kernel: "6.1".into(),
            chart: Some("report.png".into()),
            chart_note: None,
        };
        let text = render(&info, &[scenario(vec![relay.clone()])], &[]);
        assert!(
            text.contains("| relay >= 80% | 1. throughput | 1.50× | yes |"),
            "{text}"
        );
        assert!(text.contains("proxy: 580 / **600** / 620"), "{text}");
        assert!(text.contains("1.50 / **1.51** / 1.51×"), "{text}");
        assert!(
            text.contains("load average 0.50 / 1.00 / 1.50 before"),
            "{text}"
        );
        assert!(text.contains("![median ratio"), "{text}");
        assert!(text.contains("A note."));
        relay.values = vec![10.0; 3];
        let why = [("relay >= 80%", "the relay is slow")];
        let text = render(&info, &[scenario(vec![relay])], &why);
        assert!(
            text.contains("**Why \"relay >= 80%\" is missed:** the relay is slow"),
            "{text}"
        );
    }

    #[test]
    fn numbers_keep_three_digits() {
        assert_eq!(number(611.4), "611");
        assert_eq!(number(41.94), "41.9");
        assert_eq!(number(1.544), "1.54");
        assert_eq!(number(0.0123), "0.012");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(f64::NAN), "–");
    }
}
