//! A strict reader of the Prometheus text exposition format (0.0.4), independent of jkmon's
//! writer: anything Prometheus would reject, or that breaks the format's rules on families, is
//! an error naming the line.

use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: String,
    pub help: Option<String>,
    pub samples: Vec<Sample>,
}

fn metric_name_ok(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn label_name_ok(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

fn value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => {
            let ok = !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c));
            if !ok {
                return Err(format!("{s:?} is not a number"));
            }
            s.parse().map_err(|_| format!("{s:?} is not a number"))
        }
    }
}

/// `name{a="x",b="y"} value [timestamp]` → its parts.
fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("a sample needs a value")?;
    let name = &line[..name_end];
    if !metric_name_ok(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            // label name
            let start = chars.peek().map(|(i, _)| *i).ok_or("unclosed {")?;
            if body[start..].starts_with('}') {
                chars.next();
                break;
            }
            let eq = body[start..].find('=').ok_or("a label needs =")? + start;
            let label = &body[start..eq];
            if !label_name_ok(label) {
                return Err(format!("bad label name {label:?}"));
            }
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {label} needs a quoted value"));
            }
            let mut v = String::new();
            loop {
                match chars.next().ok_or("unclosed label value")?.1 {
                    '"' => break,
                    '\\' => match chars.next().ok_or("dangling \\")?.1 {
                        '\\' => v.push('\\'),
                        '"' => v.push('"'),
                        'n' => v.push('\n'),
                        c => return Err(format!("unknown escape \\{c}")),
                    },
                    '\n' => return Err("a raw newline in a label value".into()),
                    c => v.push(c),
                }
            }
            if labels.insert(label.to_string(), v).is_some() {
                return Err(format!("label {label} twice"));
            }
            match chars.next().map(|(_, c)| c) {
                Some(',') => {}
                Some('}') => break,
                other => return Err(format!("expected , or }} after a label, got {other:?}")),
            }
        }
        let used = chars.peek().map_or(body.len(), |(i, _)| *i);
        rest = &body[used..];
    }
    let rest = rest.strip_prefix(' ').ok_or("one space before the value")?;
    let mut parts = rest.split(' ');
    let v = value(parts.next().unwrap_or_default())?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if parts.next().is_some() {
        return Err("trailing text after the value".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value: v,
    })
}

/// Every family, in order. Rules: the text ends with a newline; no blank lines; `# TYPE` (one of
/// counter or gauge — jkmon writes no others) comes before the family's samples and at most
/// once, `# HELP` at most once; a family's samples are together; a sample's name is its
/// family's; counters end in `_total`; no series appears twice.
pub fn parse(text: &str) -> Result<Vec<Family>, String> {
    if !text.ends_with('\n') {
        return Err("the text must end with a newline".into());
    }
    let mut families: Vec<Family> = Vec::new();
    let mut closed: HashSet<String> = HashSet::new();
    let mut series: HashSet<String> = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() || line.contains('\r') {
            return Err(at("blank line or carriage return".into()));
        }
        let open = |families: &mut Vec<Family>, closed: &mut HashSet<String>, name: &str| {
            if families.last().is_some_and(|f| f.name == name) {
                return Ok(());
            }
            if let Some(last) = families.last() {
                closed.insert(last.name.clone());
            }
            if closed.contains(name) || families.iter().any(|f| f.name == name) {
                return Err(format!("family {name} appears in two places"));
            }
            families.push(Family {
                name: name.to_string(),
                kind: "untyped".into(),
                help: None,
                samples: Vec::new(),
            });
            Ok(())
        };
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            if !metric_name_ok(name) {
                return Err(at(format!("bad metric name {name:?}")));
            }
            open(&mut families, &mut closed, name).map_err(at)?;
            let f = families.last_mut().unwrap();
            if f.help.is_some() {
                return Err(at("HELP twice".into()));
            }
            f.help = Some(help.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE needs a type".into()))?;
            if !metric_name_ok(name) {
                return Err(at(format!("bad metric name {name:?}")));
            }
            if !["counter", "gauge"].contains(&kind) {
                return Err(at(format!("unexpected type {kind:?}")));
            }
            open(&mut families, &mut closed, name).map_err(at)?;
            let f = families.last_mut().unwrap();
            if f.kind != "untyped" || !f.samples.is_empty() {
                return Err(at("TYPE twice, or after the samples".into()));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(at("a counter's name ends in _total".into()));
            }
            f.kind = kind.to_string();
        } else if line.starts_with('#') {
            continue; // a comment
        } else {
            let s = sample(line).map_err(at)?;
            open(&mut families, &mut closed, &s.name).map_err(at)?;
            let f = families.last_mut().unwrap();
            if f.kind == "untyped" {
                return Err(at("a sample before its family's TYPE".into()));
            }
            let key = format!("{}{:?}", s.name, s.labels);
            if !series.insert(key) {
                return Err(at("the same series twice".into()));
            }
            f.samples.push(s);
        }
    }
    Ok(families)
}

/// The value of `name` with exactly `labels`.
pub fn get(families: &[Family], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    families
        .iter()
        .find(|f| f.name == name)?
        .samples
        .iter()
        .find(|s| s.labels == want)
        .map(|s| s.value)
}

/// Prometheus' own linter (`promtool check metrics`) finds nothing to say about `page`.
pub fn promtool_accepts(page: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    if !super::have_program("promtool", &["--version"]) {
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{page}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
