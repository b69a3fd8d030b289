//! The ledger on a directory remote.

use std::sync::Arc;

use deploy::ledger::{self, EVENT_SCHEMA, Event, EventKind, Ledger, Outcome, Release};
use store::{DirRemote, Remote};

fn release(version: &str, sha: &str) -> Release {
    let model_digest = format!("{:064x}", version.trim_start_matches('v').parse::<u64>().unwrap());
    Release {
        version: version.into(),
        image_digest: None,
        image_config: None,
        files: [("model.onnx".to_string(), model_digest.clone())].into(),
        model_digest,
        serve_digest: "5e".repeat(32),
        config_digest: "c0".repeat(32),
        git_sha: sha.into(),
        tags: vec![format!("tag-{version}")],
    }
}

fn event(env: &str, r: Release) -> Event {
    Event {
        schema: EVENT_SCHEMA.into(),
        seq: 0,
        kind: EventKind::Deploy,
        outcome: Outcome::Live,
        env: env.into(),
        release: r,
        previous: None,
        who: "tester".into(),
        at: 0,
        approval: None,
        smoke: vec![],
        analysis: vec![],
    }
}

fn setup() -> (tempfile::TempDir, Arc<dyn Remote>, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let remote: Arc<dyn Remote> = Arc::new(DirRemote::new(dir.path().join("remote")));
    let ledger = Ledger::new(remote.clone(), dir.path().join("mirror"));
    (dir, remote, ledger)
}

#[tokio::test]
async fn concurrent_appends_never_share_a_number() {
    let (_dir, remote, ledger) = setup();
    let other = Ledger::new(remote.clone(), tempfile::tempdir().unwrap().keep());
    let (a, b) = tokio::join!(
        ledger.append(event("staging", release("v1", "aaaa1111"))),
        other.append(event("staging", release("v2", "bbbb2222")))
    );
    let mut seqs = vec![a.unwrap().seq, b.unwrap().seq];
    seqs.sort();
    assert_eq!(seqs, [1, 2]);
    let (events, offline) = ledger.events().await.unwrap();
    assert_eq!((events.len(), offline), (2, false));
}

#[tokio::test]
async fn releases_are_found_by_version_sha_prefix_or_tag() {
    let (_dir, _remote, ledger) = setup();
    ledger.append(event("staging", release("v1", "1234abcd"))).await.unwrap();
    ledger.append(event("production", release("v1", "1234abcd"))).await.unwrap();
    ledger.append(event("staging", release("v2", "9876fedc"))).await.unwrap();
    let (events, _) = ledger.events().await.unwrap();
    assert_eq!(ledger::find(&events, "v2").unwrap().version, "v2");
    assert_eq!(ledger::find(&events, "1234").unwrap().version, "v1");
    assert_eq!(ledger::find(&events, "tag-v2").unwrap().version, "v2");
    assert_eq!(ledger::live(&events, "production").unwrap().version, "v1");
    let err = ledger::find(&events, "v9").unwrap_err();
    assert_eq!(err.to_string(), "no release matches `v9` (releases: v1, v2)");
    assert!(err.help().unwrap().contains("cargo xtask releases"));
}

/// Entries read from the remote are checked field by field; a bad one is named and skipped, so
/// it neither panics nor blocks a rollback to a good release, and is never overwritten.
#[tokio::test]
async fn a_bad_entry_is_named_and_skipped_and_never_reused() {
    let (dir, _remote, ledger) = setup();
    ledger.append(event("staging", release("v1", "aaaa1111"))).await.unwrap();
    let ledger_dir = dir.path().join("remote/slipway/ledger/v1");
    let good = std::fs::read_to_string(ledger_dir.join("00000001.json")).unwrap();
    let entries = [
        ("00000002.json", "{ this is not json".to_string()),
        ("00000003.json", good.replace("\"seq\": 1", "\"seq\": 7")),
        ("00000004.json", good.replace("\"seq\": 1", "\"seq\": 4").replace("\"model.onnx\"", "\"../../etc/passwd\"")),
        ("00000005.json", good.replace("\"seq\": 1", "\"seq\": 5").replace(&"0".repeat(63), "")),
        (
            "00000006.json",
            good.replace("\"seq\": 1", "\"seq\": 6").replace("\"version\": \"v1\"", "\"version\": \"v1\\n\""),
        ),
        ("notes.txt", "not an entry".to_string()),
    ];
    for (name, text) in &entries {
        std::fs::write(ledger_dir.join(name), text).unwrap();
    }
    let fresh = Ledger::new(Arc::new(DirRemote::new(dir.path().join("remote"))), dir.path().join("other-mirror"));
    let read = fresh.read().await.unwrap();
    assert_eq!(read.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1], "only the good entry is used");
    let said = read.corrupt.join("\n");
    for expect in [
        "ledger entry 00000002.json is corrupt: key must be a string",
        "ledger entry 00000003.json is corrupt: it says it is entry 7",
        "ledger entry 00000005.json is corrupt: model digest",
        "ledger entry 00000006.json is corrupt: version `v1\\n` is not valid",
        "slipway/ledger/v1/notes.txt: not a ledger entry name",
    ] {
        assert!(said.contains(expect), "{expect} in:\n{said}");
    }
    assert!(said.contains("00000004.json") && said.contains("release file name"), "{said}");
    assert!(ledger::find(&read.events, "v1").is_ok(), "a rollback to the good release still finds it");
    let next = fresh.append(event("staging", release("v2", "bbbb2222"))).await.unwrap();
    assert_eq!(next.seq, 7, "the next entry comes after every number on the remote, bad ones included");
    assert_eq!(std::fs::read_to_string(ledger_dir.join("00000002.json")).unwrap(), "{ this is not json");
}

#[tokio::test]
async fn events_kept_offline_in_one_second_are_all_kept() {
    let (dir, _remote, ledger) = setup();
    for v in ["v1", "v2", "v3"] {
        let mut e = event("staging", release(v, "cccc3333"));
        e.seq = 1;
        e.at = 1_790_000_000;
        ledger.keep_pending(&e).unwrap();
    }
    assert_eq!(std::fs::read_dir(dir.path().join("mirror/pending")).unwrap().count(), 3);
    ledger.append(event("staging", release("v4", "dddd4444"))).await.unwrap();
    let versions: Vec<String> = ledger.events().await.unwrap().0.into_iter().map(|e| e.release.version).collect();
    assert_eq!(versions, ["v1", "v2", "v3", "v4"]);
}
