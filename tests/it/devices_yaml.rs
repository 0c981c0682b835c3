//! The devices file (`jk_devices.yaml`) read by jkmon and by PyYAML, the reader of the Python
//! monitor that writes it: the same devices with the same names, on the Python monitor's own
//! format and on what owners write by hand (comments after values, quotes, flow maps).

use crate::common;
use std::collections::BTreeMap;
use std::process::Command;

use jkmon::config::devices_file::DevicesFile;

/// `address → name` of each enabled device, as PyYAML's `safe_load` reads `text`.
fn pyyaml(text: &str) -> BTreeMap<String, Option<String>> {
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json, sys, yaml\n\
             d = yaml.safe_load(sys.stdin.read()) or {}\n\
             print(json.dumps({str(k): (v or {}).get('name') for k, v in d.items()}))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "PyYAML could not read:\n{text}");
    let v: BTreeMap<String, Option<serde_json::Value>> =
        serde_json::from_slice(&out.stdout).unwrap();
    v.into_iter()
        .map(|(k, v)| {
            (
                k,
                v.map(|n| n.as_str().map_or(n.to_string(), str::to_string)),
            )
        })
        .collect()
}

fn jkmon(text: &str) -> BTreeMap<String, Option<String>> {
    let file = DevicesFile::parse(text).unwrap_or_else(|e| panic!("{e:?} in:\n{text}"));
    file.devices
        .iter()
        .map(|d| (d.address.to_string(), d.name.clone()))
        .collect()
}

const FILES: &[&str] = &[
    // as the Python monitor's scanner writes it
    "C8:47:80:12:AD:71:\n  address: C8:47:80:12:AD:71\n  last_seen: '2025-03-01T10:00:00'\n  name: JK_24v_3\n",
    // a second device disabled by commenting it out
    "C8:47:80:12:AD:71:\n  address: C8:47:80:12:AD:71\n  name: JK_24v_3\n# C8:47:80:12:AD:72:\n#   address: C8:47:80:12:AD:72\n#   name: JK_spare\n",
    // the flow form of its docs
    "C8:47:80:12:AD:71: {name: JK_24v_3}\n",
    // comments after values, keys and maps
    "C8:47:80:12:AD:71:   # the main pack\n  name: Garage  # main pack\nC8:47:80:00:00:0A: {name: Shed}  # the shed\n",
    // quotes keep what a comment would cut, and quote themselves
    "C8:47:80:12:AD:71:\n  name: 'Garage # 1'\nC8:47:80:00:00:0A:\n  name: \"Shed \\\"B\\\"\"\nC8:47:80:00:00:0B:\n  name: 'it''s mine'\n",
    // a '#' inside a plain word is part of it
    "C8:47:80:12:AD:71:\n  name: Pack#2\n",
    // a document marker and blank lines
    "---\n\nC8:47:80:12:AD:71:\n\n  name: Main\n",
];

#[test]
fn jkmon_reads_the_devices_file_as_pyyaml_does() {
    if !common::have_program("/usr/bin/python3", &["-c", "import yaml"]) {
        return;
    }
    for text in FILES {
        assert_eq!(jkmon(text), pyyaml(text), "in:\n{text}");
    }
    // The one place they differ on purpose: an address of digits only. PyYAML (YAML 1.1)
    // reads `20:21:11:00:00:01` as a base-60 number, which the Python monitor then cannot
    // connect to; jkmon reads the address (its own files quote such keys anyway).
    let digits = "20:21:11:00:00:01:\n  name: Shed\n";
    assert_eq!(pyyaml(digits).keys().next().unwrap(), "15826536001");
    assert_eq!(jkmon(digits).keys().next().unwrap(), "20:21:11:00:00:01");
}
