//! The ledger and the deploy lock on a directory remote.

use std::sync::Arc;

use deploy::ledger::{self, EVENT_SCHEMA, Event, EventKind, Ledger, Outcome, Release};
use deploy::{DeployError, lock};
use store::{DirRemote, Remote};

fn release(version: &str, sha: &str) -> Release {
    Release {
        version: version.into(),
        image_digest: None,
        model_digest: format!("model-{version}"),
        serve_digest: "serve".into(),
        config_digest: "config".into(),
        git_sha: sha.into(),
        tags: vec![format!("tag-{version}")],
        files: Default::default(),
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

#[tokio::test]
async fn a_corrupt_entry_is_named_and_nothing_proceeds() {
    let (dir, _remote, ledger) = setup();
    ledger.append(event("staging", release("v1", "aaaa"))).await.unwrap();
    let entry = dir.path().join("remote/slipway/ledger/v1/00000002.json");
    std::fs::write(&entry, b"{ this is not json").unwrap();
    let fresh = Ledger::new(Arc::new(DirRemote::new(dir.path().join("remote"))), dir.path().join("other-mirror"));
    let err = fresh.events().await.unwrap_err();
    assert!(matches!(err, DeployError::CorruptLedger { .. }), "{err}");
    assert!(err.to_string().starts_with("ledger entry 00000002.json is corrupt"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_deploy_to_the_same_environment_is_refused_while_the_first_runs() {
    let (_dir, remote, _) = setup();
    let first = lock::acquire(&remote, "production", "alice").await.unwrap();
    let second = lock::acquire(&remote, "production", "bob").await;
    let Err(DeployError::Locked { by, .. }) = &second else { panic!("{:?}", second.err()) };
    assert_eq!(by, "alice");
    assert!(lock::acquire(&remote, "staging", "bob").await.is_ok(), "other environments are free");
    drop(first);
    assert!(lock::acquire(&remote, "production", "bob").await.is_ok(), "released on drop");
}
