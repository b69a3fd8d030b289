//! Property tests of the store's parsers: `.dvc` pointers, `.dir` manifests and the remote
//! settings in `.dvc/config` and `slipway.toml`. None may panic on any input; what they accept
//! must be safe to use (paths that stay inside their directory), and what Slipway writes they
//! read back unchanged.

use std::collections::BTreeMap;

use proptest::prelude::*;
use store::Md5;
use store::dvc::{DirEntry, Out, check_relpath, parse_dir_manifest, parse_pointer, write_dir_manifest, write_pointer};

#[path = "../../engine/tests/mutate.rs"]
mod mutate;

const POINTERS: &[&str] = &[
    "outs:\n- md5: 3b2a5d7e1e3f3bb55d8cfa6b27d0d0a5.dir\n  size: 1187\n  nfiles: 3\n  hash: md5\n  path: data\n",
    "outs:\n- md5: 0cc175b9c0f1b6a831c399e269772661\n  size: 1\n  hash: md5\n  path: 'a file.csv'\n",
    "md5: 1\nouts:\n- {md5: 0cc175b9c0f1b6a831c399e269772661, hash: md5, path: x}\n- {md5: 0cc175b9c0f1b6a831c399e269772661.dir, hash: md5, path: y/z, nfiles: 2}\n",
    "deps:\n- path: a\nouts:\n- md5: 0cc175b9c0f1b6a831c399e269772661\n  path: b\n",
];

const MANIFESTS: &[&str] = &[
    r#"[{"md5": "0cc175b9c0f1b6a831c399e269772661", "relpath": "holdout.csv"}, {"md5": "92eb5ffee6ae2fec3ad71c777531578f", "relpath": "sub/train.csv"}]"#,
    r#"[{"md5": "0cc175b9c0f1b6a831c399e269772661", "relpath": "caf\u00e9 \ud83d\ude00.txt"}]"#,
    "[]",
];

const DVC_CONFIGS: &[&str] = &[
    "[core]\n    remote = storage\n['remote \"storage\"']\n    url = s3://bucket/prefix\n    endpointurl = http://127.0.0.1:8333\n",
    "[core]\nremote = local\n['remote \"local\"']\nurl = ../remote\n",
    "[core]\n    autostage = true\n",
];

const SLIPWAY_TOMLS: &[&str] = &[
    "[remote]\nurl = \"s3://bucket/p\"\nendpoint = \"http://127.0.0.1:8333\"\nregion = \"eu-west-1\"\n",
    "[remote]\nurl = \"/srv/remote\"\n",
];

fn out() -> impl Strategy<Value = Out> {
    let part = "[a-zA-Z0-9 _.'\"#:é-]{1,12}".prop_filter("a plain part", |p| p != "." && p != "..");
    (prop::collection::vec(part, 1..4), any::<[u8; 16]>(), any::<bool>(), any::<Option<u64>>(), any::<Option<u64>>())
        .prop_map(|(parts, md5, is_dir, size, nfiles)| Out {
            path: parts.join("/"),
            md5: Md5::from_hex(&hex(&md5)).unwrap(),
            is_dir,
            size,
            nfiles: nfiles.filter(|_| is_dir),
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_pointer_parses_or_is_refused_and_its_paths_stay_inside() {
    mutate::run("store: .dvc pointer", mutate::texts(POINTERS), |text| {
        let Ok(outs) = parse_pointer("fuzz.dvc", &text) else { return Ok(false) };
        prop_assert!(!outs.is_empty());
        for o in outs {
            prop_assert!(check_relpath(&o.path).is_ok(), "accepted {:?}", o.path);
        }
        Ok(true)
    });
}

#[test]
fn a_pointer_reads_back_as_written() {
    mutate::run("store: .dvc pointer round trip", out(), |o| {
        prop_assert_eq!(parse_pointer("x.dvc", &write_pointer(&o)).unwrap(), vec![o]);
        Ok(true)
    });
}

#[test]
fn a_manifest_parses_or_is_refused_and_its_paths_stay_inside() {
    mutate::run("store: .dir manifest", mutate::inputs(MANIFESTS), |bytes| {
        let Ok(entries) = parse_dir_manifest(&bytes) else { return Ok(false) };
        for e in entries {
            prop_assert!(check_relpath(&e.relpath).is_ok(), "accepted {:?}", e.relpath);
        }
        Ok(true)
    });
}

#[test]
fn a_manifest_reads_back_as_written() {
    mutate::run("store: .dir manifest round trip", prop::collection::vec(out(), 0..8), |outs| {
        let entries: Vec<DirEntry> = outs.into_iter().map(|o| DirEntry { relpath: o.path, md5: o.md5 }).collect();
        let mut back = parse_dir_manifest(&write_dir_manifest(&entries)).unwrap();
        let mut want = entries;
        back.sort_by(|a, b| a.relpath.cmp(&b.relpath));
        want.sort_by(|a, b| a.relpath.cmp(&b.relpath));
        prop_assert_eq!(back, want);
        Ok(true)
    });
}

/// The remote settings: `.dvc/config` (INI) and `slipway.toml`'s `[remote]`.
#[test]
fn remote_settings_resolve_or_are_refused() {
    let files = (mutate::inputs(DVC_CONFIGS), mutate::inputs(SLIPWAY_TOMLS));
    mutate::run("store: .dvc/config and [remote]", files, |(config, toml)| {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(".dvc")).unwrap();
        std::fs::write(root.path().join(".dvc/config"), &config).unwrap();
        std::fs::write(root.path().join("slipway.toml"), &toml).unwrap();
        let env = BTreeMap::from([("HOME".to_string(), root.path().display().to_string())]);
        Ok(store::resolve(root.path(), &env).map(|r| r.describe()).is_ok())
    });
}
