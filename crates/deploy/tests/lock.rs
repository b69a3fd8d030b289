//! The deploy lock on a directory remote and on a real S3 server (SeaweedFS): one holder at a
//! time, renewed while held, taken over only when its holder is dead by the store's clock, and
//! exactly one winner when deploys race for a stale lock.

use std::sync::Arc;
use std::time::Duration;

use deploy::DeployError;
use deploy::lock::{self, LockTimes};
use store::{DirRemote, Remote};

#[path = "../../store/tests/fixture.rs"]
#[allow(dead_code, reason = "the store's fixture, shared: these tests use its SeaweedFS server only")]
mod seaweed;

fn dir_remote() -> (tempfile::TempDir, Arc<dyn Remote>) {
    let dir = tempfile::tempdir().unwrap();
    let remote: Arc<dyn Remote> = Arc::new(DirRemote::new(dir.path().join("remote")));
    (dir, remote)
}

fn s3_remote(server: &seaweed::Seaweed) -> Arc<dyn Remote> {
    server.create_bucket("locks");
    let env = server.env("locks", "ci");
    store::resolve(std::path::Path::new("."), &env).unwrap().open().unwrap().into()
}

fn times(stale_ms: u64, beat_ms: u64) -> LockTimes {
    LockTimes { stale_after: Duration::from_millis(stale_ms), beat_every: Duration::from_millis(beat_ms) }
}

/// A lock left by a crashed holder: a generation created, never renewed or ended.
async fn crashed_holder(remote: &Arc<dyn Remote>, env: &str) {
    let body = format!(r#"{{"token":"{}","who":"crashed","pid":1}}"#, "ab".repeat(32));
    assert!(
        remote
            .put_if_absent(&format!("{}/{env}/000000000001.lock", lock::LOCKS_PREFIX), body.into_bytes())
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_deploy_to_the_same_environment_is_refused_while_the_first_runs() {
    let (_dir, remote) = dir_remote();
    let first = lock::acquire(&remote, "production", "alice").await.unwrap();
    let second = lock::acquire(&remote, "production", "bob").await;
    let Err(DeployError::Locked { by, .. }) = &second else { panic!("{:?}", second.err()) };
    assert_eq!(by, "alice");
    assert!(lock::acquire(&remote, "staging", "bob").await.is_ok(), "other environments are free");
    drop(first);
    let again = lock::acquire(&remote, "production", "bob").await.unwrap();
    assert_eq!(again.generation(), 2, "released on drop, then taken as the next generation");
    assert!(lock::acquire(&remote, "../x", "bob").await.is_err(), "environment names are checked");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renewed_lock_stays_and_a_dead_one_is_taken_over() {
    let (_dir, remote) = dir_remote();
    let held = lock::acquire_with(&remote, "staging", "alice", times(600, 100)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let refused = lock::acquire_with(&remote, "staging", "bob", times(600, 100)).await;
    assert!(matches!(refused, Err(DeployError::Locked { .. })), "its heartbeat keeps it: {:?}", refused.err());
    held.ensure_held().unwrap();
    // A holder that looks dead to another (here: a zero staleness) is taken over, and notices.
    let taker = lock::acquire_with(&remote, "staging", "bob", times(0, 100)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(matches!(held.ensure_held(), Err(DeployError::LockLost { .. })));
    drop(held);
    let ended = remote.exists(&format!("{}/staging/{:012}.end", lock::LOCKS_PREFIX, taker.generation())).await.unwrap();
    assert!(!ended, "the old holder never ends the lock that replaced its own");
    crashed_holder(&remote, "qa").await;
    let unreadable = lock::acquire_with(&remote, "qa", "carol", times(60_000, 1000)).await;
    let Err(DeployError::Locked { by, .. }) = unreadable else { panic!("a fresh lock must hold") };
    assert_eq!(by, "crashed");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(lock::acquire_with(&remote, "qa", "carol", times(1000, 1000)).await.is_ok(), "stale by the store's clock");
}

/// Two deploys race for each of 100 stale locks; exactly one of each pair proceeds.
async fn race(remote: Arc<dyn Remote>, name: &str) {
    const TRIALS: usize = 100;
    let envs: Vec<String> = (0..TRIALS).map(|i| format!("race-{i}")).collect();
    for env in &envs {
        crashed_holder(&remote, env).await;
    }
    // Older than the staleness by the store's second-resolution clock, whatever the rounding.
    let stale = times(3000, 60_000);
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let mut winners = 0;
    for env in &envs {
        let (a, b) = tokio::join!(
            lock::acquire_with(&remote, env, "alice", stale),
            lock::acquire_with(&remote, env, "bob", stale)
        );
        let won = usize::from(a.is_ok()) + usize::from(b.is_ok());
        assert_eq!(won, 1, "{name}, {env}: {:?} / {:?}", a.as_ref().err(), b.as_ref().err());
        for lost in [a.err(), b.err()].into_iter().flatten() {
            assert!(matches!(lost, DeployError::Locked { .. }), "{name}, {env}: {lost}");
        }
        winners += won;
    }
    assert_eq!(winners, TRIALS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_for_a_stale_lock_lets_exactly_one_through_on_a_directory() {
    let (_dir, remote) = dir_remote();
    race(remote, "directory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_for_a_stale_lock_lets_exactly_one_through_on_s3() {
    let server = seaweed::Seaweed::start();
    race(s3_remote(&server), "SeaweedFS").await;
}
