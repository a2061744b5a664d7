//! The memory chart of `jemsafe page` (one renderer with `jemsafe timeline --format svg`):
//! it plots every dump's own memory snapshot, not only the timeline's samples, and each
//! dump's marker says why the dump was taken.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// The chart's `<svg id="tl" ...>...</svg>` in a page.
fn chart_of(html: &str) -> &str {
    let open = html
        .match_indices("<svg")
        .map(|(i, _)| i)
        .find(|&i| {
            html[i..]
                .split_once('>')
                .is_some_and(|(tag, _)| tag.contains("id=\"tl\""))
        })
        .expect("no chart in the page");
    let rest = &html[open..];
    &rest[..rest.find("</svg>").expect("chart not closed") + 6]
}

/// Bytes of a label such as `178.3 MiB`, `512 B`.
fn bytes_of(label: &str) -> Option<f64> {
    let (n, unit) = label.trim().split_once(' ')?;
    let n: f64 = n.parse().ok()?;
    let k = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1048576.0,
        "GiB" => 1073741824.0,
        _ => return None,
    };
    Some(n * k)
}

/// The highest label of the chart's value axis.
fn axis_top(chart: &str) -> f64 {
    chart
        .split("text-anchor=\"end\">")
        .skip(1)
        .filter_map(|s| bytes_of(&s[..s.find('<')?]))
        .fold(0.0, f64::max)
}

/// The points of every `<polyline class="rss"`, all runs together.
fn rss_points(chart: &str) -> usize {
    chart
        .split("<polyline class=\"rss\"")
        .skip(1)
        .map(|s| {
            let p = &s[s.find("points=\"").expect("points") + 8..];
            p[..p.find('"').expect("end of points")].split(' ').count()
        })
        .sum()
}

fn sidecar_json(dump: &Path) -> serde_json::Value {
    let text = std::fs::read(jemsafe_report::sidecar::path_for(dump)).expect("sidecar");
    serde_json::from_slice(&text).expect("sidecar JSON")
}

/// The defect: a page of 6 dumps over some seconds, whose timeline had one early sample
/// (RSS before the heap grew), drew an empty chart on an axis of that sample's RSS while
/// the dumps' own snapshots said RSS was far higher. The chart plots every dump's
/// snapshot: its axis reaches their RSS, its RSS line has a point for each.
#[test]
fn a_page_of_dumps_with_a_short_timeline_plots_every_dumps_snapshot() {
    let (dir, config) = series_config("chart-snapshots");
    let dumps: Vec<PathBuf> = workload_dumps(&config, 6);
    let sidecars: Vec<serde_json::Value> = dumps.iter().map(|d| sidecar_json(d)).collect();
    let rss: Vec<u64> = sidecars
        .iter()
        .map(|s| {
            s["memory"]["proc"]["rss"]
                .as_u64()
                .expect("a memory snapshot")
        })
        .collect();
    let top = *rss.iter().max().unwrap();
    assert!(top > 4 << 20, "{rss:?}");

    // The sidecar of the fourth says it was a limit dump, with the reading that fired it.
    let mut fourth = sidecars[3].clone();
    fourth["trigger"] = "limit90".into();
    fourth["reason"] = "limit90: RSS 691 MiB of 768 MiB".into();
    std::fs::write(
        jemsafe_report::sidecar::path_for(&dumps[3]),
        serde_json::to_vec_pretty(&fourth).unwrap(),
    )
    .unwrap();

    // `jemsafe dumps` says it too.
    let out = cli(&["dumps", "-c", config.to_str().unwrap()]);
    let listing = String::from_utf8_lossy(&out.stdout);
    let name = dumps[3].file_name().unwrap().to_string_lossy();
    let line = listing
        .lines()
        .find(|l| l.contains(&*name))
        .unwrap_or_else(|| panic!("{name} not listed: {listing}"));
    assert!(
        line.ends_with(&format!("{name}  (limit90: RSS 691 MiB of 768 MiB)")),
        "{listing}"
    );

    // A timeline of this process with one sample, 1 MiB, a second before the first dump.
    let process = &sidecars[0]["process"];
    let first = std::fs::metadata(&dumps[0]).unwrap().modified().unwrap();
    let t = first.duration_since(UNIX_EPOCH).unwrap().as_millis() - 1000;
    let timeline = dir.join("short.timeline");
    std::fs::write(
        &timeline,
        format!(
            "{{\"jemsafe_timeline\":1}}\n{{\"t\":{t},\"pid\":{},\"start\":{},\"rss\":{}}}\n",
            process["pid"],
            process["start_ticks"],
            1 << 20
        ),
    )
    .unwrap();

    let out_path = dir.join("chart.html");
    let mut args: Vec<String> = vec!["page".into(), "-c".into(), config.display().to_string()];
    args.extend(dumps.iter().map(|p| p.display().to_string()));
    args.extend([
        "--timeline".into(),
        timeline.display().to_string(),
        "-o".into(),
        out_path.display().to_string(),
    ]);
    let out = cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{out:?}");
    let html = std::fs::read_to_string(&out_path).unwrap();
    let chart = chart_of(&html);

    assert_eq!(chart.matches("class=\"marker dump\"").count(), dumps.len());
    let shown_top = axis_top(chart);
    assert!(
        shown_top >= top as f64,
        "the axis ends at {shown_top} bytes, the dumps' RSS reached {top}: {chart}"
    );
    // Dumps within one pixel column are drawn as one reading (its highest RSS); the
    // page's data, which the hover reads, has every one.
    let points = rss_points(chart);
    assert!(points >= 2, "{points} points on the RSS line: {chart}");
    let open = "id=\"data\">";
    let data = &html[html.find(open).expect("page data") + open.len()..];
    let data: serde_json::Value =
        serde_json::from_str(&data[..data.find("</script>").unwrap()]).unwrap();
    let readings: Vec<u64> = data["timeline"]["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p["rss"].as_u64().unwrap())
        .collect();
    let mut want = rss.clone();
    want.push(1 << 20);
    want.sort_unstable();
    let mut got = readings.clone();
    got.sort_unstable();
    assert_eq!(
        got, want,
        "the chart's readings: the sample and each dump's snapshot"
    );
    assert!(chart.contains("class=\"layer\""), "no parts drawn: {chart}");
    assert!(
        chart.contains("(limit90: RSS 691 MiB of 768 MiB)</title>"),
        "the limit dump's marker does not say why: {chart}"
    );
}
