//! SVG plots of a run (plotters' SVG backend: no system libraries, no fonts needed).
//!
//! * `throughput-latency.svg`: achieved tx/s against latency (log scale), one pair of
//!   lines per configuration: p50 solid, p99 dashed; end-to-end where observed, else
//!   consensus.
//! * `cdf-<config>.svg`: latency CDF of every point of a configuration (log x).
//! * `timeseries-<config>-<rate>.svg`: per bucket, offered / finalized / executed tx/s
//!   (top) and p50 / p99 latency of the transactions intended in the bucket (bottom),
//!   with a vertical marker and label at every fault action.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::BenchError;
use crate::results::{ConfigurationResult, PointResult, Results};

const SIZE: (u32, u32) = (960, 600);
const FONT: &str = "sans-serif";

/// A named, coloured line.
type Series<'a> = (&'a str, RGBAColor, Vec<(f64, f64)>);

fn perr<E: std::fmt::Debug>(path: &Path) -> impl Fn(E) -> BenchError + '_ {
    move |e| BenchError::Plot { path: path.to_path_buf(), reason: format!("{e:?}") }
}

/// Axis label: no decimals from 10 up, trimmed decimals below.
fn num(v: &f64) -> String {
    let a = v.abs();
    if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A file-name-safe form of a label.
pub fn slug(s: &str) -> String {
    let mut out: String = s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    out.trim_matches('-').to_string()
}

/// The latency pair a point is plotted with: end-to-end if observed, else consensus.
fn headline(p: &PointResult) -> Option<(f64, f64)> {
    p.e2e.as_ref().or(p.consensus.as_ref()).filter(|l| l.count > 0).map(|l| (l.p50_ms, l.p99_ms))
}

fn log_bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in values.filter(|v| v.is_finite() && *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.1, 10.0);
    }
    (lo / 1.5, (hi * 1.5).max(lo * 2.0))
}

/// Draws every plot of `results` into `dir`; returns the files written.
pub fn write_all(results: &Results, dir: &Path) -> Result<Vec<PathBuf>, BenchError> {
    let mut out = Vec::new();
    let path = dir.join("throughput-latency.svg");
    throughput_latency(results, &path)?;
    out.push(path);
    for c in &results.configurations {
        if c.points.is_empty() {
            continue;
        }
        let path = dir.join(format!("cdf-{}.svg", slug(&c.label)));
        cdf(c, &path)?;
        out.push(path);
        for p in &c.points {
            let path = dir.join(format!("timeseries-{}-{:.0}tps.svg", slug(&c.label), p.offered_tps));
            timeseries(c, p, &path)?;
            out.push(path);
            if p.process_series.iter().any(|s| !s.rss.is_empty()) {
                let path = dir.join(format!("memory-{}-{:.0}tps.svg", slug(&c.label), p.offered_tps));
                memory(c, p, &path)?;
                out.push(path);
            }
        }
    }
    Ok(out)
}

/// Throughput–latency curve.
pub fn throughput_latency(results: &Results, path: &Path) -> Result<(), BenchError> {
    let e = perr(path);
    let pts: Vec<(usize, f64, f64, f64)> = results
        .configurations
        .iter()
        .enumerate()
        .flat_map(|(ci, c)| c.points.iter().filter_map(move |p| headline(p).map(|(a, b)| (ci, p.achieved_tps, a, b))))
        .collect();
    let xmax = pts.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
    let (ylo, yhi) = log_bounds(pts.iter().flat_map(|p| [p.2, p.3]));
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{}: throughput vs latency", results.name), (FONT, 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..xmax, (ylo..yhi).log_scale())
        .map_err(&e)?;
    chart.configure_mesh().x_desc("achieved tx/s").y_desc("latency ms (p50 solid, p99 dashed)").draw().map_err(&e)?;
    for (ci, c) in results.configurations.iter().enumerate() {
        let color = Palette99::pick(ci).to_rgba();
        let mine: Vec<&(usize, f64, f64, f64)> = pts.iter().filter(|p| p.0 == ci).collect();
        if mine.is_empty() {
            continue;
        }
        let p50: Vec<(f64, f64)> = mine.iter().map(|p| (p.1, p.2)).collect();
        let p99: Vec<(f64, f64)> = mine.iter().map(|p| (p.1, p.3)).collect();
        let which = if c.observes.executed { "e2e" } else { "consensus" };
        chart
            .draw_series(LineSeries::new(p50.clone(), color.stroke_width(2)))
            .map_err(&e)?
            .label(format!("{} {which} p50", c.label))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(p50.iter().map(|&c| Circle::new(c, 3, color.filled()))).map_err(&e)?;
        chart
            .draw_series(DashedLineSeries::new(p99.clone(), 6, 4, color.stroke_width(2)))
            .map_err(&e)?
            .label(format!("{} {which} p99", c.label))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1)));
        chart.draw_series(p99.iter().map(|&c| TriangleMarker::new(c, 4, color.filled()))).map_err(&e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
}

/// Latency CDF of a configuration's points.
pub fn cdf(c: &ConfigurationResult, path: &Path) -> Result<(), BenchError> {
    let e = perr(path);
    let curve = |p: &PointResult| if p.cdf.e2e.is_empty() { p.cdf.consensus.clone() } else { p.cdf.e2e.clone() };
    let (xlo, xhi) = log_bounds(c.points.iter().flat_map(|p| curve(p).into_iter().map(|x| x.0)));
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let which = if c.observes.executed { "end-to-end" } else { "consensus" };
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{}: {which} latency CDF", c.label), (FONT, 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((xlo..xhi).log_scale(), 0.0..1.0)
        .map_err(&e)?;
    chart
        .configure_mesh()
        .x_desc("latency ms")
        .y_desc("fraction of transactions")
        .x_label_formatter(&num)
        .y_label_formatter(&num)
        .draw()
        .map_err(&e)?;
    for (i, p) in c.points.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = curve(p).into_iter().filter(|x| x.0 > 0.0).collect();
        if pts.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(&e)?
            .label(format!("{:.0} tx/s offered", p.offered_tps))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
}

/// Resident memory of every sampled process over one point (a soak shows whether it
/// levels off).
pub fn memory(c: &ConfigurationResult, p: &PointResult, path: &Path) -> Result<(), BenchError> {
    let e = perr(path);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    const MIB: f64 = 1024.0 * 1024.0;
    let tmax = p.process_series.iter().flat_map(|s| s.rss.last()).map(|r| r.0).fold(p.elapsed_s, f64::max).max(0.1);
    let ymax = p.process_series.iter().flat_map(|s| &s.rss).map(|r| r.1 as f64 / MIB).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{}: resident memory at {:.0} tx/s offered", c.label, p.offered_tps), (FONT, 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..tmax, 0.0..ymax)
        .map_err(&e)?;
    chart
        .configure_mesh()
        .x_desc("s")
        .y_desc("RSS (MiB)")
        .x_label_formatter(&num)
        .y_label_formatter(&num)
        .draw()
        .map_err(&e)?;
    for (i, s) in p.process_series.iter().filter(|s| !s.rss.is_empty()).enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(s.rss.iter().map(|r| (r.0, r.1 as f64 / MIB)), color.stroke_width(2)))
            .map_err(&e)?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
}

/// Time series of one point with fault markers.
pub fn timeseries(c: &ConfigurationResult, p: &PointResult, path: &Path) -> Result<(), BenchError> {
    let e = perr(path);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(&e)?;
    let (top, bottom) = root.split_vertically(SIZE.1 / 2);
    let tmax = p.timeseries.last().map_or(0.0, |b| b.t_s).max(p.elapsed_s).max(0.1);
    let ymax = p
        .timeseries
        .iter()
        .flat_map(|b| [b.offered_tps, b.finalized_tps, b.executed_tps, b.sent_tps])
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.15;

    // Top: throughput.
    let mut chart = ChartBuilder::on(&top)
        .caption(format!("{} at {:.0} tx/s offered", c.label, p.offered_tps), (FONT, 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..tmax, 0.0..ymax)
        .map_err(&e)?;
    chart.configure_mesh().y_desc("tx/s").x_label_formatter(&num).y_label_formatter(&num).draw().map_err(&e)?;
    let mut series: Vec<Series<'_>> = vec![
        ("offered", BLACK.to_rgba(), p.timeseries.iter().map(|b| (b.t_s, b.offered_tps)).collect()),
        ("finalized", BLUE.to_rgba(), p.timeseries.iter().map(|b| (b.t_s, b.finalized_tps)).collect()),
    ];
    if c.observes.executed {
        series.push(("executed", GREEN.to_rgba(), p.timeseries.iter().map(|b| (b.t_s, b.executed_tps)).collect()));
    }
    for (name, color, pts) in series {
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(&e)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    for f in &p.faults {
        let color = if f.ok { RED.to_rgba() } else { MAGENTA.to_rgba() };
        chart.draw_series(LineSeries::new(vec![(f.at_s, 0.0), (f.at_s, ymax)], color.stroke_width(1))).map_err(&e)?;
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((f.at_s, ymax * 0.97))
                    + Text::new(
                        format!("{:?} {}", f.action, f.instance).to_lowercase(),
                        (4, 0),
                        (FONT, 12).into_font(),
                    ),
            ))
            .map_err(&e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(&e)?;

    // Bottom: latency of the transactions intended in each bucket.
    let use_e2e = c.observes.executed;
    let lat: Vec<(f64, Option<f64>, Option<f64>)> = p
        .timeseries
        .iter()
        .map(|b| {
            if use_e2e { (b.t_s, b.e2e_p50_ms, b.e2e_p99_ms) } else { (b.t_s, b.consensus_p50_ms, b.consensus_p99_ms) }
        })
        .collect();
    let (ylo, yhi) = log_bounds(lat.iter().flat_map(|l| [l.1, l.2]).flatten());
    let mut chart = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..tmax, (ylo..yhi).log_scale())
        .map_err(&e)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first intended send")
        .y_desc(if use_e2e { "e2e latency ms" } else { "consensus latency ms" })
        .x_label_formatter(&num)
        .y_label_formatter(&num)
        .draw()
        .map_err(&e)?;
    for (name, color, idx) in [("p50", BLUE.to_rgba(), 1usize), ("p99", RED.to_rgba(), 2)] {
        let pts: Vec<(f64, f64)> =
            lat.iter().filter_map(|l| if idx == 1 { l.1 } else { l.2 }.map(|v| (l.0, v.max(ylo)))).collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(&e)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    for f in &p.faults {
        let color = if f.ok { RED.to_rgba() } else { MAGENTA.to_rgba() };
        chart
            .draw_series(DashedLineSeries::new(vec![(f.at_s, ylo), (f.at_s, yhi)], 4, 4, color.stroke_width(1)))
            .map_err(&e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
}
