//! Page weight and speed of the dashboard (`/`) and the history page (`/charts`), for a
//! baseline jkmon and this build in the same run: the bytes of HTML + CSS + JS the browser
//! loads, and the time from navigation to the first chart painted (the cell bars on `/`, the
//! first line on `/charts`), in headless Chromium with its cache off, the median of several
//! loads. Each build serves `run --demo` on a database `fill-demo` filled with 30 days.
//!
//!   JKMON_BEFORE=/tmp/jk-before/target/release/jkmon cargo bench --bench pages
//!
//! (build the baseline from an earlier commit first, e.g. `git worktree add /tmp/jk-before
//! <commit> && (cd /tmp/jk-before && cargo build --release)`). Without `JKMON_BEFORE` only this
//! build is measured. Needs chromium.

#[path = "../tests/it/common/mod.rs"]
#[allow(dead_code)] // the bench uses the browser and the process helpers only
mod common;

use std::path::Path;
use std::time::Duration;

use common::browser::Browser;
use serde_json::json;

/// Set before any page script runs: the time the first chart's SVG holds a drawn mark, taken
/// two animation frames later (it has been painted by then).
const WATCH_FIRST_CHART: &str = r#"
  window.__jkChart = null;
  new MutationObserver(function (_, obs) {
    if (document.querySelector(".chart svg rect.bar, .chart svg polyline")) {
      obs.disconnect();
      requestAnimationFrame(function () { requestAnimationFrame(function () { window.__jkChart = performance.now(); }); });
    }
  }).observe(document, { subtree: true, childList: true });"#;

const MEASURE: &str = r#"new Promise(function (resolve) {
    var n = 0;
    (function look() {
      if (window.__jkChart !== null || ++n > 600) {
        var nav = performance.getEntriesByType("navigation")[0];
        var assets = performance.getEntriesByType("resource").filter(function (r) {
          return r.initiatorType === "link" || r.initiatorType === "script" || r.initiatorType === "css";
        });
        resolve({ paint_ms: window.__jkChart, html: nav.decodedBodySize,
          assets: assets.reduce(function (s, r) { return s + r.decodedBodySize; }, 0),
          files: assets.map(function (r) { return r.name.replace(/^.*\/static\//, ""); }) });
      } else setTimeout(look, 10);
    })();
  })"#;

struct Figures {
    bytes: [f64; 2],
    paint_ms: [f64; 2],
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// How much to measure: `cargo bench` 30 days and 7 loads per page; `cargo test
/// --all-targets` (no `--bench`) a smoke run of 1 day and 1 load.
struct Plan {
    days: u32,
    loads: usize,
}

fn measure(binary: &Path, browser: &Browser, plan: &Plan) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let (mut run, base) = common::process::demo_after_fill(binary, dir.path(), plan.days, &[]);
    let mut page = browser.page();
    page.call("Network.enable", json!({}));
    page.call("Network.setCacheDisabled", json!({"cacheDisabled": true}));
    page.call(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({"source": WATCH_FIRST_CHART}),
    );
    let mut out = Figures {
        bytes: [0.0; 2],
        paint_ms: [0.0; 2],
    };
    for (i, path) in ["/", "/charts"].iter().enumerate() {
        let mut paints = Vec::new();
        for _ in 0..plan.loads {
            page.navigate(&format!("{base}{path}"));
            let m = page.eval(MEASURE);
            paints.push(m["paint_ms"].as_f64().unwrap_or(f64::NAN));
            out.bytes[i] = m["html"].as_f64().unwrap_or(0.0) + m["assets"].as_f64().unwrap_or(0.0);
        }
        out.paint_ms[i] = median(paints);
    }
    page.navigate("about:blank");
    run.signal("TERM");
    run.wait_exit(Duration::from_secs(20));
    out
}

fn main() {
    if !common::have_program("chromium", &["--version"]) {
        eprintln!("pages: chromium is needed");
        return;
    }
    let plan = if std::env::args().any(|a| a == "--bench") {
        Plan { days: 30, loads: 7 }
    } else {
        Plan { days: 1, loads: 1 }
    };
    let after = Path::new(env!("CARGO_BIN_EXE_jkmon"));
    let before = std::env::var_os("JKMON_BEFORE").map(std::path::PathBuf::from);
    let browser = Browser::start();
    let now = measure(after, &browser, &plan);
    assert!(
        now.bytes.iter().all(|b| *b > 0.0) && now.paint_ms.iter().all(|p| p.is_finite()),
        "each page loads and paints a chart"
    );
    let then = before.as_deref().map(|b| measure(b, &browser, &plan));
    for (i, page) in ["/ (dashboard)", "/charts (history)"].iter().enumerate() {
        match &then {
            Some(t) => println!(
                "{page}: HTML+CSS+JS {:.0} → {:.0} bytes ({:.2}x); first chart painted after {:.0} → {:.0} ms ({:.2}x)",
                t.bytes[i],
                now.bytes[i],
                now.bytes[i] / t.bytes[i],
                t.paint_ms[i],
                now.paint_ms[i],
                now.paint_ms[i] / t.paint_ms[i]
            ),
            None => println!(
                "{page}: HTML+CSS+JS {:.0} bytes; first chart painted after {:.0} ms",
                now.bytes[i], now.paint_ms[i]
            ),
        }
    }
}
