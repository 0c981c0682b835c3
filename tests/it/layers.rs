//! The house's rules, held by CI: every `crate::` path outside test code points down the
//! layer table (`LAYERS`, which must be the table in the book's developers/architecture.md), no two files of `src/` use each
//! other (directly or round a longer loop), and every function over 80 lines carries a
//! written reason (clippy's `too_many_lines`, configured in `clippy.toml` and turned on in
//! `src/lib.rs`, is checked by `cargo clippy -- -D warnings`; this test checks that the lint
//! stays on).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first: each module may use the modules of lower layers, and those of
/// `SAME_LAYER` beside it; never one above.
const LAYERS: &[&[&str]] = &[
    &["protocol", "inverter", "telegram", "systemd"],
    &["transport", "battery", "report"],
    &["session"],
    &["store", "telemetry"],
    &["control", "demo"],
    &["web", "bot", "alerts", "mqtt", "influx"],
    &["config"],
    &["service"],
    &["cli"],
];

/// Uses within one layer that the table allows (the book's architecture page says why).
const SAME_LAYER: &[(&str, &str)] = &[("report", "battery"), ("inverter", "protocol")];

/// Modules only some above them may use: the session drives the hardware, and what the
/// store and the views need of it (its state, the online rule, its events, the inverter's
/// polls) lives below it, in `battery::link` and `inverter::poll`.
const ONLY_USED_BY: &[(&str, &[&str])] = &[("session", &["control", "config", "service", "cli"])];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments, string literals' contents and its test module.
fn code(text: &str) -> String {
    let cut = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    let mut out = String::new();
    for line in text[..cut].lines() {
        let line = match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The module path of a file: `src/store/read.rs` → `["store", "read"]`, `src/store/mod.rs` →
/// `["store"]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root().join("src")).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The file of module path `m`, where it is one.
fn file_of(m: &[String]) -> Option<PathBuf> {
    let src = root().join("src");
    if m.is_empty() {
        return Some(src.join("lib.rs"));
    }
    let joined: PathBuf = m.iter().collect();
    let a = src.join(&joined).with_extension("rs");
    let b = src.join(&joined).join("mod.rs");
    [a, b].into_iter().find(|p| p.is_file())
}

/// The paths a file's code names: `crate::a::b`, `super::c` (resolved against the file's
/// module), with one level of `{…}` groups expanded.
fn paths(file: &Path, code: &str) -> Vec<Vec<String>> {
    let here = module_of(file);
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            // the path up to what cannot be in one; a group `{a, b::c}` expands one level
            let rest = &code[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let head = &rest[..end];
            let mut bases = Vec::new();
            if rest[end..].starts_with('{') {
                let close = rest[end..].find('}').map_or(rest.len(), |c| end + c);
                for item in rest[end + 1..close].split(',') {
                    let item = item.split_whitespace().next().unwrap_or("");
                    if !item.is_empty() {
                        bases.push(format!("{head}{item}"));
                    }
                }
            } else {
                bases.push(head.to_string());
            }
            for b in bases {
                let mut parts: Vec<String> = b
                    .split("::")
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect();
                let mut base = Vec::new();
                match parts.first().map(String::as_str) {
                    Some("crate") => {
                        parts.remove(0);
                    }
                    Some("super") => {
                        // `super` is the parent of the file's own module; each more, one up
                        base = here.clone();
                        while parts.first().is_some_and(|p| p == "super") {
                            parts.remove(0);
                            base.pop();
                        }
                    }
                    _ => {}
                }
                base.extend(parts);
                out.push(base);
            }
        }
    }
    out
}

/// The deepest module of `path` that is a file of its own.
fn target(path: &[String]) -> Option<PathBuf> {
    (1..=path.len()).rev().find_map(|n| file_of(&path[..n]))
}

struct House {
    /// module → the modules it uses
    modules: BTreeMap<String, BTreeSet<String>>,
    /// file → the files it uses (not its own ancestors' `mod.rs`, whose shared items every
    /// file of a module may use, nor its descendants)
    files: BTreeMap<PathBuf, BTreeSet<PathBuf>>,
}

fn house() -> House {
    let mut files = Vec::new();
    sources(&root().join("src"), &mut files);
    let mut h = House {
        modules: BTreeMap::new(),
        files: BTreeMap::new(),
    };
    for f in &files {
        let m = module_of(f);
        let Some(top) = m.first().cloned() else {
            continue;
        };
        if f.ends_with("main.rs") {
            continue;
        }
        let code = code(&std::fs::read_to_string(f).unwrap());
        for p in paths(f, &code) {
            if let Some(t) = p.first() {
                if t != &top && layer_of(t).is_some() {
                    h.modules.entry(top.clone()).or_default().insert(t.clone());
                }
            }
            if let Some(to) = target(&p) {
                let to_dir = to.parent().unwrap().to_path_buf();
                let related = to == *f
                    || (to.ends_with("mod.rs") && f.starts_with(&to_dir))
                    || (f.ends_with("mod.rs") && to.starts_with(f.parent().unwrap()))
                    || to.ends_with("lib.rs");
                if !related {
                    h.files.entry(f.clone()).or_default().insert(to);
                }
            }
        }
    }
    h
}

#[test]
fn every_use_points_down_the_layer_table() {
    let h = house();
    let mut wrong = Vec::new();
    for (from, uses) in &h.modules {
        let Some(lf) = layer_of(from) else {
            wrong.push(format!("{from} is in no layer: add it to the table"));
            continue;
        };
        for to in uses {
            let lt = layer_of(to).unwrap();
            let fine = (lt < lf || SAME_LAYER.contains(&(from.as_str(), to.as_str())))
                && ONLY_USED_BY
                    .iter()
                    .all(|(m, users)| to != m || users.contains(&from.as_str()));
            if !fine {
                wrong.push(format!(
                    "{from} (layer {}) uses {to} (layer {})",
                    lf + 1,
                    lt + 1
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "edges the layer table forbids:\n{}",
        wrong.join("\n")
    );
    // every module of src/ is in the table
    for e in std::fs::read_dir(root().join("src")).unwrap() {
        let name = e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if !["lib", "main"].contains(&name.as_str()) {
            assert!(layer_of(&name).is_some(), "src/{name} is in no layer");
        }
    }
}

/// The simulator (`transport::sim`) serves the demo, `jkmon simulate` and the tests: the store
/// and the views never import it (the demo's history reaches the store through
/// `store::backfill::Invented`).
const SIMULATOR_NEVER_IN: &[&str] = &[
    "store",
    "telemetry",
    "control",
    "web",
    "bot",
    "alerts",
    "mqtt",
    "influx",
];

#[test]
fn the_simulator_stays_out_of_the_store_and_the_views() {
    let mut files = Vec::new();
    sources(&root().join("src"), &mut files);
    let mut wrong = Vec::new();
    for f in &files {
        let m = module_of(f);
        if !m
            .first()
            .is_some_and(|t| SIMULATOR_NEVER_IN.contains(&t.as_str()))
        {
            continue;
        }
        let code = code(&std::fs::read_to_string(f).unwrap());
        if paths(f, &code)
            .iter()
            .any(|p| p.len() >= 2 && p[0] == "transport" && p[1] == "sim")
        {
            wrong.push(f.strip_prefix(root()).unwrap().display().to_string());
        }
    }
    assert!(wrong.is_empty(), "the simulator imported by: {wrong:?}");
}

/// Tarjan's strongly connected components of the file graph.
#[derive(Default)]
struct Tarjan {
    index: BTreeMap<PathBuf, usize>,
    low: BTreeMap<PathBuf, usize>,
    stack: Vec<PathBuf>,
    on: BTreeSet<PathBuf>,
    next: usize,
    cycles: Vec<Vec<PathBuf>>,
}

impl Tarjan {
    fn visit(&mut self, v: &PathBuf, h: &House) {
        self.index.insert(v.clone(), self.next);
        self.low.insert(v.clone(), self.next);
        self.next += 1;
        self.stack.push(v.clone());
        self.on.insert(v.clone());
        for w in h.files.get(v).into_iter().flatten() {
            if !self.index.contains_key(w) {
                self.visit(w, h);
                let lw = self.low[w];
                let lv = self.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if self.on.contains(w) {
                let iw = self.index[w];
                let lv = self.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if self.low[v] == self.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on.remove(&w);
                let done = &w == v;
                scc.push(w);
                if done {
                    break;
                }
            }
            if scc.len() > 1 {
                self.cycles.push(scc);
            }
        }
    }
}

#[test]
fn no_two_files_use_each_other() {
    let h = house();
    let mut t = Tarjan::default();
    for v in h.files.keys() {
        if !t.index.contains_key(v) {
            t.visit(v, &h);
        }
    }
    let src = root().join("src");
    let shown: Vec<String> = t
        .cycles
        .iter()
        .map(|c| {
            c.iter()
                .map(|p| p.strip_prefix(&src).unwrap().display().to_string())
                .collect::<Vec<_>>()
                .join(" ↔ ")
        })
        .collect();
    assert!(
        shown.is_empty(),
        "files that use each other:\n{}",
        shown.join("\n")
    );
    // the graph is real: it has the edges everyone knows of
    let store = src.join("store/writer.rs");
    assert!(
        h.files
            .get(&store)
            .is_some_and(|to| to.contains(&src.join("battery/link.rs"))),
        "the file graph lost its edges"
    );
}

#[test]
fn the_readme_shows_the_table_this_test_holds() {
    let readme =
        std::fs::read_to_string(root().join("docs/book/src/developers/architecture.md")).unwrap();
    let mut rows: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    // the table under its header, to the first line that is not a row
    let table = readme
        .lines()
        .skip_while(|l| !l.starts_with("| layer | modules | may use |"))
        .take_while(|l| l.starts_with('|'));
    for line in table {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 {
            continue;
        }
        let Ok(layer) = cells[1].parse::<usize>() else {
            continue;
        };
        let names: BTreeSet<String> = cells[2]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        if !names.is_empty() {
            rows.insert(layer, names);
        }
    }
    let want: BTreeMap<usize, BTreeSet<String>> = LAYERS
        .iter()
        .enumerate()
        .map(|(i, l)| (i + 1, l.iter().map(|s| s.to_string()).collect()))
        .collect();
    assert_eq!(
        rows, want,
        "the book's layer table (developers/architecture.md) differs from the one CI holds"
    );
}

#[test]
fn long_functions_need_a_reason() {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    assert!(
        lib.contains("#![cfg_attr(not(test), warn(clippy::too_many_lines))]"),
        "src/lib.rs turns clippy's too_many_lines on"
    );
    let conf = std::fs::read_to_string(root().join("clippy.toml")).unwrap();
    assert!(conf.contains("too-many-lines-threshold = 80"), "{conf}");
    // every exception says why, and none is over 120 lines (the reason is checked by clippy:
    // an `expect` that no longer fires fails the build)
    let mut files = Vec::new();
    sources(&root().join("src"), &mut files);
    let mut exceptions = 0;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.contains("clippy::too_many_lines")
                && !line.contains("#![")
                && !line.trim_start().starts_with("//")
            {
                // the attribute, on one line or as rustfmt spreads it over three
                let around = lines[i.saturating_sub(1)..(i + 2).min(lines.len())].join(" ");
                assert!(
                    around.contains("#[expect(") && around.contains("reason = \""),
                    "{}:{}: an exception to too_many_lines is an #[expect] with a reason",
                    f.display(),
                    i + 1
                );
                exceptions += 1;
                let long = function_lines(&lines, i);
                assert!(
                    long <= 120,
                    "{}:{}: a function of {long} lines; even with a reason, none is over 120",
                    f.display(),
                    i + 1
                );
            }
        }
    }
    eprintln!("{exceptions} function(s) over 80 lines, each with its reason");
    assert!(
        exceptions <= 4,
        "{exceptions} functions over 80 lines: at most 4 (byte layouts and tables), the rest split"
    );
}

/// The lines of the function whose attribute is at line `at`: from its `fn` line to the
/// closing brace at the same indentation.
fn function_lines(lines: &[&str], at: usize) -> usize {
    let Some(start) = (at..lines.len()).find(|&j| lines[j].contains("fn ")) else {
        return 0;
    };
    let indent = lines[start].len() - lines[start].trim_start().len();
    let close = format!("{}}}", " ".repeat(indent));
    (start..lines.len())
        .find(|&j| lines[j] == close)
        .map_or(0, |end| end - start + 1)
}
