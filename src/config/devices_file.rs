//! The devices file (`JK_DEVICES_FILE`, default `jk_devices.yaml`): the BMSs `jkmon scan --save`
//! found, in the anchor system's format, so an existing file keeps working:
//!
//! ```yaml
//! C8:47:80:12:AD:71:
//!   address: C8:47:80:12:AD:71
//!   last_seen: '2026-11-22T10:15:00'
//!   name: Garage
//! # C8:47:80:12:AD:72:          <- commented out = disabled
//! #   name: Spare
//! 20:21:11:00:00:01: {name: Shed}
//! ```
//!
//! Only this subset of YAML is read: a map keyed by MAC whose values are `key: value` lines or
//! one `{key: value, …}` flow map. Saving edits the file line by line: the user's comments,
//! order and names stay as they were, a commented-out device is never re-enabled, new devices
//! are appended, and only `last_seen` of known devices changes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::transport::ble::MacAddress;

#[derive(Debug, Error)]
pub enum DevicesFileError {
    #[error("cannot read the devices file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the devices file {path}: {source} (check that its directory exists and is writable)")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {problem} (expected `AA:BB:CC:DD:EE:FF:` followed by indented `name: …` lines, or `AA:BB:CC:DD:EE:FF: {{name: …}}`)")]
    Syntax {
        path: PathBuf,
        line: usize,
        problem: String,
    },
}

/// One enabled device.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub address: MacAddress,
    pub name: Option<String>,
    pub last_seen: Option<String>,
    /// Line index of its key, and one past its last line.
    lines: (usize, usize),
    flow: bool,
}

/// The parsed file, with every original line kept for saving.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DevicesFile {
    lines: Vec<String>,
    pub devices: Vec<Device>,
    /// Devices the user commented out.
    pub disabled: BTreeSet<MacAddress>,
}

/// What [`DevicesFile::merge`] did with one found device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeOutcome {
    Added,
    Updated,
    KeptDisabled,
}

/// A YAML scalar as PyYAML reads it: `'single'` (`''` is a quote), `"double"` (with `\"` and
/// `\\`), or plain, where ` #` starts a comment (`name: Garage  # main pack` is `Garage`).
fn unquote(s: &str) -> String {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('\'') {
        let mut out = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    out.push('\'');
                }
                '\'' => return out,
                c => out.push(c),
            }
        }
        return out;
    }
    if let Some(rest) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(e) => out.push(e),
                    None => {}
                },
                '"' => return out,
                c => out.push(c),
            }
        }
        return out;
    }
    let end = s
        .char_indices()
        .find(|(i, c)| *c == '#' && s[..*i].ends_with([' ', '\t']))
        .map_or(s.len(), |(i, _)| i);
    s[..end].trim_end().to_string()
}

/// What follows a device key, without a trailing comment.
fn without_comment(rest: &str) -> &str {
    if rest.starts_with('#') {
        ""
    } else {
        rest
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `AA:BB:CC:DD:EE:FF:` (maybe quoted) at the start of `line`, and what follows it.
fn split_key(line: &str) -> Option<(MacAddress, &str)> {
    let (key, rest) = if let Some(r) = line.strip_prefix(['\'', '"']) {
        let end = r.find(['\'', '"'])?;
        (&r[..end], r[end + 1..].strip_prefix(':')?)
    } else {
        (line.get(..17)?, line.get(17..)?.strip_prefix(':')?)
    };
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    Some((key.parse().ok()?, without_comment(rest.trim())))
}

impl DevicesFile {
    /// Reads `path`; a file that does not exist is an empty list.
    pub fn load(path: &Path) -> Result<DevicesFile, DevicesFileError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                DevicesFile::parse(&text).map_err(|(line, problem)| DevicesFileError::Syntax {
                    path: path.to_path_buf(),
                    line,
                    problem,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DevicesFile::default()),
            Err(source) => Err(DevicesFileError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses the text; errors carry a 1-based line number.
    pub fn parse(text: &str) -> Result<DevicesFile, (usize, String)> {
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut file = DevicesFile {
            lines,
            ..DevicesFile::default()
        };
        let mut current: Option<Device> = None;
        for (i, raw) in file.lines.iter().enumerate() {
            let trimmed = raw.trim();
            if let Some(comment) = trimmed.strip_prefix('#') {
                if let Some((mac, _)) = split_key(comment.trim_start()) {
                    if !raw.starts_with([' ', '\t']) {
                        file.disabled.insert(mac);
                    }
                }
                continue;
            }
            if trimmed.is_empty() || trimmed == "---" || trimmed == "{}" {
                continue;
            }
            if raw.starts_with([' ', '\t']) {
                let dev = current.as_mut().filter(|d| !d.flow).ok_or((
                    i + 1,
                    format!("indented line outside a device: \"{trimmed}\""),
                ))?;
                let (k, v) = trimmed
                    .split_once(':')
                    .ok_or((i + 1, format!("\"{trimmed}\" is not `key: value`")))?;
                set_field(dev, k.trim(), &unquote(v));
                dev.lines.1 = i + 1;
                continue;
            }
            let (address, rest) = split_key(trimmed)
                .ok_or((i + 1, format!("\"{trimmed}\" is not a device address key")))?;
            if let Some(prev) = current.take() {
                file.devices.push(prev);
            }
            let mut dev = Device {
                address,
                name: None,
                last_seen: None,
                lines: (i, i + 1),
                flow: !rest.is_empty(),
            };
            if !rest.is_empty() {
                // `{name: Shed}  # the shed`: the map ends at its brace
                let rest = rest
                    .rfind('}')
                    .filter(|end| without_comment(rest[end + 1..].trim()).is_empty())
                    .map_or(rest, |end| &rest[..=end]);
                let inner = rest
                    .strip_prefix('{')
                    .and_then(|r| r.strip_suffix('}'))
                    .ok_or((i + 1, format!("\"{rest}\" is not a `{{key: value}}` map")))?;
                for pair in inner.split(',').filter(|p| !p.trim().is_empty()) {
                    let (k, v) = pair
                        .split_once(':')
                        .ok_or((i + 1, format!("\"{pair}\" is not `key: value`")))?;
                    set_field(&mut dev, k.trim(), &unquote(v));
                }
            }
            if file.devices.iter().any(|d| d.address == address) {
                return Err((i + 1, format!("{address} is listed twice")));
            }
            current = Some(dev);
        }
        if let Some(dev) = current {
            file.devices.push(dev);
        }
        // A device both enabled and in a comment is enabled (the comment is a leftover).
        for d in &file.devices {
            file.disabled.remove(&d.address);
        }
        Ok(file)
    }

    /// Records a device seen by a scan at `now` (ISO 8601 local time).
    pub fn merge(&mut self, address: MacAddress, name: Option<&str>, now: &str) -> MergeOutcome {
        if self.disabled.contains(&address) {
            return MergeOutcome::KeptDisabled;
        }
        if let Some(idx) = self.devices.iter().position(|d| d.address == address) {
            let dev = self.devices[idx].clone();
            if dev.flow {
                let mut parts = Vec::new();
                if let Some(n) = &dev.name {
                    parts.push(format!("name: {}", quote(n)));
                }
                parts.push(format!("last_seen: {}", quote(now)));
                self.lines[dev.lines.0] = format!("{address}: {{{}}}", parts.join(", "));
            } else if let Some(line) = (dev.lines.0 + 1..dev.lines.1)
                .find(|&l| self.lines[l].trim_start().starts_with("last_seen:"))
            {
                let indent: String = self.lines[line]
                    .chars()
                    .take_while(|c| c.is_whitespace())
                    .collect();
                self.lines[line] = format!("{indent}last_seen: {}", quote(now));
            } else {
                self.insert_lines(dev.lines.1, vec![format!("  last_seen: {}", quote(now))]);
            }
            self.devices[idx].last_seen = Some(now.to_string());
            return MergeOutcome::Updated;
        }
        let mut block = vec![
            format!("{address}:"),
            format!("  address: {address}"),
            format!("  last_seen: {}", quote(now)),
        ];
        if let Some(n) = name {
            block.push(format!("  name: {}", quote(n)));
        }
        let start = self.lines.len();
        let end = start + block.len();
        self.lines.extend(block);
        self.devices.push(Device {
            address,
            name: name.map(str::to_string),
            last_seen: Some(now.to_string()),
            lines: (start, end),
            flow: false,
        });
        MergeOutcome::Added
    }

    fn insert_lines(&mut self, at: usize, new: Vec<String>) {
        let n = new.len();
        self.lines.splice(at..at, new);
        for d in &mut self.devices {
            if d.lines.0 >= at {
                d.lines.0 += n;
            }
            if d.lines.1 >= at {
                d.lines.1 += n;
            }
        }
    }

    pub fn to_text(&self) -> String {
        let mut s = self.lines.join("\n");
        s.push('\n');
        s
    }

    /// Writes through a temporary file and a rename: a crash never leaves half a file.
    pub fn save(&self, path: &Path) -> Result<(), DevicesFileError> {
        let err = |source| DevicesFileError::Write {
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("yaml.tmp");
        std::fs::write(&tmp, self.to_text()).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}

fn set_field(dev: &mut Device, key: &str, value: &str) {
    match key {
        "name" if !value.is_empty() => dev.name = Some(value.to_string()),
        "last_seen" if !value.is_empty() => dev.last_seen = Some(value.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANCHOR: &str = "\
# batteries for the garage
C8:47:80:12:AD:71:
  address: C8:47:80:12:AD:71
  last_seen: '2025-03-01T10:00:00'
  name: JK_24v_3
# C8:47:80:12:AD:72:
#   address: C8:47:80:12:AD:72
#   name: JK_spare
20:21:11:00:00:01: {name: Shed}
";

    fn mac(s: &str) -> MacAddress {
        s.parse().unwrap()
    }

    #[test]
    fn reads_the_anchor_format_with_disabled_devices() {
        let f = DevicesFile::parse(ANCHOR).unwrap();
        let names: Vec<_> = f
            .devices
            .iter()
            .map(|d| (d.address.to_string(), d.name.clone().unwrap()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("C8:47:80:12:AD:71".to_string(), "JK_24v_3".to_string()),
                ("20:21:11:00:00:01".to_string(), "Shed".to_string())
            ]
        );
        assert!(f.disabled.contains(&mac("C8:47:80:12:AD:72")));
        assert_eq!(
            f.devices[0].last_seen.as_deref(),
            Some("2025-03-01T10:00:00")
        );
    }

    #[test]
    fn saving_keeps_comments_and_never_re_enables() {
        let mut f = DevicesFile::parse(ANCHOR).unwrap();
        let now = "2026-11-22T10:00:00";
        assert_eq!(
            f.merge(mac("C8:47:80:12:AD:72"), Some("JK_spare"), now),
            MergeOutcome::KeptDisabled
        );
        assert_eq!(
            f.merge(mac("C8:47:80:12:AD:71"), Some("renamed by scan"), now),
            MergeOutcome::Updated
        );
        assert_eq!(
            f.merge(mac("20:21:11:00:00:01"), None, now),
            MergeOutcome::Updated
        );
        assert_eq!(
            f.merge(mac("A4:C1:38:00:00:09"), Some("Garage 2"), now),
            MergeOutcome::Added
        );
        let text = f.to_text();
        assert!(text.starts_with("# batteries for the garage\n"), "{text}");
        assert!(
            text.contains(
                "# C8:47:80:12:AD:72:\n#   address: C8:47:80:12:AD:72\n#   name: JK_spare\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  last_seen: '2026-11-22T10:00:00'\n  name: JK_24v_3\n"),
            "{text}"
        );
        assert!(
            text.contains("20:21:11:00:00:01: {name: 'Shed', last_seen: '2026-11-22T10:00:00'}"),
            "{text}"
        );
        assert!(text.ends_with("A4:C1:38:00:00:09:\n  address: A4:C1:38:00:00:09\n  last_seen: '2026-11-22T10:00:00'\n  name: 'Garage 2'\n"), "{text}");
        // And it reads back the same.
        let again = DevicesFile::parse(&text).unwrap();
        assert_eq!(again.devices.len(), 3);
        assert!(again.disabled.contains(&mac("C8:47:80:12:AD:72")));
        assert_eq!(again.devices[2].name.as_deref(), Some("Garage 2"));
    }

    #[test]
    fn a_missing_last_seen_line_is_inserted_inside_the_block() {
        let mut f =
            DevicesFile::parse("C8:47:80:12:AD:71:\n  name: A\nC8:47:80:12:AD:73:\n  name: B\n")
                .unwrap();
        f.merge(mac("C8:47:80:12:AD:71"), None, "T");
        f.merge(mac("C8:47:80:12:AD:73"), None, "U");
        assert_eq!(
            f.to_text(),
            "C8:47:80:12:AD:71:\n  name: A\n  last_seen: 'T'\nC8:47:80:12:AD:73:\n  name: B\n  last_seen: 'U'\n"
        );
    }

    #[test]
    fn bad_lines_are_named() {
        let e = DevicesFile::parse("C8:47:80:12:AD:71:\n  name: A\nnot a device\n").unwrap_err();
        assert_eq!(e.0, 3);
        let e = DevicesFile::parse("  name: A\n").unwrap_err();
        assert_eq!(e.0, 1);
        let e = DevicesFile::parse("C8:47:80:12:AD:71:\nC8:47:80:12:AD:71:\n").unwrap_err();
        assert!(e.1.contains("twice"), "{e:?}");
    }
}
