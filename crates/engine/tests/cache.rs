//! The step cache end to end: hits, restores, failures, status, secrets.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use engine::{Command, Freshness, Pipeline, RunOptions, Stage, StageError};

use crate::fixture::Repo;

/// `up` copies `src/` into `out/up.txt`; `down` reads it and the param and writes `out/down/`.
struct Counted {
    up: Arc<AtomicUsize>,
    down: Arc<AtomicUsize>,
}

impl Counted {
    fn new() -> Counted {
        Counted { up: Arc::default(), down: Arc::default() }
    }

    fn pipeline(&self, param: i64) -> Pipeline {
        let up_runs = self.up.clone();
        let up = Stage::new("up", "concatenate sources").files("src", &["src"]).output("out/up.txt").run(move |ctx| {
            up_runs.fetch_add(1, Ordering::SeqCst);
            let mut text = String::new();
            for name in ["a.txt", "b.txt"] {
                text.push_str(&fs::read_to_string(ctx.root().join("src").join(name)).unwrap_or_default());
            }
            fs::create_dir_all(ctx.root().join("out"))?;
            fs::write(ctx.root().join("out/up.txt"), text)?;
            Ok(())
        });
        let down_runs = self.down.clone();
        let down = Stage::new("down", "derive").uses("up").param("P", param).output("out/down").run(move |ctx| {
            down_runs.fetch_add(1, Ordering::SeqCst);
            let up = fs::read_to_string(ctx.root().join("out/up.txt"))?;
            fs::create_dir_all(ctx.root().join("out/down/nested"))?;
            fs::write(ctx.root().join("out/down/result.txt"), format!("{up}|{param}"))?;
            fs::write(ctx.root().join("out/down/nested/len.txt"), up.len().to_string())?;
            Ok(())
        });
        Pipeline::new().stage(up).unwrap().stage(down).unwrap()
    }

    fn runs(&self) -> (usize, usize) {
        (self.up.load(Ordering::SeqCst), self.down.load(Ordering::SeqCst))
    }
}

fn repo() -> Repo {
    let repo = Repo::new();
    repo.write("src/a.txt", "alpha\n");
    repo.write("src/b.txt", "beta\n");
    repo
}

#[test]
fn second_run_with_nothing_changed_runs_nothing() {
    let (repo, c) = (repo(), Counted::new());
    let first = repo.run(&c.pipeline(1));
    assert_eq!(first.outcomes(), ["up=ran", "down=ran"]);
    assert_eq!(first.summary.exit_code(), 0);
    let second = repo.run(&c.pipeline(1));
    assert_eq!(second.outcomes(), ["up=cached", "down=cached"]);
    assert_eq!(second.summary.exit_code(), 0);
    assert_eq!(c.runs(), (1, 1));
    assert_eq!(repo.read("out/down/result.txt"), "alpha\nbeta\n|1");
}

#[test]
fn a_cached_stage_rewrites_its_last_record_only_when_it_changes() {
    use std::os::unix::fs::MetadataExt;
    let (repo, c) = (repo(), Counted::new());
    let last = repo.path(".slipway/last/up.json");
    let inode = || fs::metadata(&last).unwrap().ino();
    repo.run(&c.pipeline(1));
    let (first, text) = (inode(), repo.read(".slipway/last/up.json"));
    repo.run(&c.pipeline(1));
    assert_eq!(inode(), first, "a run that changed nothing rewrote the last record");
    repo.write("src/a.txt", "gamma\n");
    repo.run(&c.pipeline(1));
    assert_ne!(repo.read(".slipway/last/up.json"), text);
    // Back to the first sources: taken from the cache, and the last record is the first again.
    repo.write("src/a.txt", "alpha\n");
    assert_eq!(repo.run(&c.pipeline(1)).outcomes(), ["up=restored", "down=restored"]);
    assert_eq!(repo.read(".slipway/last/up.json"), text);
    assert_eq!(c.runs(), (2, 2));
}

#[test]
fn deleted_or_edited_outputs_are_restored_without_running() {
    let (repo, c) = (repo(), Counted::new());
    repo.run(&c.pipeline(1));
    fs::remove_dir_all(repo.path("out/down")).unwrap();
    repo.write("out/up.txt", "tampered");
    let run = repo.run(&c.pipeline(1));
    assert_eq!(run.outcomes(), ["up=restored", "down=restored"]);
    assert_eq!(c.runs(), (1, 1));
    assert_eq!(repo.read("out/up.txt"), "alpha\nbeta\n");
    assert_eq!(repo.read("out/down/nested/len.txt"), "11");
}

#[test]
fn a_stray_file_in_an_output_directory_is_kept_in_lost_and_found_on_restore() {
    let (repo, c) = (repo(), Counted::new());
    repo.run(&c.pipeline(1));
    repo.write("out/down/stray.txt", "mine");
    let run = repo.run(&c.pipeline(1));
    assert_eq!(run.outcomes(), ["up=cached", "down=restored"]);
    assert!(!repo.path("out/down/stray.txt").exists(), "the output is exactly what the stage wrote");
    assert_eq!(kept(&repo, "down", "out/down/stray.txt"), ["mine"]);
    let warned =
        run.events.iter().any(|e| e.contains("`out/down/stray.txt` was not written by Slipway; it is kept in"));
    assert!(warned, "{:?}", run.events);
}

#[test]
fn a_stage_that_reruns_keeps_files_it_did_not_write_and_edited_ones() {
    let (repo, c) = (repo(), Counted::new());
    repo.run(&c.pipeline(1));
    repo.write("out/down/notes.md", "my notes");
    repo.write("out/down/result.txt", "edited by hand");
    repo.run(&c.pipeline(2));
    assert_eq!(repo.read("out/down/result.txt"), "alpha\nbeta\n|2");
    assert_eq!(kept(&repo, "down", "out/down/notes.md"), ["my notes"]);
    assert_eq!(kept(&repo, "down", "out/down/result.txt"), ["edited by hand"]);
    assert!(kept(&repo, "down", "out/down/nested/len.txt").is_empty(), "Slipway's own files are simply replaced");
}

/// The contents of every copy of `rel` that lost+found keeps for `stage`.
fn kept(repo: &Repo, stage: &str, rel: &str) -> Vec<String> {
    let base = repo.path(&format!(".slipway/{}/{stage}", engine::LOST_AND_FOUND));
    let Ok(runs) = fs::read_dir(&base) else { return vec![] };
    runs.filter_map(|r| fs::read_to_string(r.unwrap().path().join(rel)).ok()).collect()
}

#[test]
fn reverting_an_input_restores_the_earlier_result() {
    let (repo, c) = (repo(), Counted::new());
    repo.run(&c.pipeline(1));
    repo.run(&c.pipeline(2));
    assert_eq!(repo.read("out/down/result.txt"), "alpha\nbeta\n|2");
    let back = repo.run(&c.pipeline(1));
    assert_eq!(back.outcomes(), ["up=cached", "down=restored"]);
    assert_eq!(repo.read("out/down/result.txt"), "alpha\nbeta\n|1");
    assert_eq!(c.runs(), (1, 2));
}

#[test]
fn an_input_change_that_leaves_upstream_output_alone_stops_there() {
    let (repo, c) = (repo(), Counted::new());
    repo.run(&c.pipeline(1));
    // Moving text between the two files changes `up`'s inputs but not its output.
    repo.write("src/a.txt", "alpha\nbe");
    repo.write("src/b.txt", "ta\n");
    let run = repo.run(&c.pipeline(1));
    assert_eq!(run.outcomes(), ["up=ran", "down=cached"]);
}

#[test]
fn status_says_what_changed_and_runs_nothing() {
    let (repo, c) = (repo(), Counted::new());
    let never = engine::status(&c.pipeline(1), &repo.workspace(), false).unwrap();
    assert_eq!(never[0].freshness, Freshness::Stale { reasons: vec!["never run here".into()] });
    assert_eq!(
        never[1].freshness,
        Freshness::Stale { reasons: vec!["upstream `up` runs first".into() /* no record yet */,] }
    );
    repo.run(&c.pipeline(1));
    let fresh = engine::status(&c.pipeline(1), &repo.workspace(), false).unwrap();
    assert!(fresh.iter().all(|s| s.freshness == Freshness::Fresh), "{fresh:?}");

    repo.write("src/b.txt", "BETA\n");
    fs::remove_file(repo.path("out/down/nested/len.txt")).unwrap();
    let stale = engine::status(&c.pipeline(2), &repo.workspace(), false).unwrap();
    let Freshness::Stale { reasons } = &stale[0].freshness else { panic!("{stale:?}") };
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].starts_with("files:src: src/b.txt changed ("), "{reasons:?}");
    assert_eq!(
        stale[1].freshness,
        Freshness::Stale { reasons: vec!["upstream `up` runs first".into(), "param:P: 1 → 2".into()] }
    );
    assert_eq!(c.runs(), (1, 1), "status must not run anything");

    repo.write("src/b.txt", "beta\n");
    let restore = engine::status(&c.pipeline(1), &repo.workspace(), false).unwrap();
    assert_eq!(restore[1].freshness, Freshness::Restore { outputs: vec!["out/down/nested/len.txt".into()] });
}

#[test]
fn a_failed_stage_keeps_the_previous_outputs_and_skips_its_dependents() {
    let repo = repo();
    let c = Counted::new();
    repo.run(&c.pipeline(1));
    let before = repo.read("out/up.txt");
    repo.write("src/a.txt", "changed\n");
    let failing = Stage::new("up", "fail halfway").files("src", &["src"]).output("out/up.txt").run(|ctx| {
        fs::write(ctx.root().join("out/up.txt"), "half")?;
        Err(StageError::Failed(anyhow::anyhow!("disk on fire")))
    });
    let down = Stage::new("down", "never runs").uses("up").run(|_| panic!("must be skipped"));
    let pipeline = Pipeline::new().stage(failing).unwrap().stage(down).unwrap();
    let run = repo.run(&pipeline);
    assert_eq!(run.outcomes(), ["up=failed", "down=skipped"]);
    assert_eq!(run.summary.exit_code(), 2);
    assert_eq!(repo.read("out/up.txt"), before);
}

#[test]
fn a_rejection_exits_1_and_a_missing_output_exits_2() {
    let repo = repo();
    let reject = Stage::new("gate", "say no").run(|_| Err(StageError::rejected("accuracy 0.5 < 0.85")));
    let run = repo.run(&Pipeline::new().stage(reject).unwrap());
    assert_eq!(run.summary.exit_code(), 1);
    assert!(run.events.iter().any(|e| e.contains("accuracy 0.5 < 0.85")));

    let lazy = Stage::new("lazy", "declare, do not write").output("nothing.txt");
    let run = repo.run(&Pipeline::new().stage(lazy).unwrap());
    assert_eq!(run.summary.exit_code(), 2);
    assert!(
        run.events.iter().any(|e| e.contains("did not write its declared output `nothing.txt`")),
        "{:?}",
        run.events
    );
}

#[test]
fn a_command_failure_names_purpose_command_status_and_tail() {
    let repo = repo();
    let failing = Command::new("prove the point", "sh").args(["-c", "echo first; echo last words >&2; exit 3"]);
    let stage = Stage::new("cmd", "run a failing command").command(failing);
    let run = repo.run(&Pipeline::new().stage(stage).unwrap());
    let engine::Outcome::Failed(message) = &run.summary.stages[0].outcome else { panic!("{:?}", run.summary) };
    assert!(
        message.starts_with("could not prove the point: `sh -c 'echo first; echo last words >&2; exit 3'`"),
        "{message}"
    );
    assert!(message.contains("exited with status 3"), "{message}");
    assert!(message.contains("last words"), "{message}");
}

#[test]
fn force_and_no_cache_rerun() {
    let (repo, c) = (repo(), Counted::new());
    repo.run(&c.pipeline(1));
    let forced = repo.run_with(&c.pipeline(1), &RunOptions { force: vec!["down".into()], ..Default::default() });
    assert_eq!(forced.outcomes(), ["up=cached", "down=ran"]);
    let all = repo.run_with(&c.pipeline(1), &RunOptions { no_cache: true, ..Default::default() });
    assert_eq!(all.outcomes(), ["up=ran", "down=ran"]);
    assert_eq!(c.runs(), (2, 3));
}

#[test]
fn independent_stages_run_at_the_same_time() {
    let repo = Repo::new();
    let (to_b, from_a) = mpsc::sync_channel::<()>(1);
    let (to_a, from_b) = mpsc::sync_channel::<()>(1);
    let wait = Duration::from_secs(60);
    let from_a = std::sync::Mutex::new(from_a);
    let from_b = std::sync::Mutex::new(from_b);
    // Each stage needs a message that the other sends while running: run one after the other,
    // they would both time out.
    let a = Stage::new("a", "meet b").run(move |_| {
        to_b.send(()).unwrap();
        from_b.lock().unwrap().recv_timeout(wait).map_err(|_| StageError::rejected("b never ran alongside"))
    });
    let b = Stage::new("b", "meet a").run(move |_| {
        to_a.send(()).unwrap();
        from_a.lock().unwrap().recv_timeout(wait).map_err(|_| StageError::rejected("a never ran alongside"))
    });
    let run = repo.run(&Pipeline::new().stage(a).unwrap().stage(b).unwrap());
    assert_eq!(run.outcomes(), ["a=ran", "b=ran"]);
}

#[test]
fn a_corrupt_cache_object_is_never_restored() {
    let (repo, c) = (repo(), Counted::new());
    repo.run(&c.pipeline(1));
    for entry in walkdir::WalkDir::new(repo.path(".slipway/cache/objects")) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let mut perms = fs::metadata(entry.path()).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            fs::set_permissions(entry.path(), perms).unwrap();
            fs::write(entry.path(), "rotten").unwrap();
        }
    }
    fs::remove_file(repo.path("out/up.txt")).unwrap();
    let run = repo.run(&c.pipeline(1));
    assert_eq!(run.outcome("up"), "ran", "{:?}", run.events);
    assert_eq!(repo.read("out/up.txt"), "alpha\nbeta\n");
    assert!(run.events.iter().any(|e| e.contains("cannot reuse the cached result")), "{:?}", run.events);
}

#[test]
fn secrets_are_masked_and_never_keyed_by_value() {
    const SECRET: &str = "s3cr3t-value-7f9a2c";
    let mut repo = repo();
    repo.env.insert("TOKEN".into(), SECRET.into());
    repo.secrets.push("TOKEN".into());
    let runs = Arc::new(AtomicUsize::new(0));
    let pipeline = |runs: Arc<AtomicUsize>| {
        let stage = Stage::new("uses-secret", "print the secret").secret_env("TOKEN").run(move |ctx| {
            runs.fetch_add(1, Ordering::SeqCst);
            let token = ctx.env()["TOKEN"].clone();
            ctx.log_line(&format!("token is {token}"));
            ctx.run_command("echo and fail")?;
            Ok(())
        });
        let stage = stage.command(Command::new("echo and fail", "sh").args(["-c", "echo $TOKEN; exit 1"]));
        Pipeline::new().stage(stage).unwrap()
    };
    let run = repo.run(&pipeline(runs.clone()));
    assert_eq!(run.summary.exit_code(), 2);
    let printed = run.events.join("\n");
    assert!(printed.contains("***"), "{printed}");
    assert!(!printed.contains(SECRET), "{printed}");
    assert!(!repo.all_text().contains(SECRET), "a file under the repository holds the secret");

    let ok = Stage::new("uses-secret", "read it").secret_env("TOKEN").output("o.txt").run(|ctx| {
        fs::write(ctx.root().join("o.txt"), "done")?;
        Ok(())
    });
    let pipeline = Pipeline::new().stage(ok).unwrap();
    assert_eq!(repo.run(&pipeline).outcomes(), ["uses-secret=ran"]);
    repo.env.insert("TOKEN".into(), "another-value".into());
    assert_eq!(repo.run(&pipeline).outcomes(), ["uses-secret=cached"], "a secret's value is not an input");
    repo.env.remove("TOKEN");
    assert_eq!(repo.run(&pipeline).outcomes(), ["uses-secret=ran"], "whether it is set is");
    assert!(!repo.all_text().contains(SECRET));
}

#[test]
fn pipeline_wiring_mistakes_are_refused() {
    let dup = Pipeline::new().stage(Stage::new("a", "")).unwrap().stage(Stage::new("a", ""));
    assert_eq!(dup.err().unwrap().to_string(), "two stages are named `a`");
    let unknown = Pipeline::new().stage(Stage::new("b", "").after("a"));
    assert_eq!(unknown.err().unwrap().to_string(), "stage `b` runs after `a`, which is not declared before it");
    let twice = Pipeline::new().stage(Stage::new("c", "").env("X").env("X"));
    assert_eq!(twice.err().unwrap().to_string(), "stage `c` declares the input `env:X` twice");
}

#[test]
fn select_takes_a_stage_and_what_it_needs() {
    let c = Counted::new();
    let only_up = c.pipeline(1).select(&["up"]).unwrap();
    assert_eq!(only_up.stages().iter().map(|s| s.name()).collect::<Vec<_>>(), ["up"]);
    let down = c.pipeline(1).select(&["down"]).unwrap();
    assert_eq!(down.stages().len(), 2);
    assert!(c.pipeline(1).select(&["nope"]).is_err());
}

#[test]
fn an_environment_stage_reruns_when_its_directory_is_gone() {
    let repo = repo();
    let runs = Arc::new(AtomicUsize::new(0));
    let stage = |runs: Arc<AtomicUsize>| {
        let s = Stage::new("env", "build an environment").files("src", &["src"]).environment("venv").run(move |ctx| {
            runs.fetch_add(1, Ordering::SeqCst);
            fs::create_dir_all(ctx.root().join("venv/bin"))?;
            fs::write(ctx.root().join("venv/bin/tool"), "#!/bin/sh\n")?;
            Ok(())
        });
        Pipeline::new().stage(s).unwrap()
    };
    assert_eq!(repo.run(&stage(runs.clone())).outcomes(), ["env=ran"]);
    assert_eq!(repo.run(&stage(runs.clone())).outcomes(), ["env=cached"]);
    fs::remove_dir_all(repo.path("venv")).unwrap();
    let status = engine::status(&stage(runs.clone()), &repo.workspace(), false).unwrap();
    assert_eq!(
        status[0].freshness,
        Freshness::Stale { reasons: vec!["environment `venv` is missing or was built from other inputs".into()] }
    );
    assert_eq!(repo.run(&stage(runs.clone())).outcomes(), ["env=ran"]);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert!(repo.path("venv/bin/tool").is_file());
}
