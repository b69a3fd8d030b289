//! Slipway and the real `dvc` share files, pointers and remotes both ways.

use std::fs;

use xshell::cmd;

use crate::fixture::{Seaweed, dvc_repo, odd_tree, read_tree, shell, store, tool, write_tree};

#[test]
fn add_writes_the_same_pointer_and_manifest_as_dvc_for_odd_names() {
    let env = Default::default();
    let by_dvc = tempfile::tempdir().unwrap();
    let sh = dvc_repo(by_dvc.path(), &env);
    write_tree(by_dvc.path(), &odd_tree());
    let dvc = tool("dvc");
    cmd!(sh, "{dvc} add -q data").run().unwrap();

    let by_slipway = tempfile::tempdir().unwrap();
    write_tree(by_slipway.path(), &odd_tree());
    let out = store(by_slipway.path(), &env).add("data").unwrap();

    let ours = fs::read_to_string(by_slipway.path().join("data.dvc")).unwrap();
    let theirs = fs::read_to_string(by_dvc.path().join("data.dvc")).unwrap();
    assert_eq!(ours, theirs);
    let manifest = |root: &std::path::Path| {
        let hex = out.md5.to_hex();
        fs::read(root.join(format!(".dvc/cache/files/md5/{}/{}.dir", &hex[..2], &hex[2..]))).unwrap()
    };
    assert_eq!(manifest(by_slipway.path()), manifest(by_dvc.path()));
    assert_eq!(fs::read_to_string(by_slipway.path().join(".gitignore")).unwrap(), "/data\n");
}

#[test]
fn a_single_file_pointer_matches_dvc_too() {
    let env = Default::default();
    let by_dvc = tempfile::tempdir().unwrap();
    let sh = dvc_repo(by_dvc.path(), &env);
    let files = vec![("model.bin", vec![7u8; 4096])];
    write_tree(by_dvc.path(), &files);
    let dvc = tool("dvc");
    cmd!(sh, "{dvc} add -q model.bin").run().unwrap();
    let by_slipway = tempfile::tempdir().unwrap();
    write_tree(by_slipway.path(), &files);
    store(by_slipway.path(), &env).add("model.bin").unwrap();
    assert_eq!(
        fs::read_to_string(by_slipway.path().join("model.bin.dvc")).unwrap(),
        fs::read_to_string(by_dvc.path().join("model.bin.dvc")).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dvc_push_then_slipway_pull_gives_identical_files_and_dvc_agrees() {
    let server = Seaweed::start();
    server.create_bucket("from-dvc");
    let env = server.env("from-dvc", "team/project");
    let origin = tempfile::tempdir().unwrap();
    let sh = dvc_repo(origin.path(), &env);
    write_tree(origin.path(), &odd_tree());
    let (dvc, endpoint) = (tool("dvc"), server.endpoint());
    cmd!(sh, "{dvc} remote add -q -d storage s3://from-dvc/team/project").run().unwrap();
    cmd!(sh, "{dvc} remote modify storage endpointurl {endpoint}").run().unwrap();
    cmd!(sh, "{dvc} add -q data").run().unwrap();
    cmd!(sh, "{dvc} push -q").run().unwrap();
    cmd!(sh, "git add -A").run().unwrap();
    cmd!(sh, "git commit -qm data").run().unwrap();

    let clone = tempfile::tempdir().unwrap();
    let (origin_path, clone_path) = (origin.path(), clone.path());
    cmd!(sh, "git clone -q {origin_path} {clone_path}").run().unwrap();
    // No SLIPWAY_REMOTE: the clone's `.dvc/config` names the remote, as in an existing DVC project.
    let mut clone_env = env.clone();
    clone_env.remove("SLIPWAY_REMOTE");
    let summary = store(clone.path(), &clone_env).pull(&["data.dvc".to_string()]).await.unwrap();
    assert_eq!((summary.files, summary.downloaded), (13, 13));
    assert_eq!(read_tree(&clone.path().join("data")), read_tree(&origin.path().join("data")));

    let clone_sh = shell(clone.path(), &clone_env);
    let status = cmd!(clone_sh, "{dvc} status").read().unwrap();
    assert!(status.contains("up to date"), "dvc status after a Slipway pull: {status}");
    let again = store(clone.path(), &clone_env).pull(&["data.dvc".to_string()]).await.unwrap();
    assert_eq!((again.up_to_date, again.downloaded), (13, 0), "a second pull must download nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn slipway_push_then_dvc_pull_in_a_fresh_clone() {
    let server = Seaweed::start();
    server.create_bucket("from-slipway");
    let env = server.env("from-slipway", "");
    let origin = tempfile::tempdir().unwrap();
    let sh = dvc_repo(origin.path(), &env);
    write_tree(origin.path(), &odd_tree());
    let (dvc, endpoint) = (tool("dvc"), server.endpoint());
    cmd!(sh, "{dvc} remote add -q -d storage s3://from-slipway").run().unwrap();
    cmd!(sh, "{dvc} remote modify storage endpointurl {endpoint}").run().unwrap();
    let slipway = store(origin.path(), &env);
    slipway.add("data").unwrap();
    let pushed = slipway.push(&["data.dvc".to_string()]).await.unwrap();
    assert_eq!((pushed.objects, pushed.uploaded, pushed.present), (14, 14, 0));
    let again = slipway.push(&["data.dvc".to_string()]).await.unwrap();
    assert_eq!((again.uploaded, again.present), (0, 14), "a second push must upload nothing");
    cmd!(sh, "git add -A").run().unwrap();
    cmd!(sh, "git commit -qm data").run().unwrap();

    let clone = tempfile::tempdir().unwrap();
    let (origin_path, clone_path) = (origin.path(), clone.path());
    cmd!(sh, "git clone -q {origin_path} {clone_path}").run().unwrap();
    let clone_sh = shell(clone_path, &env);
    cmd!(clone_sh, "{dvc} pull -q").run().unwrap();
    assert_eq!(read_tree(&clone.path().join("data")), read_tree(&origin.path().join("data")));

    // One changed file: only it and the new manifest go up.
    fs::write(origin.path().join("data/plain.csv"), "text,label\nchanged,0\n").unwrap();
    slipway.add("data").unwrap();
    let delta = slipway.push(&["data.dvc".to_string()]).await.unwrap();
    assert_eq!((delta.uploaded, delta.present), (2, 12));
}
