//! `vmm lab --report DIR`: DIR/index.html (one SVG chart per workload, drawn with plotters, and
//! the tables), DIR/<workload>.svg (the same charts as files), DIR/lab.csv and DIR/lab.json
//! (the raw figures). The page needs nothing from the network; a script in it counts the
//! charts and marks the page loaded (the Chromium test reads that).
use crate::backend::Backend;
use crate::measure::Measure;
use crate::table::{self, host_text, per_event, ratio_text};
use crate::{Failure, Results};
use common::{Error, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::fmt::Write as _;
use std::path::Path;

/// One bar color per backend, in table order.
const COLORS: [RGBColor; 4] =
    [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(148, 103, 189)];

/// One bar of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    /// Index into the backends, for its color.
    pub backend: usize,
    pub ns: f64,
}

pub fn write(dir: &Path, results: &Results) -> Result<()> {
    let io =
        |what: &Path, e: std::io::Error| Error::bad_input(format!("--report: cannot write {}: {e}", what.display()));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut charts = Vec::new();
    for workload in workloads(results) {
        let svg = chart_svg(&workload, &bars(results, &workload), &results.backends)?;
        let file = dir.join(format!("{workload}.svg"));
        std::fs::write(&file, &svg).map_err(|e| io(&file, e))?;
        charts.push((workload, svg));
    }
    let files = [("index.html", html(results, &charts)), ("lab.csv", csv(results)?), ("lab.json", json(results))];
    for (name, text) in files {
        let file = dir.join(name);
        std::fs::write(&file, text).map_err(|e| io(&file, e))?;
    }
    Ok(())
}

/// The workloads with figures, in run order.
fn workloads(results: &Results) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for m in &results.measures {
        if !seen.contains(&m.workload) {
            seen.push(m.workload.clone());
        }
    }
    seen
}

/// A workload's bars: each phase on each backend; for compute also the native baseline.
pub fn bars(results: &Results, workload: &str) -> Vec<Bar> {
    let index = |name: &str| results.backends.iter().position(|b| b.name == name).unwrap_or(0);
    let mut out = Vec::new();
    for m in results.measures.iter().filter(|m| m.workload == workload) {
        out.push(Bar {
            label: format!("{} · {}", m.phase_name, m.backend),
            backend: index(&m.backend),
            ns: m.ns_per_event(),
        });
        if m.of_native().is_some() {
            let native = m.baseline_ns as f64 / m.events.max(1) as f64;
            out.push(Bar { label: format!("native · {}", m.backend), backend: index(&m.backend), ns: native });
        }
    }
    out
}

fn chart_error<E: std::fmt::Debug>(e: E) -> Error {
    Error::bad_input(format!("--report: cannot draw a chart: {e:?}"))
}

/// A horizontal bar chart of ns per event, log scale, with where each backend was measured.
pub fn chart_svg(workload: &str, bars: &[Bar], backends: &[Backend]) -> Result<String> {
    let n = bars.len().max(1) as u32;
    let legend_height = 20 * backends.len() as u32 + 10;
    let height = 90 + 30 * n.max(2) + legend_height;
    let positive: Vec<f64> = bars.iter().map(|b| b.ns).filter(|v| *v > 0.0).collect();
    let lo = positive.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = positive.iter().copied().fold(0.0, f64::max);
    let (lo, hi) = if positive.is_empty() { (1.0, 10.0) } else { (10f64.powf((lo / 2.0).log10().floor()), hi * 30.0) };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (820, height)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let (plot, legend) = root.split_vertically(height - legend_height);
        // The segments of 0..k are 0..=k (plotters counts the end in), but an empty range
        // draws nothing: one bar gets an empty row above it.
        let last_row = (n - 1).max(1);
        let mut chart = ChartBuilder::on(&plot)
            .caption(format!("{workload}: ns per event (log scale)"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(230)
            .build_cartesian_2d((lo..hi).log_scale(), (0..last_row).into_segmented())
            .map_err(chart_error)?;
        // Bars run top to bottom in table order; the y axis counts up from the bottom.
        let row = |i: usize| n - 1 - i as u32;
        let label_of = |v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(k) if *k < n => {
                bars.get((n - 1 - k) as usize).map_or(String::new(), |b| b.label.clone())
            }
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(last_row as usize + 1)
            .y_label_formatter(&label_of)
            .x_label_formatter(&|v| table::ns(*v))
            .x_desc("ns per event (event phase minus baseline); compute: ns per iteration")
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(chart_error)?;
        for (b, _) in backends.iter().enumerate() {
            let color = COLORS[b % COLORS.len()];
            let mine = bars.iter().enumerate().filter(|(_, bar)| bar.backend == b && bar.ns > 0.0);
            chart
                .draw_series(mine.map(|(i, bar)| {
                    let mut r = Rectangle::new(
                        [(lo, SegmentValue::Exact(row(i))), (bar.ns, SegmentValue::Exact(row(i) + 1))],
                        color.filled(),
                    );
                    r.set_margin(5, 5, 0, 0);
                    r
                }))
                .map_err(chart_error)?;
        }
        let value_style = TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        let values = bars.iter().enumerate().map(|(i, bar)| {
            let text = if bar.ns > 0.0 {
                format!(" {} ns", table::ns(bar.ns))
            } else {
                format!(" {} ns (below the noise)", table::ns(bar.ns))
            };
            Text::new(
                text,
                (if bar.ns > 0.0 { bar.ns } else { lo }, SegmentValue::CenterOf(row(i))),
                value_style.clone(),
            )
        });
        chart.draw_series(values).map_err(chart_error)?;
        for (b, backend) in backends.iter().enumerate() {
            let y = 8 + 20 * b as i32;
            let color = COLORS[b % COLORS.len()];
            legend.draw(&Rectangle::new([(250, y), (264, y + 12)], color.filled())).map_err(chart_error)?;
            let text = format!("{}: measured on {}", backend.name, backend.measured_on);
            legend.draw(&Text::new(text, (272, y), ("sans-serif", 13))).map_err(chart_error)?;
        }
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One table row's cells for a measure (shared by the page and the CSV).
fn cells(results: &Results, m: &Measure) -> Vec<String> {
    let r = table::ratio_to_reference(results, m);
    let rows = m.exits_by_row().iter().map(|(k, v)| format!("{k} {}", per_event(*v))).collect::<Vec<_>>().join(", ");
    vec![
        m.phase_name.clone(),
        m.backend.clone(),
        m.events.to_string(),
        per_event(m.exits_per_event()),
        if rows.is_empty() { "-".into() } else { rows },
        table::cost_ns(results, m).map_or("-".into(), table::ns),
        ratio_text(r),
        host_text(m, 8),
    ]
}

const HEAD: [&str; 8] =
    ["phase", "backend", "events", "exits|signals / event", "by kind", "ns / event", "ratio", "host layer / event"];

pub fn html(results: &Results, charts: &[(String, String)]) -> String {
    let mut s = String::new();
    let reference = results.backends.first().map_or("-", |b| b.name);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>vmm lab report</title>\n<style>{CSS}</style></head>\n<body>\n\
         <h1>vmm lab: hardware-assisted and trap-and-emulate virtualization, same workloads</h1>\n\
         <p>Each workload makes N events of one kind after a baseline phase running the same loop without the event. \
         ns per event = (event phase &minus; baseline) / N; compute is measured against the same kernel run natively. \
         The ratio is to {reference}. The guide is <code>docs/lab.md</code>.</p>\n<h2>Where each figure was measured</h2>\n\
         <p>All in one <code>vmm lab</code> run{}:</p>\n<ul>\n",
        if results.runs > 1 { format!(", each figure the median of {} runs", results.runs) } else { String::new() }
    );
    for b in &results.backends {
        let _ = writeln!(s, "<li><b>{}</b>: {}</li>", esc(b.name), esc(&b.measured_on));
    }
    s.push_str("</ul>\n");
    for c in results.compute_figures() {
        let _ = writeln!(
            s,
            "<p class=\"compute\">compute with the guest's 100 Hz timer running reaches <b>{}</b> of native on {} ({} measured on {}).</p>",
            table::fraction(c.of_native),
            esc(&c.backend),
            esc(&c.backend),
            esc(&results.backends.iter().find(|b| b.name == c.backend).map_or(String::new(), |b| b.measured_on.clone()))
        );
    }
    for (workload, svg) in charts {
        let _ = writeln!(
            s,
            "<section id=\"workload-{w}\">\n<h2>{w}</h2>\n<figure class=\"chart\" id=\"chart-{w}\">",
            w = esc(workload)
        );
        // The SVG text as plotters wrote it, minus its XML declaration (not allowed inline).
        let body = svg.find("<svg").map_or(svg.as_str(), |at| &svg[at..]);
        s.push_str(body);
        let _ = writeln!(
            s,
            "\n<figcaption>{} : ns per event by phase and backend (log scale)</figcaption></figure>",
            esc(workload)
        );
        s.push_str("<table><tr>");
        for h in HEAD {
            let _ = write!(s, "<th>{h}</th>");
        }
        s.push_str("</tr>\n");
        for m in results.measures.iter().filter(|m| &m.workload == workload) {
            s.push_str("<tr>");
            for (i, c) in cells(results, m).iter().enumerate() {
                let class = if (2..=7).contains(&i) && i != 4 && i != 7 { " class=\"num\"" } else { "" };
                let _ = write!(s, "<td{class}>{}</td>", esc(c));
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</table>\n");
        let notes: Vec<_> = results.notes.iter().filter(|(w, _, _)| w == workload).collect();
        if !notes.is_empty() {
            s.push_str("<details><summary>What each run noted (its --stats notes)</summary>\n");
            for (_, b, note) in notes {
                let _ = writeln!(s, "<p class=\"note\">{}: {}</p>", esc(b), esc(note));
            }
            s.push_str("</details>\n");
        }
        s.push_str("</section>\n");
    }
    if !results.failures.is_empty() {
        s.push_str("<h2>Runs that failed</h2>\n<ul>\n");
        for Failure { workload, backend, reason } in &results.failures {
            let _ = writeln!(s, "<li class=\"failed\">{} on {}: {}</li>", esc(workload), esc(backend), esc(reason));
        }
        s.push_str("</ul>\n");
    }
    s.push_str("<p>Raw data: <a href=\"lab.csv\">lab.csv</a>, <a href=\"lab.json\">lab.json</a>.</p>\n");
    s.push_str(SCRIPT);
    s.push_str("</body></html>\n");
    s
}

const CSS: &str = "body{font-family:sans-serif;max-width:900px;margin:1em auto;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}\
td.num{text-align:right;font-variant-numeric:tabular-nums}figure{margin:0}figcaption{font-size:12px;color:#555}\
.failed{color:#b00}.note{font-size:12px;color:#555}";

/// Marks the page loaded and counts its charts: what the Chromium test reads from the DOM.
const SCRIPT: &str = "<script>\nwindow.addEventListener('load', function () {\n\
  var charts = document.querySelectorAll('figure.chart svg').length;\n\
  document.body.setAttribute('data-charts', String(charts));\n\
  document.body.setAttribute('data-loaded', 'yes');\n\
  console.log('vmm lab report loaded: ' + charts + ' charts');\n});\n</script>\n";

pub const CSV_HEAD: [&str; 14] = [
    "workload",
    "phase",
    "phase_name",
    "backend",
    "measured_on",
    "events",
    "exits_per_event",
    "exits_by_kind",
    "ns_per_event",
    "phase_ns",
    "baseline_ns",
    "ratio_to_reference",
    "of_native",
    "host_per_event",
];

/// One line per workload, phase and backend.
pub fn csv(results: &Results) -> Result<String> {
    let bad = |e: csv::Error| Error::bad_input(format!("--report: cannot write the CSV: {e}"));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_HEAD).map_err(bad)?;
    for m in &results.measures {
        let measured_on = results.backends.iter().find(|b| b.name == m.backend).map_or("", |b| b.measured_on.as_str());
        let r = table::ratio_to_reference(results, m);
        let joined = |v: Vec<(String, f64)>| v.iter().map(|(k, x)| format!("{k}={x}")).collect::<Vec<_>>().join(";");
        w.write_record([
            m.workload.clone(),
            m.phase.to_string(),
            m.phase_name.clone(),
            m.backend.clone(),
            measured_on.to_string(),
            m.events.to_string(),
            m.exits_per_event().to_string(),
            joined(m.exits_by_row()),
            m.ns_per_event().to_string(),
            m.phase_ns.to_string(),
            m.baseline_ns.to_string(),
            r.map_or(String::new(), |r| r.to_string()),
            m.of_native().map_or(String::new(), |r| r.to_string()),
            joined(m.host_per_event()),
        ])
        .map_err(bad)?;
    }
    let bytes = w.into_inner().map_err(|e| Error::bad_input(format!("--report: cannot write the CSV: {e}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Everything, raw counts included, as one JSON document.
pub fn json(results: &Results) -> String {
    use serde_json::json;
    let measures: Vec<_> = results
        .measures
        .iter()
        .map(|m| {
            let r = table::ratio_to_reference(results, m);
            json!({
                "workload": m.workload, "phase": m.phase, "phase_name": m.phase_name, "backend": m.backend,
                "events": m.events, "exits": m.exits, "host": m.host, "phase_ns": m.phase_ns,
                "baseline_ns": m.baseline_ns, "exits_per_event": m.exits_per_event(),
                "ns_per_event": m.ns_per_event(), "ratio_to_reference": r, "of_native": m.of_native(),
            })
        })
        .collect();
    let backends: Vec<_> =
        results.backends.iter().map(|b| json!({ "name": b.name, "measured_on": b.measured_on })).collect();
    let failures: Vec<_> = results
        .failures
        .iter()
        .map(|f| json!({ "workload": f.workload, "backend": f.backend, "reason": f.reason }))
        .collect();
    let notes: Vec<_> =
        results.notes.iter().map(|(w, b, n)| json!({ "workload": w, "backend": b, "note": n })).collect();
    let doc = json!({ "vmm_lab": {
        "backends": backends, "reference": results.backends.first().map(|b| b.name), "runs": results.runs.max(1),
        "measures": measures, "failures": failures, "notes": notes,
    }});
    serde_json::to_string_pretty(&doc).expect("a JSON value always serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Kind;
    use std::collections::BTreeMap;

    fn results() -> Results {
        let m = |workload: &str, name: &str, backend: &str, phase_ns: u64| Measure {
            workload: workload.into(),
            phase: 1,
            phase_name: name.into(),
            event: "same event".into(),
            backend: backend.into(),
            events: 1000,
            exits: BTreeMap::from([("io-out debug-0xf1".into(), 1000)]),
            host: BTreeMap::from([("exits".into(), 1000)]),
            phase_ns,
            baseline_ns: 1_000_000,
        };
        Results {
            backends: vec![Backend::new(Kind::X86Kvm), Backend::new(Kind::Riscv)],
            measures: vec![
                m("console-out", "out 0xf1", "x86-kvm", 6_000_000),
                m("console-out", "sbi putchar, \"legacy\"", "riscv", 81_000_000),
                m("compute", "compute", "riscv", 1_020_000),
            ],
            failures: vec![Failure { workload: "mmio".into(), backend: "riscv".into(), reason: "a <bad> run".into() }],
            notes: vec![("console-out".into(), "x86-kvm".into(), "flavor: PVM".into())],
            runs: 1,
        }
    }

    #[test]
    fn csv_rows_quote_what_needs_it() {
        let text = csv(&results()).unwrap();
        let mut r = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(r.headers().unwrap().iter().collect::<Vec<_>>(), CSV_HEAD);
        let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(&rows[1][2], "sbi putchar, \"legacy\"", "a comma and quotes survive");
        assert_eq!(&rows[0][8], "5000");
        assert_eq!(&rows[1][8], "80000");
        assert_eq!(&rows[1][11], "16");
        assert_eq!(&rows[1][13], "exits=1");
        assert_eq!(&rows[2][12], "0.9803921568627451");
        assert!(rows[0][4].starts_with("this host's /dev/kvm"));
    }

    #[test]
    fn json_holds_raw_counts_and_where_measured() {
        let v: serde_json::Value = serde_json::from_str(&json(&results())).unwrap();
        let lab = &v["vmm_lab"];
        assert_eq!(lab["reference"], "x86-kvm");
        assert_eq!(lab["backends"][1]["measured_on"], "riscv64 Linux under QEMU TCG (the riscv lab host)");
        assert_eq!(lab["measures"][1]["exits"]["io-out debug-0xf1"], 1000);
        assert_eq!(lab["measures"][1]["ratio_to_reference"], 16.0);
        assert_eq!(lab["measures"][0]["of_native"], serde_json::Value::Null);
        assert_eq!(lab["failures"][0]["reason"], "a <bad> run");
    }

    #[test]
    fn page_has_one_chart_per_workload_and_escapes() {
        let dir = std::env::temp_dir().join(format!("teaching-report-{}", std::process::id()));
        write(&dir, &results()).unwrap();
        let page = std::fs::read_to_string(dir.join("index.html")).unwrap();
        assert_eq!(page.matches("<svg").count(), 2, "console-out and compute");
        assert!(page.contains("id=\"chart-console-out\"") && page.contains("id=\"chart-compute\""));
        assert!(!page.contains("<?xml"), "no XML declaration inline");
        assert!(page.contains("a &lt;bad&gt; run"));
        assert!(page.contains("reaches <b>0.980</b> of native on riscv"));
        let svg = std::fs::read_to_string(dir.join("compute.svg")).unwrap();
        assert!(svg.contains("native · riscv") && svg.contains("measured on riscv64 Linux under QEMU TCG"), "{svg}");
        assert!(dir.join("lab.csv").is_file() && dir.join("lab.json").is_file());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bars_cover_every_phase_and_the_native_baseline() {
        let r = results();
        let b = bars(&r, "compute");
        assert_eq!(b.iter().map(|b| b.label.as_str()).collect::<Vec<_>>(), ["compute · riscv", "native · riscv"]);
        assert_eq!((b[0].backend, b[0].ns, b[1].ns), (1, 1020.0, 1000.0));
        assert_eq!(bars(&r, "console-out").len(), 2);
        // A chart with nothing positive still draws.
        let flat = [Bar { label: "x".into(), backend: 0, ns: -3.0 }];
        assert!(chart_svg("t", &flat, &r.backends).unwrap().contains("below the noise"));
    }
}
