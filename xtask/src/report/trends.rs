//! Build trends (`cargo xtask report`): from the metrics history ([`crate::report::metrics`]) as text, or
//! as one self-contained HTML page with SVG charts (`--html FILE`): duration per repo over
//! the last runs, cache hit rate and cache size over time, the slowest steps, and line
//! coverage over time when some run measured it.
//!
//! Charts are drawn with plotters' SVG backend built without font features: text becomes
//! SVG `<text>` elements laid out with plotters' built-in metrics, so no fontconfig or
//! system font is needed to render, and the browser picks the font. The page loads nothing
//! from the network. This module only reads the history; it never writes to the cache.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::report::metrics::BuildMetrics;

/// Mean seconds of each `repo/step` over `runs`, slowest first: (name, mean, max, count).
pub fn slowest_steps(runs: &[BuildMetrics]) -> Vec<(String, f64, f64, usize)> {
    let mut acc: BTreeMap<String, (f64, f64, usize)> = BTreeMap::new();
    for m in runs {
        for r in &m.repos {
            for s in &r.steps {
                let e = acc
                    .entry(format!("{}/{}", r.name, s.name))
                    .or_insert((0.0, 0.0, 0));
                e.0 += s.secs;
                e.1 = e.1.max(s.secs);
                e.2 += 1;
            }
        }
    }
    let mut v: Vec<_> = acc
        .into_iter()
        .map(|(k, (sum, max, n))| (k, sum / n as f64, max, n))
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// Repo names in the order they first appear in `runs`.
fn repo_names(runs: &[BuildMetrics]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for m in runs {
        for r in &m.repos {
            if !names.contains(&r.name) {
                names.push(r.name.clone());
            }
        }
    }
    names
}

/// Seconds of `repo` in each run (`None` when it did not run there).
fn repo_series(runs: &[BuildMetrics], repo: &str) -> Vec<Option<f64>> {
    runs.iter()
        .map(|m| {
            m.repos
                .iter()
                .find(|r| r.name == repo && !r.steps.is_empty())
                .map(|r| r.secs)
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

fn mib(b: u64) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

/// A repo's last run is flagged `<- slower` when it took this much longer than its median
/// (and at least 2 s more, over at least 3 runs).
pub const SLOWER: f64 = 0.25;

/// The text report of `runs` (oldest first).
pub fn render_text(runs: &[BuildMetrics], source: &str) -> String {
    let mut s = format!(
        "metrics: {} run(s) from {source}\n\nruns (oldest first):\n",
        runs.len()
    );
    for m in runs {
        let _ = writeln!(
            s,
            "  {:<28} {:<12} {:<7} {:>8.1} s  hit rate {:>5}  cache {:>9}",
            m.run_id,
            m.event,
            m.status,
            m.secs,
            m.hit_rate()
                .map_or("-".into(), |h| format!("{:.0}%", h * 100.0)),
            m.cache_bytes
                .map_or("-".into(), |b| format!("{:.1} MiB", mib(b)))
        );
    }
    s += "\nduration per repo (seconds; median of the runs, then the last run):\n";
    for name in repo_names(runs) {
        let series: Vec<f64> = repo_series(runs, &name).into_iter().flatten().collect();
        let (Some(med), Some(last)) = (median(series.clone()), series.last().copied()) else {
            continue;
        };
        let change = if med > 0.0 {
            format!("{:+.0}%", (last - med) / med * 100.0)
        } else {
            "-".into()
        };
        // Flag a last run much slower than usual; a second or two is noise, not a trend.
        let slower = series.len() >= 3 && last > med * (1.0 + SLOWER) && last - med >= 2.0;
        let _ = writeln!(
            s,
            "  {name:<24} median {med:>8.1}  last {last:>8.1}  ({change} vs median, {} run(s)){}",
            series.len(),
            if slower { "  <- slower" } else { "" }
        );
    }
    s += "\nslowest steps (mean over the runs that ran them):\n";
    for (name, mean, max, n) in slowest_steps(runs).into_iter().take(10) {
        let _ = writeln!(
            s,
            "  {name:<32} mean {mean:>8.1} s  max {max:>8.1} s  ({n} run(s))"
        );
    }
    s
}

type DrawResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const W: u32 = 760;
const H: u32 = 340;

/// A line chart of `series` (label, one value per run) over run indices `0..n`.
fn line_chart(
    title: &str,
    y_desc: &str,
    n: usize,
    series: &[(String, Vec<Option<f64>>)],
    y_max: Option<f64>,
) -> DrawResult<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE)?;
        let top = series
            .iter()
            .flat_map(|(_, v)| v.iter().flatten().copied())
            .fold(0.0f64, f64::max);
        let y_top = y_max.unwrap_or(if top > 0.0 { top * 1.15 } else { 1.0 });
        let x_top = n.saturating_sub(1).max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..x_top, 0f64..y_top)?;
        chart
            .configure_mesh()
            .light_line_style(BLACK.mix(0.04))
            .x_desc("run (oldest → newest)")
            .y_desc(y_desc)
            .x_labels(n.clamp(2, 12))
            .x_label_formatter(&|x| format!("{}", x.round() as i64 + 1))
            .draw()?;
        for (i, (label, values)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, f64)> = values
                .iter()
                .enumerate()
                .filter_map(|(x, v)| v.map(|v| (x as f64, v)))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                .label(label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            chart.draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )?;
        }
        // A legend only where there is more than one line to tell apart.
        if series.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .position(SeriesLabelPosition::UpperLeft)
                .draw()?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// Horizontal bars: the slowest steps by mean seconds.
fn bar_chart(title: &str, bars: &[(String, f64)]) -> DrawResult<String> {
    let mut svg = String::new();
    {
        let h = (H as usize).max(60 + 28 * bars.len()) as u32;
        let root = SVGBackend::with_string(&mut svg, (W, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let top = bars.iter().map(|b| b.1).fold(0.0f64, f64::max);
        let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(220)
            .build_cartesian_2d(
                0f64..(if top > 0.0 { top * 1.1 } else { 1.0 }),
                (0usize..bars.len().max(1)).into_segmented(),
            )?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(BLACK.mix(0.04))
            .x_desc("mean seconds")
            .y_labels(bars.len().max(1))
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                    // Index 0 is drawn at the bottom: the slowest (first) bar goes on top.
                    names
                        .len()
                        .checked_sub(i + 1)
                        .and_then(|j| names.get(j))
                        .cloned()
                        .unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .draw()?;
        chart.draw_series(bars.iter().enumerate().map(|(rank, (_, v))| {
            let i = bars.len() - 1 - rank;
            let mut r = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (*v, SegmentValue::Exact(i + 1)),
                ],
                Palette99::pick(rank).filled(),
            );
            r.set_margin(4, 4, 0, 0);
            r
        }))?;
        root.present()?;
    }
    Ok(svg)
}

/// Escape `s` for HTML text and attributes.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Give `svg` a `<title>` (its accessible name and tooltip) right after the opening tag.
fn titled(svg: &str, title: &str) -> String {
    match svg
        .find("<svg")
        .and_then(|i| svg[i..].find('>').map(|j| i + j + 1))
    {
        Some(end) => format!(
            "{}<title>{}</title>{}",
            &svg[..end],
            esc(title),
            &svg[end..]
        ),
        None => svg.to_owned(),
    }
}

/// The HTML page for `runs` (oldest first): four titled SVG charts (five when some run
/// measured coverage) and a table of runs.
///
/// Errors: a chart cannot be drawn (plotters error), which would be a bug.
pub fn render_html(runs: &[BuildMetrics], source: &str) -> Result<String> {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>bllvm chain CI: build trends</title>\n<style>\nbody{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:900px}\nfigure{margin:0 0 2em 0}\nfigcaption{color:#555;font-size:.9em}\ntable{border-collapse:collapse;font-size:.9em}\ntd,th{border-bottom:1px solid #ddd;padding:.2em .6em;text-align:left}\ntd.n{text-align:right}\n.failed{color:#b00}\n</style>\n</head>\n<body>\n<h1>bllvm chain CI: build trends</h1>\n",
    );
    let _ = writeln!(
        html,
        "<p>{} run(s) from <code>{}</code>, oldest first.</p>",
        runs.len(),
        esc(source)
    );
    for (title, caption, svg) in &charts(runs)? {
        let _ = writeln!(
            html,
            "<figure>\n{}\n<figcaption>{}</figcaption>\n</figure>",
            titled(svg, title),
            esc(caption)
        );
    }
    html += &runs_table(runs);
    html += "</body>\n</html>\n";
    Ok(html)
}

/// The page's charts as (title, caption, SVG): duration per repo, cache hit rate, cache
/// size, slowest steps, and line coverage when some run measured it.
fn charts(runs: &[BuildMetrics]) -> Result<Vec<(&'static str, &'static str, String)>> {
    let n = runs.len();
    let chart_err = |e: Box<dyn std::error::Error>| anyhow::anyhow!("draw chart: {e}");
    let durations = durations(runs);
    let hit: Vec<Option<f64>> = runs
        .iter()
        .map(|m| m.hit_rate().map(|h| h * 100.0))
        .collect();
    let size: Vec<Option<f64>> = runs.iter().map(|m| m.cache_bytes.map(mib)).collect();
    let slow: Vec<(String, f64)> = slowest_steps(runs)
        .into_iter()
        .take(10)
        .map(|(name, mean, _, _)| (name, mean))
        .collect();
    let mut charts = vec![
        (
            "Duration per repo",
            "Wall-clock seconds of each repo in each run.",
            line_chart("Duration per repo", "seconds", n, &durations, None).map_err(chart_err)?,
        ),
        (
            "Cache hit rate",
            "Share of cache stages restored (hit or partial) among those that looked one up.",
            line_chart(
                "Cache hit rate",
                "% of stages",
                n,
                &[("hit rate".to_owned(), hit)],
                Some(100.0),
            )
            .map_err(chart_err)?,
        ),
        (
            "Cache size",
            "Bytes in the cache root's entries after each run.",
            line_chart("Cache size", "MiB", n, &[("cache".to_owned(), size)], None)
                .map_err(chart_err)?,
        ),
        (
            "Slowest steps",
            "Mean seconds of each repo/step over the runs shown (top 10).",
            bar_chart("Slowest steps", &slow).map_err(chart_err)?,
        ),
    ];
    // Coverage only when some run measured it (a `coverage` step).
    let coverage: Vec<Option<f64>> = runs.iter().map(|m| m.coverage_line_percent).collect();
    if coverage.iter().any(Option::is_some) {
        let series = [("coverage".to_owned(), coverage)];
        charts.push((
            "Line coverage",
            "Line coverage over every repo with a coverage step, in percent.",
            line_chart("Line coverage", "% of lines", n, &series, Some(100.0))
                .map_err(chart_err)?,
        ));
    }
    Ok(charts)
}

/// Each repo's duration per run, for the repos that have at least one.
fn durations(runs: &[BuildMetrics]) -> Vec<(String, Vec<Option<f64>>)> {
    repo_names(runs)
        .into_iter()
        .map(|name| {
            let s = repo_series(runs, &name);
            (name, s)
        })
        .filter(|(_, s)| s.iter().any(Option::is_some))
        .collect()
}

/// The table of runs: number, id, event, commit, status, seconds, hit rate, cache size.
fn runs_table(runs: &[BuildMetrics]) -> String {
    let mut html = String::from("<h2>Runs</h2>\n<table>\n<tr><th>#</th><th>run</th><th>event</th><th>commit</th><th>status</th><th>seconds</th><th>hit rate</th><th>cache</th></tr>\n");
    for (i, m) in runs.iter().enumerate() {
        let _ = writeln!(
            html,
            "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"{}\">{}</td><td class=\"n\">{:.1}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            i + 1,
            esc(&m.run_id),
            esc(&m.event),
            esc(&m.commit.as_deref().unwrap_or("-").chars().take(12).collect::<String>()),
            esc(&m.status),
            esc(&m.status),
            m.secs,
            m.hit_rate().map_or("-".into(), |h| format!("{:.0}%", h * 100.0)),
            m.cache_bytes.map_or("-".into(), |b| format!("{:.1} MiB", mib(b))),
        );
    }
    html += "</table>\n";
    html
}

/// Write the HTML page of `runs` (see [`render_html`]) to `out`, creating its directory.
pub fn write_html(runs: &[BuildMetrics], source: &str, out: &Path) -> Result<()> {
    let html = render_html(runs, source)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(out, html).with_context(|| format!("write {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::metrics::BuildMetrics;

    fn runs() -> Vec<BuildMetrics> {
        (1..=4u64)
            .map(|i| {
                let mut m = crate::report::metrics::tests::sample(&format!("r{i}"));
                m.cache_bytes = Some(i * (3 << 20));
                m.repos[0].secs = 2.0 * i as f64;
                m
            })
            .collect()
    }

    #[test]
    fn html_has_four_titled_svg_charts_and_no_external_resources() {
        let html = render_html(&runs(), "history.jsonl").unwrap();
        let svgs: Vec<&str> = html.split("<svg").skip(1).collect();
        assert_eq!(svgs.len(), 4, "{html}");
        let titles: Vec<String> = svgs
            .iter()
            .map(|s| {
                let a = s.find("<title>").expect("svg has a title") + 7;
                let b = s.find("</title>").unwrap();
                s[a..b].to_owned()
            })
            .collect();
        assert_eq!(
            titles,
            [
                "Duration per repo",
                "Cache hit rate",
                "Cache size",
                "Slowest steps"
            ]
        );
        // The legend names the repos; the bar chart names the steps.
        let texts = |svg: &str| -> Vec<String> {
            let re = regex::Regex::new(r"<text[^>]*>\s*([^<]*?)\s*</text>").unwrap();
            re.captures_iter(svg).map(|c| c[1].to_owned()).collect()
        };
        let t0 = texts(svgs[0]);
        assert!(
            t0.contains(&"a".to_owned()) && t0.contains(&"b".to_owned()),
            "{t0:?}"
        );
        assert!(t0.contains(&"Duration per repo".to_owned()), "{t0:?}");
        assert!(
            texts(svgs[3]).contains(&"b/build".to_owned()),
            "{}",
            svgs[3]
        );
        // Data drawn: line paths in the line charts, rectangles in the bar chart.
        assert!(svgs[0].contains("<polyline"), "{}", svgs[0]);
        assert!(svgs[3].matches("<rect").count() >= 4, "{}", svgs[3]);
        // Self-contained: nothing is loaded (the SVG namespace URI is a name, not a load).
        for needle in ["src=", "<link", "<script", "url(", "href=\"http"] {
            assert!(!html.contains(needle), "{needle} in the page");
        }
    }

    #[test]
    fn a_coverage_chart_appears_only_when_a_run_measured_coverage() {
        let mut r = runs();
        let count = |r: &[BuildMetrics]| render_html(r, "h").unwrap().matches("<svg").count();
        assert_eq!(count(&r), 4);
        r[2].coverage_line_percent = Some(71.5);
        let html = render_html(&r, "h").unwrap();
        assert_eq!(html.matches("<svg").count(), 5);
        assert!(html.contains("<title>Line coverage</title>"));
    }

    #[test]
    fn text_report_lists_runs_trends_and_slowest_steps() {
        let t = render_text(&runs(), "h");
        assert!(t.contains("metrics: 4 run(s) from h"), "{t}");
        // a: 2, 4, 6, 8 s; median (upper) 6, last 8: a third and 2 s slower, flagged.
        assert!(
            t.contains("  a  ")
                && t.contains(
                    "median      6.0  last      8.0  (+33% vs median, 4 run(s))  <- slower\n"
                ),
            "{t}"
        );
        // b: 3.5 s every time: not flagged.
        assert!(
            t.contains("median      3.5  last      3.5  (+0% vs median, 4 run(s))\n"),
            "{t}"
        );
        let slow = slowest_steps(&runs());
        assert_eq!(slow[0].0, "b/build");
        assert_eq!(slow[0].1, 3.0);
    }
}
