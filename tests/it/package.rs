//! The Debian package as an owner installs it: `scripts/package.sh` packs the binary this test
//! run built, `lintian` checks it against Debian policy, and `dpkg -i` installs it into a
//! minimal Debian root (bookworm, made by debootstrap from the package registry and cached by
//! `scripts/test.sh`; `TEST_DEBIAN_ROOT` names another tarball). There the files, the user
//! and its groups, the conffile, `systemd-analyze verify` on the installed units and `jkmon
//! doctor` are checked; then removal keeps the configuration, and purge leaves the root as it
//! was — but for a database, which it keeps and says so.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{self, succeeded as ok};

fn root_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cached Debian root's tarball (`scripts/test.sh` makes it).
fn root_tarball() -> PathBuf {
    if let Some(p) = std::env::var_os("TEST_DEBIAN_ROOT") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    cache.join("jkmon/debian-bookworm-root.tar")
}

/// `scripts/package.sh` on this run's binary: the path of the .deb in `out`.
fn build_package(out: &Path) -> PathBuf {
    let made = Command::new(root_dir().join("scripts/package.sh"))
        .args(["--arch", "amd64", "--binary", env!("CARGO_BIN_EXE_jkmon")])
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let printed = ok(&made, "scripts/package.sh");
    let deb = PathBuf::from(printed.lines().last().unwrap().trim());
    assert!(deb.is_file(), "{printed}");
    deb
}

/// Every path under `root` but those dpkg, apt and the user database change on their own
/// (their backups, logs and caches), for comparing the root before and after.
fn paths(root: &Path) -> BTreeSet<String> {
    let skip = [
        "var/lib/dpkg",
        "var/log",
        "var/cache",
        "tmp",
        "etc/passwd-",
        "etc/group-",
        "etc/shadow-",
        "etc/gshadow-",
        "etc/ld.so.cache",
        "run",
    ];
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    // bounded by the root's own files (some ten thousand)
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if skip
                .iter()
                .any(|s| rel == *s || rel.starts_with(&format!("{s}/")))
            {
                continue;
            }
            if path.is_dir() && !path.is_symlink() {
                stack.push(path.clone());
            }
            out.insert(rel);
        }
    }
    out
}

/// A scratch copy of the cached Debian root, run in with chroot.
pub struct Root {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Root {
    /// A fresh copy, or `None` where this machine cannot chroot into one (a loud skip; in CI
    /// a failure).
    pub fn fresh() -> Option<Root> {
        let root_user = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if !common::require(root_user, "a Debian root needs root (chroot)") {
            return None;
        }
        let tarball = root_tarball();
        let found = tarball.is_file();
        let missing = format!(
            "{} (scripts/test.sh makes it with debootstrap)",
            tarball.display()
        );
        common::require(found, &missing).then(|| Root::unpack(&tarball))
    }

    /// A fresh copy of the cached Debian root.
    fn unpack(tarball: &Path) -> Root {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root");
        std::fs::create_dir(&path).unwrap();
        let out = Command::new("tar")
            .arg("-xf")
            .arg(tarball)
            .arg("-C")
            .arg(&path)
            .output()
            .unwrap();
        ok(&out, "unpacking the Debian root");
        Root { _dir: dir, path }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("chroot")
            .arg(&self.path)
            .args(args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8")
            .output()
            .unwrap()
    }

    pub fn file(&self, path: &str) -> PathBuf {
        self.path.join(path.trim_start_matches('/'))
    }
}

/// The root and the package, or `None` where this machine cannot chroot (a loud skip; in CI a
/// failure).
fn prepared() -> Option<(Root, tempfile::TempDir, PathBuf)> {
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !common::require(
        root_user,
        "installing into a Debian root needs root (chroot)",
    ) {
        return None;
    }
    let tarball = root_tarball();
    if !common::require(
        tarball.is_file(),
        &format!(
            "{} (scripts/test.sh makes it with debootstrap)",
            tarball.display()
        ),
    ) {
        return None;
    }
    let out = tempfile::tempdir().unwrap();
    let deb = build_package(out.path());
    Some((Root::unpack(&tarball), out, deb))
}

#[test]
fn lintian_passes_the_package_with_only_the_overrides_it_explains() {
    if !common::have_program("lintian", &["--version"]) {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let deb = build_package(out.path());
    let checked = Command::new("lintian")
        .args([
            "--fail-on",
            "error,warning,info,pedantic",
            "--info",
            "--pedantic",
        ])
        .arg(&deb)
        .output()
        .unwrap();
    let text = ok(&checked, "lintian");
    // the glibc the package asks for is the floor the README and the book state
    let depends = ok(
        &Command::new("dpkg-deb")
            .arg("-f")
            .arg(&deb)
            .arg("Depends")
            .output()
            .unwrap(),
        "dpkg-deb -f",
    );
    let floor = depends
        .split("libc6 (>= ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or_else(|| panic!("no libc6 dependency: {depends}"));
    for doc in ["README.md", "docs/book/src/install.md"] {
        let text = std::fs::read_to_string(root_dir().join(doc)).unwrap();
        assert!(
            text.contains(&format!("glibc {floor}")),
            "{doc} does not state the package's glibc floor {floor}"
        );
    }
    assert!(
        !text.lines().any(|l| l.starts_with(['E', 'W', 'I', 'P'])),
        "{text}"
    );
    // every override carries its reason: a comment right above it
    let overrides =
        std::fs::read_to_string(root_dir().join("packaging/debian/lintian-overrides")).unwrap();
    let lines: Vec<&str> = overrides.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("jkmon:") {
            let reason = lines[..i].iter().rev().take_while(|l| !l.is_empty());
            assert!(
                reason.clone().any(|l| l.starts_with('#')),
                "override without a reason: {line}"
            );
        }
    }
}

#[test]
fn the_package_installs_into_a_minimal_debian_checks_itself_and_purges_clean() {
    let Some((root, _out, deb)) = prepared() else {
        return;
    };
    let before = paths(&root.path);
    std::fs::copy(&deb, root.file("/tmp/jkmon.deb")).unwrap();
    let installed = ok(&root.run(&["dpkg", "-i", "/tmp/jkmon.deb"]), "dpkg -i");
    assert!(
        installed.contains("sudo systemctl enable --now jkmon"),
        "{installed}"
    );

    // the files
    for f in [
        "/usr/bin/jkmon",
        "/lib/systemd/system/jkmon.service",
        "/lib/systemd/system/jkmon-poll.service",
        "/lib/systemd/system/jkmon-web.service",
        "/lib/systemd/system/jkmon-bot.service",
        "/usr/share/man/man1/jkmon.1.gz",
        "/usr/share/man/man1/jkmon-run.1.gz",
        "/usr/share/bash-completion/completions/jkmon",
        "/usr/share/doc/jkmon/copyright",
    ] {
        assert!(root.file(f).is_file(), "{f} is not installed");
    }
    let unit = std::fs::read_to_string(root.file("/lib/systemd/system/jkmon.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/jkmon run"), "{unit}");
    assert!(!unit.contains("/usr/local"), "{unit}");

    // the user, its groups and its directory
    let id = ok(&root.run(&["id", "jkmon"]), "id jkmon");
    assert!(
        id.contains("(bluetooth)") && id.contains("(dialout)"),
        "{id}"
    );
    let home = ok(
        &root.run(&["stat", "-c", "%U:%G %a", "/var/lib/jkmon"]),
        "stat",
    );
    assert_eq!(home.trim(), "jkmon:jkmon 750");

    // the configuration: a conffile, for root to write and jkmon to read
    let conffiles = ok(
        &root.run(&["dpkg-query", "-W", "-f=${Conffiles}", "jkmon"]),
        "dpkg-query",
    );
    assert!(conffiles.contains("/etc/jkmon/jkmon.env"), "{conffiles}");
    let env = ok(
        &root.run(&["stat", "-c", "%U:%G %a", "/etc/jkmon/jkmon.env"]),
        "stat",
    );
    assert_eq!(env.trim(), "root:jkmon 640");

    // the installed units, as systemd reads them
    let verified = root.run(&[
        "systemd-analyze",
        "verify",
        "/lib/systemd/system/jkmon.service",
        "/lib/systemd/system/jkmon-poll.service",
        "/lib/systemd/system/jkmon-web.service",
        "/lib/systemd/system/jkmon-bot.service",
    ]);
    let said = ok(&verified, "systemd-analyze verify");
    assert!(
        !said.contains("jkmon"),
        "systemd-analyze has something to say:\n{said}"
    );

    // the owner edits the configuration, and `jkmon doctor` as the service's user reads it
    let port = common::free_port();
    let conf = std::fs::read_to_string(root.file("/etc/jkmon/jkmon.env")).unwrap();
    let bind = format!("127.0.0.1:{port}");
    let edits = [
        ("JK_BMS_TRANSPORT", "sim"),
        ("DB_PATH", "/var/lib/jkmon/inverter.db"),
        ("WEB_BIND", bind.as_str()),
    ];
    let edited: Vec<String> = conf
        .lines()
        .map(
            |l| match edits.iter().find(|(k, _)| l.starts_with(&format!("{k}="))) {
                Some((k, v)) => format!("{k}={v}"),
                None => l.to_string(),
            },
        )
        .collect();
    std::fs::write(root.file("/etc/jkmon/jkmon.env"), edited.join("\n")).unwrap();
    let doctor = root.run(&[
        "runuser",
        "-u",
        "jkmon",
        "--",
        "sh",
        "-c",
        "cd /var/lib/jkmon && jkmon doctor",
    ]);
    let said = ok(&doctor, "jkmon doctor");
    assert!(said.contains("✔ configuration"), "{said}");
    assert!(
        said.contains("/var/lib/jkmon"),
        "the database directory is checked:\n{said}"
    );

    // removal keeps the configuration; purge removes it, the user and the directory
    ok(&root.run(&["dpkg", "-r", "jkmon"]), "dpkg -r");
    assert!(!root.file("/usr/bin/jkmon").exists());
    assert!(
        root.file("/etc/jkmon/jkmon.env").is_file(),
        "removal keeps the conffile"
    );
    ok(&root.run(&["dpkg", "-P", "jkmon"]), "dpkg -P");
    assert!(
        !root.run(&["id", "jkmon"]).status.success(),
        "the user is gone"
    );
    let after = paths(&root.path);
    let left: Vec<_> = after.difference(&before).collect();
    let lost: Vec<_> = before.difference(&after).collect();
    assert!(
        left.is_empty() && lost.is_empty(),
        "purge left {left:?} and took {lost:?}"
    );
}

#[test]
fn purge_keeps_a_database_and_says_so() {
    let Some((root, _out, deb)) = prepared() else {
        return;
    };
    std::fs::copy(&deb, root.file("/tmp/jkmon.deb")).unwrap();
    ok(&root.run(&["dpkg", "-i", "/tmp/jkmon.deb"]), "dpkg -i");
    std::fs::write(
        root.file("/var/lib/jkmon/inverter.db"),
        b"a year of history",
    )
    .unwrap();
    let purged = ok(&root.run(&["dpkg", "-P", "jkmon"]), "dpkg -P");
    assert!(purged.contains("kept /var/lib/jkmon"), "{purged}");
    assert_eq!(
        std::fs::read(root.file("/var/lib/jkmon/inverter.db")).unwrap(),
        b"a year of history"
    );
    assert!(!root.file("/etc/jkmon").exists());
}
