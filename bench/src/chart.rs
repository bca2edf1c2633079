//! The report's chart: one row per figure, the median ratio to its baseline as a bar with
//! min–max whiskers, ratio targets marked. Text is drawn with a TrueType font read at run time
//! (DejaVu Sans from Debian's fonts-dejavu-core, installed by `make deps`); plotters renders it
//! with ab_glyph, so no system font library is linked. Without the font the chart is drawn
//! without text and the caller says so.

use std::path::Path;

use anyhow::Context;
use plotters::{prelude::*, style::FontStyle};

use crate::{
    report::{Bound, ScenarioResult},
    stats::Spread,
};

/// Smallest ratio drawn (the chart's left edge); zero ratios (no conflicts) show no bar.
const FLOOR: f64 = 0.005;

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Registers the font once; false when none is installed.
fn font_ready() -> bool {
    static READY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *READY.get_or_init(|| {
        let Some(bytes) = FONT_PATHS.iter().find_map(|p| std::fs::read(p).ok()) else {
            return false;
        };
        // plotters keeps registered fonts for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
    })
}

struct Row {
    label: String,
    ratio: Spread,
    target: Option<f64>,
}

fn rows(scenarios: &[ScenarioResult]) -> Vec<Row> {
    let mut rows = Vec::new();
    for (i, scenario) in scenarios.iter().enumerate() {
        for figure in &scenario.figures {
            let Some(ratio) = Spread::of(&figure.ratios()) else {
                continue;
            };
            let target = figure.target.as_ref().and_then(|t| match t.bound {
                Bound::RatioAtLeast | Bound::RatioAtMost => Some(t.limit),
                Bound::ValueAtMost => None,
            });
            rows.push(Row {
                label: format!(
                    "{}. {} ÷ {}: {}",
                    i + 1,
                    figure.subject,
                    figure.baseline,
                    figure.label
                ),
                ratio,
                target,
            });
        }
    }
    rows
}

/// Draws the chart; returns whether text could be drawn.
pub fn draw(path: &Path, scenarios: &[ScenarioResult]) -> anyhow::Result<bool> {
    let rows = rows(scenarios);
    anyhow::ensure!(!rows.is_empty(), "no figure to chart");
    let with_text = font_ready();
    let height = 90 + 26 * rows.len() as u32;
    let root = BitMapBackend::new(path, (1400, height)).into_drawing_area();
    root.fill(&WHITE)?;
    // Ratios span from a hundredth (memory vs a network round trip) to tens: log scale.
    let top = rows
        .iter()
        .map(|r| r.ratio.max.max(r.target.unwrap_or(0.0)))
        .filter(|v| v.is_finite())
        .fold(2.0f64, f64::max)
        * 1.5;
    let (label_area, caption) = if with_text {
        (
            620,
            "ratio to the baseline measured in the same run, log scale (bar: median, whiskers: min–max, red: target)",
        )
    } else {
        (20, "")
    };
    let mut builder = ChartBuilder::on(&root);
    builder
        .margin(12)
        .x_label_area_size(if with_text { 30 } else { 8 })
        .y_label_area_size(label_area);
    if with_text {
        builder.caption(caption, ("sans-serif", 18));
    }
    let n = rows.len() as i32;
    let mut chart =
        builder.build_cartesian_2d((FLOOR..top).log_scale(), (0..n).into_segmented())?;
    let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
    let label_of = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => labels
            .get((n - 1 - *i) as usize)
            .cloned()
            .unwrap_or_default(),
        SegmentValue::Last => String::new(),
    };
    let mut mesh = chart.configure_mesh();
    mesh.disable_y_mesh().x_desc("");
    if with_text {
        mesh.y_label_formatter(&label_of)
            .y_labels(rows.len())
            .label_style(("sans-serif", 13));
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    for (i, row) in rows.iter().enumerate() {
        // Row 0 at the top.
        let index = n - 1 - i as i32;
        let mut bar = Rectangle::new(
            [
                (FLOOR, SegmentValue::Exact(index)),
                (
                    row.ratio.median.clamp(FLOOR, top),
                    SegmentValue::Exact(index + 1),
                ),
            ],
            RGBColor(70, 120, 190).mix(0.75).filled(),
        );
        bar.set_margin(4, 4, 0, 0);
        chart.draw_series(std::iter::once(bar))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![
                (
                    row.ratio.min.clamp(FLOOR, top),
                    SegmentValue::CenterOf(index),
                ),
                (
                    row.ratio.max.clamp(FLOOR, top),
                    SegmentValue::CenterOf(index),
                ),
            ],
            BLACK.stroke_width(2),
        )))?;
        if let Some(target) = row.target {
            chart.draw_series(std::iter::once(Rectangle::new(
                [
                    (target * 0.985, SegmentValue::Exact(index)),
                    (target * 1.015, SegmentValue::Exact(index + 1)),
                ],
                RED.filled(),
            )))?;
        }
    }
    // The baseline itself.
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Last)],
        BLACK.mix(0.6).stroke_width(1),
    )))?;
    root.present().context("write the chart PNG")?;
    Ok(with_text)
}
