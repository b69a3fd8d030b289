//! Bad input and faults: each gives a clear, typed error and leaves no partial file behind.

use std::fs;
use std::path::Path;

use store::{Md5, StoreError};

use crate::fixture::{ACCESS_KEY, SECRET_KEY, Seaweed, read_tree, store, write_tree};

/// A repository whose `data/` was added and pushed to `remote_dir`, then deleted locally
/// (cache included), as on a fresh clone.
fn pushed_repo(
    files: &[(&str, Vec<u8>)],
) -> (tempfile::TempDir, tempfile::TempDir, std::collections::BTreeMap<String, String>) {
    let repo = tempfile::tempdir().unwrap();
    let remote = tempfile::tempdir().unwrap();
    let env: std::collections::BTreeMap<_, _> =
        [("SLIPWAY_REMOTE".to_string(), remote.path().display().to_string())].into_iter().collect();
    write_tree(repo.path(), files);
    let s = store(repo.path(), &env);
    s.add("data").unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(s.push(&["data.dvc".into()])).unwrap();
    fs::remove_dir_all(repo.path().join("data")).unwrap();
    make_writable(&repo.path().join(".dvc"));
    fs::remove_dir_all(repo.path().join(".dvc")).unwrap();
    (repo, remote, env)
}

fn make_writable(dir: &Path) {
    for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
        let mut p = fs::metadata(e.path()).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        p.set_readonly(false);
        fs::set_permissions(e.path(), p).unwrap();
    }
}

fn object_path(remote: &Path, md5: &Md5, dir: bool) -> std::path::PathBuf {
    remote.join(store::dvc::object_key(md5, dir))
}

fn files() -> Vec<(&'static str, Vec<u8>)> {
    vec![("data/a.csv", b"text,label\nhello,1\n".to_vec()), ("data/sub/b.csv", b"text,label\nbye,0\n".to_vec())]
}

fn pull(root: &Path, env: &std::collections::BTreeMap<String, String>) -> Result<store::PullSummary, StoreError> {
    tokio::runtime::Runtime::new().unwrap().block_on(store(root, env).pull(&["data.dvc".into()]))
}

/// No file in the workspace other than complete, correct ones, and no temporary leftovers there
/// or in the cache.
fn assert_no_partial_files(root: &Path) {
    let want: std::collections::BTreeMap<String, Vec<u8>> =
        files().into_iter().map(|(p, b)| (p.trim_start_matches("data/").to_string(), b)).collect();
    for (rel, bytes) in read_tree(&root.join("data")) {
        assert_eq!(Some(&bytes), want.get(&rel), "{rel} is partial or foreign");
    }
    let cache = root.join(".dvc/cache");
    let leftovers: Vec<String> = read_tree(&cache).into_keys().filter(|k| k.ends_with(".tmp")).collect();
    assert!(leftovers.is_empty(), "temporary files left in the cache: {leftovers:?}");
}

#[test]
fn a_malformed_pointer_is_a_clear_error() {
    let (repo, _remote, env) = pushed_repo(&files());
    fs::write(repo.path().join("data.dvc"), "outs:\n- md5: [unclosed\n").unwrap();
    let err = pull(repo.path(), &env).unwrap_err();
    assert!(matches!(err, StoreError::BadPointer { .. }), "{err}");
    assert!(err.to_string().starts_with("data.dvc is not a usable DVC pointer file: not valid YAML"), "{err}");
    assert!(err.help().unwrap().contains("cargo xtask add"));
    assert!(!repo.path().join("data").exists());
}

#[test]
fn a_manifest_that_climbs_out_or_is_absolute_is_refused() {
    for evil in ["../escaped.txt", "/tmp/slipway-absolute.txt", "a/../../escaped.txt"] {
        let (repo, remote, env) = pushed_repo(&files());
        let good = Md5::of(b"text,label\nhello,1\n");
        let manifest = format!("[{{\"md5\": \"{good}\", \"relpath\": \"{evil}\"}}]");
        let md5 = Md5::of(manifest.as_bytes());
        let path = object_path(remote.path(), &md5, true);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, &manifest).unwrap();
        let pointer = format!("outs:\n- md5: {md5}.dir\n  size: 1\n  nfiles: 1\n  hash: md5\n  path: data\n");
        fs::write(repo.path().join("data.dvc"), pointer).unwrap();
        let err = pull(repo.path(), &env).unwrap_err();
        assert!(matches!(err, StoreError::BadManifest { .. }), "{evil}: {err}");
        assert!(!repo.path().join("escaped.txt").exists() && !Path::new("/tmp/slipway-absolute.txt").exists());
    }
}

#[test]
fn a_corrupted_object_on_the_remote_is_never_used() {
    let (repo, remote, env) = pushed_repo(&files());
    let md5 = Md5::of(b"text,label\nbye,0\n");
    let path = object_path(remote.path(), &md5, false);
    make_writable(&path);
    fs::write(&path, b"text,label\nbye,1\n").unwrap();
    let err = pull(repo.path(), &env).unwrap_err();
    let StoreError::Corrupt { expected, .. } = &err else { panic!("{err}") };
    assert_eq!(expected, &md5.to_hex());
    assert!(!repo.path().join("data/sub/b.csv").exists(), "the corrupt file reached the workspace");
    assert_no_partial_files(repo.path());
}

#[test]
fn a_missing_object_names_itself_and_what_to_do() {
    let (repo, remote, env) = pushed_repo(&files());
    fs::remove_file(object_path(remote.path(), &Md5::of(b"text,label\nhello,1\n"), false)).unwrap();
    let err = pull(repo.path(), &env).unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }), "{err}");
    assert!(err.help().unwrap().contains("push it from the machine"));
    assert_no_partial_files(repo.path());
}

#[test]
fn a_good_file_in_the_workspace_is_not_downloaded_again() {
    let (repo, _remote, env) = pushed_repo(&files());
    let first = pull(repo.path(), &env).unwrap();
    assert_eq!((first.downloaded, first.up_to_date), (2, 0));
    fs::write(repo.path().join("data/a.csv"), "edited by hand").unwrap();
    let second = pull(repo.path(), &env).unwrap();
    assert_eq!((second.downloaded, second.up_to_date), (1, 1));
    assert_eq!(fs::read(repo.path().join("data/a.csv")).unwrap(), b"text,label\nhello,1\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_bucket_wrong_credentials_and_no_credentials_are_told_apart() {
    let server = Seaweed::start();
    server.create_bucket("real");
    let repo = tempfile::tempdir().unwrap();
    write_tree(repo.path(), &files());
    let mut env = server.env("real", "");
    let s = store(repo.path(), &env);
    s.add("data").unwrap();
    s.push(&["data.dvc".into()]).await.unwrap();

    env.insert("SLIPWAY_REMOTE".into(), "s3://no-such-bucket".into());
    let err = store(repo.path(), &env).push(&["data.dvc".into()]).await.unwrap_err();
    assert!(matches!(err, StoreError::NoBucket { .. }), "{err}");

    // A fresh clone: nothing local, so the pull must ask the server.
    fs::remove_dir_all(repo.path().join("data")).unwrap();
    make_writable(&repo.path().join(".dvc"));
    fs::remove_dir_all(repo.path().join(".dvc")).unwrap();
    env.insert("SLIPWAY_REMOTE".into(), "s3://real".into());
    env.insert("AWS_SECRET_ACCESS_KEY".into(), "not-the-secret".into());
    let err = store(repo.path(), &env).pull(&["data.dvc".into()]).await.unwrap_err();
    assert!(matches!(err, StoreError::Denied { .. }), "{err}");
    assert!(!err.to_string().contains("not-the-secret"));

    env.remove("AWS_ACCESS_KEY_ID");
    env.remove("AWS_SECRET_ACCESS_KEY");
    env.insert("HOME".into(), repo.path().display().to_string());
    let err = store::resolve(repo.path(), &env).unwrap().open().err().unwrap();
    assert!(matches!(err, StoreError::NoCredentials { .. }), "{err}");
    assert!(err.help().unwrap().contains("AWS_ACCESS_KEY_ID"));
    let _ = (ACCESS_KEY, SECRET_KEY);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_in_the_middle_of_a_pull_leaves_no_partial_file_and_the_rerun_completes() {
    let mut server = Seaweed::start();
    server.create_bucket("flaky");
    let env = server.env("flaky", "data");
    let origin = tempfile::tempdir().unwrap();
    let big: Vec<(String, Vec<u8>)> = (0..120)
        .map(|i| (format!("data/part-{i:03}.bin"), (0..1_000_000u32).map(|j| (i as u32 * 7 + j) as u8).collect()))
        .collect();
    let tree: Vec<(&str, Vec<u8>)> = big.iter().map(|(p, b)| (p.as_str(), b.clone())).collect();
    write_tree(origin.path(), &tree);
    let s = store(origin.path(), &env);
    s.add("data").unwrap();
    s.push(&["data.dvc".into()]).await.unwrap();

    let clone = tempfile::tempdir().unwrap();
    fs::copy(origin.path().join("data.dvc"), clone.path().join("data.dvc")).unwrap();
    let clone_root = clone.path().to_path_buf();
    let pull_env = env.clone();
    // The pull runs on a thread of its own so the test can kill the server while it works.
    let pulling = std::thread::spawn(move || {
        tokio::runtime::Runtime::new().unwrap().block_on(store(&clone_root, &pull_env).pull(&["data.dvc".into()]))
    });
    // Kill the server once some files have landed, while the rest are in flight.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while read_tree_len(&clone.path().join("data")) < 5 {
        assert!(
            std::time::Instant::now() < deadline && !pulling.is_finished(),
            "the pull finished before it could be interrupted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.kill();
    let err = pulling.join().unwrap().unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");
    let want: std::collections::BTreeMap<String, Vec<u8>> =
        big.iter().map(|(p, b)| (p.trim_start_matches("data/").to_string(), b.clone())).collect();
    let landed = read_tree(&clone.path().join("data"));
    assert!(landed.len() < want.len(), "every file landed before the kill");
    for (rel, bytes) in &landed {
        assert_eq!(Some(bytes), want.get(rel), "{rel} is partial");
    }

    server.restart("flaky");
    let summary = store(clone.path(), &env).pull(&["data.dvc".into()]).await.unwrap();
    assert_eq!(summary.up_to_date + summary.downloaded, 120);
    assert!(summary.up_to_date >= landed.len());
    assert_eq!(read_tree(&clone.path().join("data")), want);
}

fn read_tree_len(dir: &Path) -> usize {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && !e.file_name().to_string_lossy().starts_with(".slipway-"))
        .count()
}

/// A small object (a lock, a pause, an approval) is read whole within its bound, and one past
/// the bound is refused as too large, on a directory and on SeaweedFS alike.
#[tokio::test(flavor = "multi_thread")]
async fn a_small_read_takes_at_most_its_bound() {
    let server = Seaweed::start();
    server.create_bucket("small");
    let dir = tempfile::tempdir().unwrap();
    let settings = server.env("small", "bounded");
    let remotes: Vec<(&str, Box<dyn store::Remote>)> = vec![
        ("a directory", Box::new(store::DirRemote::new(dir.path()))),
        ("SeaweedFS", store::resolve(dir.path(), &settings).unwrap().open().unwrap()),
    ];
    for (name, remote) in remotes {
        let (at, over) = (vec![b'a'; 4096], vec![b'b'; 4097]);
        assert!(remote.put_if_absent("at", at.clone()).await.unwrap(), "{name}");
        assert!(remote.put_if_absent("over", over).await.unwrap(), "{name}");
        assert!(remote.put_if_absent("empty", Vec::new()).await.unwrap(), "{name}");
        assert_eq!(remote.read_small("at", 4096).await.unwrap(), at, "{name}");
        assert_eq!(remote.read_small("empty", 4096).await.unwrap(), Vec::<u8>::new(), "{name}");
        let err = remote.read_small("over", 4096).await.unwrap_err();
        assert!(matches!(err, StoreError::TooLarge { limit: 4096, .. }), "{name}: {err}");
        assert!(err.to_string().contains("over") && err.to_string().contains("4096"), "{name}: {err}");
        let err = remote.read_small("missing", 4096).await.unwrap_err();
        assert!(matches!(err, StoreError::Missing { .. }), "{name}: {err}");
    }
}

/// Files with the same content are each checked out, writable, beside a read-only cache; a
/// pull that finds the object already cached verifies it on the way out and refuses a bad one.
#[test]
fn files_of_one_content_check_out_writable_and_a_cached_object_is_verified() {
    use std::os::unix::fs::PermissionsExt;
    let same = b"text,label\nsame,1\n".to_vec();
    let tree = [("data/one.csv", same.clone()), ("data/two/one.csv", same.clone()), ("data/x.csv", b"x\n".to_vec())];
    let (repo, _remote, env) = pushed_repo(&tree);
    let summary = pull(repo.path(), &env).unwrap();
    assert_eq!((summary.downloaded, summary.files), (3, 3));
    for (rel, bytes) in &tree {
        let path = repo.path().join(rel);
        assert_eq!(&fs::read(&path).unwrap(), bytes, "{rel}");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644, "{rel}");
    }
    let object = repo.path().join(".dvc/cache").join(store::dvc::object_key(&Md5::of(&same), false));
    assert_eq!(fs::metadata(&object).unwrap().permissions().mode() & 0o222, 0, "the cache is read-only");
    let leftovers: Vec<String> =
        read_tree(repo.path()).into_keys().filter(|k| k.contains(".slipway-") || k.ends_with(".tmp")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The workspace is gone but the cache is there: checked out from it, verified as it goes.
    fs::remove_dir_all(repo.path().join("data")).unwrap();
    assert_eq!(pull(repo.path(), &env).unwrap().downloaded, 3);
    assert_eq!(fs::read(repo.path().join("data/two/one.csv")).unwrap(), same);
    make_writable(&repo.path().join(".dvc/cache"));
    fs::write(&object, b"not what it says\n").unwrap();
    fs::remove_dir_all(repo.path().join("data")).unwrap();
    let err = pull(repo.path(), &env).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(!repo.path().join("data/one.csv").exists() || fs::read(repo.path().join("data/one.csv")).unwrap() == same);
}
