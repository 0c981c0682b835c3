//! The documentation as a reader finds it: a short README, and the book (`docs/book`, mdBook)
//! that builds without a warning, whose every link resolves (files and headings), whose
//! summary lists every page, and whose configuration reference names exactly the variables of
//! `.env.example`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn book() -> PathBuf {
    root().join("docs/book/src")
}

/// Every Markdown page of the book, and the README.
fn pages() -> Vec<PathBuf> {
    let mut out = vec![root().join("README.md")];
    let mut stack = vec![book()];
    // bounded by the book's few folders
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    out
}

/// mdBook's id of a heading: lower case, spaces to `-`, other punctuation dropped.
fn heading_id(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The ids of a page's headings (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.insert(heading_id(line.trim_start_matches('#')));
        }
    }
    out
}

/// The relative links of a page: `[text](target)`, outside code.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = &after[..end];
            if !target.contains("://") && !target.starts_with("mailto:") {
                out.push(target.to_string());
            }
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn the_readme_is_short_and_starts_with_the_two_commands() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "the README has {lines} lines: the rest belongs in the book"
    );
    let blocks: Vec<&str> = readme
        .split("```sh\n")
        .skip(1)
        .filter_map(|b| b.lines().next())
        .collect();
    assert_eq!(
        blocks[..2],
        ["cargo run --release -- run --demo", "scripts/test.sh"]
    );
    for must in [
        "glibc 2.34",
        "apt purge jkmon",
        "WEB_AUTH_TOKEN",
        "TELEGRAM_CHAT_ID",
    ] {
        assert!(readme.contains(must), "the README says nothing of {must}");
    }
}

#[test]
fn every_link_in_the_readme_and_the_book_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let here = page.parent().unwrap();
        for link in links(&text) {
            let (file, anchor) = match link.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if file.is_empty() {
                page.clone()
            } else {
                here.join(file)
            };
            checked += 1;
            if !target.exists() {
                broken.push(format!("{}: {link} (no such file)", page.display()));
                continue;
            }
            if let Some(anchor) = anchor {
                let body = std::fs::read_to_string(&target).unwrap_or_default();
                if !anchors(&body).contains(anchor) {
                    broken.push(format!("{}: {link} (no such heading)", page.display()));
                }
            }
            // the book is built from docs/book/src alone: a page may not reach outside it
            if page.starts_with(book())
                && !std::fs::canonicalize(&target)
                    .unwrap()
                    .starts_with(std::fs::canonicalize(book()).unwrap())
            {
                broken.push(format!("{}: {link} (outside the book)", page.display()));
            }
        }
    }
    assert!(
        checked > 60,
        "only {checked} links found: the check reads nothing"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_summary_lists_every_page_of_the_book() {
    let summary = std::fs::read_to_string(book().join("SUMMARY.md")).unwrap();
    let listed: BTreeSet<PathBuf> = links(&summary).iter().map(|l| book().join(l)).collect();
    let pages: BTreeSet<PathBuf> = pages()
        .into_iter()
        .filter(|p| p.starts_with(book()) && !p.ends_with("SUMMARY.md"))
        .collect();
    assert_eq!(
        listed, pages,
        "SUMMARY.md and the pages of docs/book/src differ"
    );
}

#[test]
fn the_configuration_reference_names_every_variable_of_the_example() {
    let variable = |line: &str| -> Option<String> {
        let line = line.trim_start_matches('#').trim_start();
        let (name, _) = line.split_once('=')?;
        (!name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .then(|| name.to_string())
    };
    let example: BTreeSet<String> = std::fs::read_to_string(root().join(".env.example"))
        .unwrap()
        .lines()
        .filter_map(variable)
        .collect();
    let reference: BTreeSet<String> = std::fs::read_to_string(book().join("configuration.md"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_string()))
        .collect();
    assert!(example.len() > 60, "{example:?}");
    assert_eq!(
        reference, example,
        "docs/book/src/configuration.md and .env.example name different variables"
    );
}

/// The mdBook the tests install (`scripts/test.sh`: pinned, under the user's cache).
fn mdbook() -> Option<PathBuf> {
    let path = std::env::var_os("TEST_MDBOOK")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
                .unwrap_or_default();
            cache.join("jkmon/mdbook-0.4.52/bin/mdbook")
        });
    let found = common::have_program(path.to_str().unwrap(), &["--version"]);
    found.then_some(path)
}

#[test]
fn the_book_builds_without_a_warning() {
    let Some(mdbook) = mdbook() else { return };
    let out_dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(mdbook)
        .arg("build")
        .arg(root().join("docs/book"))
        .arg("--dest-dir")
        .arg(out_dir.path())
        .output()
        .unwrap();
    let said = common::succeeded(&out, "mdbook build");
    assert!(
        !said.contains("[WARN]") && !said.contains("[ERROR]"),
        "{said}"
    );
    for page in ["index.html", "install.html", "developers/architecture.html"] {
        assert!(out_dir.path().join(page).is_file(), "{page} was not built");
    }
    let install = std::fs::read_to_string(out_dir.path().join("install.html")).unwrap();
    assert!(
        install.contains("apt install ./jkmon_"),
        "the install page lost its content"
    );
}

/// Home Assistant's automation examples use the syntax it documents today (2024.10 and later:
/// `triggers:` with `trigger:`, `actions:` with `action:`), not the one it renamed.
#[test]
fn home_assistant_examples_use_todays_automation_syntax() {
    let mut examples = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for block in text.split("```yaml\n").skip(1) {
            let block = block.split("```").next().unwrap();
            if !block.contains("automation") && !block.contains("alias:") {
                continue;
            }
            examples += 1;
            for old in [
                "- platform:",
                "- service:",
                "\n    trigger:\n",
                "\n    action:\n",
            ] {
                assert!(
                    !block.contains(old),
                    "{}: `{}` is the old automation syntax:\n{block}",
                    page.display(),
                    old.trim()
                );
            }
        }
    }
    assert!(examples >= 1, "no automation example found");
}

/// The files every project has: a LICENSE that is the license Cargo.toml states, a changelog in
/// Keep a Changelog's form, and the metadata a registry or a packager reads.
#[test]
fn license_changelog_and_metadata_are_complete() {
    let cargo = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    for key in [
        "description = ",
        "license = \"MIT\"",
        "repository = ",
        "readme = \"README.md\"",
        "keywords = ",
        "categories = ",
        "rust-version = ",
    ] {
        assert!(cargo.contains(key), "Cargo.toml lacks {key}");
    }
    let license = std::fs::read_to_string(root().join("LICENSE")).unwrap();
    assert!(license.starts_with("MIT License"), "{license}");
    let changelog = std::fs::read_to_string(root().join("CHANGELOG.md")).unwrap();
    assert!(changelog.contains("keepachangelog.com") && changelog.contains("## [Unreleased]"));
}

/// Each split unit's comment tells how to install that unit, not another.
#[test]
fn each_units_comment_installs_that_unit() {
    for unit in ["jkmon", "jkmon-poll", "jkmon-web", "jkmon-bot"] {
        let text = std::fs::read_to_string(root().join(format!("systemd/{unit}.service"))).unwrap();
        let install = text
            .lines()
            .find(|l| l.contains("sudo cp systemd/"))
            .unwrap_or_else(|| panic!("{unit}.service says nothing of installing it"));
        assert!(
            install.contains(&format!("systemd/{unit}.service"))
                && install.ends_with(&format!("enable --now {unit}")),
            "{unit}.service: {install}"
        );
    }
}
