//! What a stage's key covers: its environment (and nothing else of the process's), probes,
//! crates, code, commands, ignore files, the paths it updates in place, and live environments;
//! and a fingerprint pinned to a literal digest.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use engine::{Command, Freshness, Pipeline, Stage, StageError};

use crate::fixture::Repo;

fn one(stage: Stage) -> Pipeline {
    Pipeline::new().stage(stage).unwrap()
}

fn stale_reasons(repo: &Repo, pipeline: &Pipeline, stage: usize) -> Vec<String> {
    match engine::status(pipeline, &repo.workspace(), false).unwrap().swap_remove(stage).freshness {
        Freshness::Stale { reasons } => reasons,
        other => panic!("expected stale, got {other:?}"),
    }
}

#[test]
fn a_command_sees_only_the_declared_and_ambient_environment() {
    let mut repo = Repo::new();
    repo.env.insert("DECLARED".into(), "yes".into());
    repo.env.insert("UNDECLARED".into(), "leak".into());
    repo.env.insert("PATH".into(), std::env::var("PATH").unwrap());
    let script = r#"echo "$DECLARED|$UNDECLARED|${PATH:+path}" > out.txt"#;
    let stage = Stage::new("env", "print the environment")
        .env("DECLARED")
        .command(Command::new("print", "sh").args(["-c", script]))
        .output("out.txt");
    let run = repo.run(&one(stage));
    assert_eq!(run.summary.exit_code(), 0, "{:?}", run.events);
    assert_eq!(repo.read("out.txt"), "yes||path\n");

    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let in_process = Stage::new("in-process", "read it").pass_env(&["DECLARED"]).run(move |ctx| {
        s2.lock().unwrap().extend(ctx.env().keys().cloned());
        Ok(())
    });
    repo.run(&one(in_process));
    assert_eq!(*seen.lock().unwrap(), ["DECLARED", "PATH"]);
}

#[test]
fn an_action_secret_reaches_the_action_but_not_its_commands() {
    let mut repo = Repo::new();
    repo.env.insert("TOLD".into(), "s3cret-token".into());
    repo.secrets = vec!["TOLD".into()];
    repo.env.insert("PATH".into(), std::env::var("PATH").unwrap());
    let seen = Arc::new(std::sync::Mutex::new(None));
    let s2 = seen.clone();
    let script = r#"echo "[$TOLD]" > out.txt"#;
    let stage = Stage::new("told", "run a command, then tell a service")
        .action_secrets(&["TOLD"])
        .command(Command::new("print", "sh").args(["-c", script]))
        .output("out.txt")
        .run(move |ctx| {
            ctx.run_commands()?;
            *s2.lock().unwrap() = ctx.env().get("TOLD").cloned();
            ctx.log_line("told with s3cret-token");
            Ok(())
        });
    let run = repo.run(&one(stage));
    assert_eq!(run.summary.exit_code(), 0, "{:?}", run.events);
    assert_eq!(repo.read("out.txt"), "[]\n", "the command does not see it");
    assert_eq!(seen.lock().unwrap().as_deref(), Some("s3cret-token"), "the action does");
    let log = repo.read(".slipway/logs/told.log");
    assert!(!log.contains("s3cret-token") && log.contains("told with ***"), "masked: {log}");
}

#[test]
fn a_probe_is_keyed_and_its_value_reaches_the_action() {
    let repo = Repo::new();
    repo.write("version.txt", "v1\n");
    let runs = Arc::new(AtomicUsize::new(0));
    let pipeline = |runs: Arc<AtomicUsize>| {
        one(Stage::new("probe", "use a probe")
            .probe("version", &["cat", "version.txt"])
            .probe("absent", &["cat", "no-such-file"])
            .output("out.txt")
            .run(move |ctx| {
                runs.fetch_add(1, Ordering::SeqCst);
                assert_eq!(ctx.probe("absent"), None, "a failed probe has no value");
                fs::write(ctx.root().join("out.txt"), ctx.probe("version").unwrap())?;
                Ok(())
            }))
    };
    repo.run(&pipeline(runs.clone()));
    assert_eq!(repo.read("out.txt"), "v1");
    assert_eq!(repo.run(&pipeline(runs.clone())).outcomes(), ["probe=cached"]);
    repo.write("version.txt", "v2\n");
    assert_eq!(stale_reasons(&repo, &pipeline(runs.clone()), 0), ["probe:version: `v1` → `v2`"]);
    assert_eq!(repo.run(&pipeline(runs.clone())).outcomes(), ["probe=ran"]);
    assert_eq!(repo.read("out.txt"), "v2");
    let tool = one(Stage::new("t", "").tool("missing", &["cat", "no-such-file"]));
    let run = repo.run(&tool);
    assert_eq!(run.summary.exit_code(), 2, "a tool that does not run is an error");
}

/// Probes start when the run does, all at once; what an earlier stage changes (by running or by
/// having its outputs restored) must still be what a later stage's probe reports.
#[test]
fn a_probe_sees_what_an_earlier_stage_of_the_run_changed() {
    let repo = Repo::new();
    repo.write("version.txt", "v1\n");
    let pipeline = || {
        let install = Stage::new("install", "install v2").output("version.txt").run(|ctx| {
            // Slow enough that the probe started with the run has long answered `v1`.
            std::thread::sleep(std::time::Duration::from_millis(300));
            fs::write(ctx.root().join("version.txt"), "v2\n")?;
            Ok(())
        });
        let user = Stage::new("use", "use the installed version")
            .after("install")
            .probe("version", &["cat", "version.txt"])
            .output("out.txt")
            .run(|ctx| {
                fs::write(ctx.root().join("out.txt"), ctx.probe("version").unwrap_or("none"))?;
                Ok(())
            });
        Pipeline::new().stage(install).unwrap().stage(user).unwrap()
    };
    let run = repo.run(&pipeline());
    assert_eq!(run.outcomes(), ["install=ran", "use=ran"]);
    assert_eq!(repo.read("out.txt"), "v2", "the probe ran after `install` did");
    assert_eq!(repo.run(&pipeline()).outcomes(), ["install=cached", "use=cached"], "keyed on `v2`");
    // Put back by hand, the old version is restored by `install` before `use` looks.
    repo.write("version.txt", "v1\n");
    assert_eq!(repo.run(&pipeline()).outcomes(), ["install=restored", "use=cached"]);
    assert_eq!(repo.read("version.txt"), "v2\n");
}

/// Stages that ask for the same probe at once share one run of it.
#[test]
fn one_probe_asked_for_at_once_runs_once() {
    let mut repo = Repo::new();
    repo.env.insert("PATH".into(), std::env::var("PATH").unwrap());
    repo.write("count.sh", "echo x >> runs.txt; sleep 0.2; echo v1\n");
    let stage = |name: &str| {
        Stage::new(name, "probe").probe("counted", &["sh", "count.sh"]).run(|ctx| {
            assert_eq!(ctx.probe("counted"), Some("v1"));
            Ok(())
        })
    };
    let pipeline = Pipeline::new().stage(stage("a")).unwrap().stage(stage("b")).unwrap().stage(stage("c")).unwrap();
    let run = repo.run(&pipeline);
    assert_eq!(run.outcomes(), ["a=ran", "b=ran", "c=ran"]);
    // Once when the run starts; each stage that ran made every later asker probe afresh (its
    // check that the inputs did not change while it ran included), so at most 1 + 2 × 3.
    let runs = repo.read("runs.txt").lines().count();
    assert!((1..=7).contains(&runs), "{runs} runs");
    fs::remove_file(repo.path("runs.txt")).unwrap();
    assert_eq!(repo.run(&pipeline).outcomes(), ["a=cached", "b=cached", "c=cached"]);
    assert_eq!(repo.read("runs.txt"), "x\n", "a run that changes nothing probes once");
}

#[test]
fn a_crates_input_covers_the_closure_and_nothing_else() {
    let mut repo = Repo::new();
    // The compiler is part of the key: `rustc` must be found.
    repo.env.insert("PATH".into(), std::env::var("PATH").unwrap());
    repo.cargo_workspace("1.0.0", "1.0.0");
    let runs = Arc::new(AtomicUsize::new(0));
    let pipeline = || {
        let runs = runs.clone();
        one(Stage::new("gate", "run pkg-a in process").crates(&["pkg-a"]).run(move |_| {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }))
    };
    let check = |edit: &dyn Fn(), reruns: bool| {
        let before = runs.load(Ordering::SeqCst);
        edit();
        repo.run(&pipeline());
        assert_eq!(runs.load(Ordering::SeqCst) > before, reruns);
    };
    check(&|| {}, true);
    check(&|| {}, false);
    check(&|| repo.write("crates/b/src/lib.rs", "// changed dependency\n"), true);
    check(&|| repo.write("crates/c/src/lib.rs", "// unrelated crate\n"), false);
    check(&|| repo.write("crates/a/tests/t.rs", "// only a test\n"), false);
    check(&|| repo.cargo_workspace("1.0.0", "2.0.0"), false);
    repo.write("crates/a/src/lib.rs", "// edited\n");
    let reasons = stale_reasons(&repo, &pipeline(), 0);
    assert!(reasons[0].starts_with("crates: crates/a/src/lib.rs changed ("), "{reasons:?}");
    check(&|| {}, true);
    repo.cargo_workspace("1.0.1", "2.0.0");
    let reasons = stale_reasons(&repo, &pipeline(), 0);
    assert_eq!(reasons, ["crates: no longer locked: serde 1.0.0", "crates: newly locked: serde 1.0.1"]);
}

#[test]
fn a_stage_built_elsewhere_names_its_missing_code() {
    let repo = Repo::new();
    // `stage!` names this file relative to the workspace that built the test, which the
    // temporary repository is not.
    let run = repo.run(&one(engine::stage!("here", "declared by this file")));
    let engine::Outcome::Failed(message) = &run.summary.stages[0].outcome else { panic!("{:?}", run.summary) };
    assert!(
        message.contains("the code of stage `here`, `crates/engine/tests/inputs.rs`, is not in the workspace"),
        "{message}"
    );
    repo.write("run.sh", "echo one\n");
    let runs = Arc::new(AtomicUsize::new(0));
    let pipeline = || {
        let runs = runs.clone();
        one(Stage::new("script", "").code("run.sh").run(move |_| {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }))
    };
    repo.run(&pipeline());
    repo.write("run.sh", "echo two\n");
    repo.run(&pipeline());
    assert_eq!(runs.load(Ordering::SeqCst), 2, "editing the stage's code reruns it");
}

#[test]
fn commands_are_keyed_as_declared_and_must_all_run() {
    let repo = Repo::new();
    let stage = |word: &str| {
        Stage::new("cmd", "")
            .command(Command::new("say it", "sh").args(["-c", &format!("echo {word} > said.txt")]))
            .output("said.txt")
    };
    repo.run(&one(stage("hello")));
    assert_eq!(repo.read("said.txt"), "hello\n");
    assert_eq!(
        stale_reasons(&repo, &one(stage("bye")), 0),
        ["commands: `sh -c 'echo hello > said.txt'` → `sh -c 'echo bye > said.txt'`"]
    );
    let skipping = Stage::new("lazy", "")
        .command(Command::new("do it", "true"))
        .command(Command::new("only when needed", "true").optional())
        .run(|_| Ok(()));
    let run = repo.run(&one(skipping));
    let engine::Outcome::Failed(message) = &run.summary.stages[0].outcome else { panic!("{:?}", run.summary) };
    assert_eq!(message, "stage `lazy` declares commands it did not run: true; run them or mark them optional");
    let rejecting = Stage::new("gate", "").command(Command::new("judge", "false").rejects());
    assert_eq!(repo.run(&one(rejecting)).summary.exit_code(), 1, "a rejecting command is a gate's no");
}

#[test]
fn ignore_files_and_a_stages_own_outputs_are_not_its_inputs() {
    let repo = Repo::new();
    repo.write("src/.gitignore", "*.log\n");
    repo.write("src/code.py", "print(1)\n");
    let runs = Arc::new(AtomicUsize::new(0));
    let pipeline = || {
        let runs = runs.clone();
        // Like pytest writing its cache next to the tests it reads.
        one(Stage::new("t", "").files("src", &["src"]).output("src/.cache/out.txt").run(move |ctx| {
            runs.fetch_add(1, Ordering::SeqCst);
            fs::create_dir_all(ctx.root().join("src/.cache"))?;
            fs::write(ctx.root().join("src/.cache/out.txt"), runs.load(Ordering::SeqCst).to_string())?;
            Ok(())
        }))
    };
    assert_eq!(repo.run(&pipeline()).outcomes(), ["t=ran"]);
    repo.write("src/run.log", "noise");
    repo.write("src/.ruff_cache/x", "tool cache");
    assert_eq!(repo.run(&pipeline()).outcomes(), ["t=cached"], "ignored files and its own output are not inputs");
    repo.write("src/.gitignore", "");
    assert_eq!(repo.run(&pipeline()).outcomes(), ["t=ran"], "un-ignoring a file makes it an input");
}

#[test]
fn a_stage_that_updates_a_directory_never_moves_or_deletes_what_it_did_not_write() {
    let repo = Repo::new();
    let (pulls, trains) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let pipeline = |fail: bool| {
        let (pulls, trains) = (pulls.clone(), trains.clone());
        let pull = Stage::new("pull", "check data out").updates("data").run(move |ctx| {
            pulls.fetch_add(1, Ordering::SeqCst);
            fs::create_dir_all(ctx.root().join("data"))?;
            fs::write(ctx.root().join("data/train.csv"), "a,b\n")?;
            if fail {
                return Err(StageError::Failed(anyhow::anyhow!("remote down")));
            }
            Ok(())
        });
        let train = Stage::new("train", "count files").uses("pull").output("model.txt").run(move |ctx| {
            trains.fetch_add(1, Ordering::SeqCst);
            let n = fs::read_dir(ctx.root().join("data"))?.count();
            fs::write(ctx.root().join("model.txt"), n.to_string())?;
            Ok(())
        });
        Pipeline::new().stage(pull).unwrap().stage(train).unwrap()
    };
    assert_eq!(repo.run(&pipeline(false)).outcomes(), ["pull=ran", "train=ran"]);
    assert_eq!(repo.run(&pipeline(false)).outcomes(), ["pull=cached", "train=cached"]);
    repo.write("data/mine.csv", "my own file");
    assert_eq!(stale_reasons(&repo, &pipeline(false), 0), ["`data/mine.csv` changed since the stage last ran"]);
    assert_eq!(repo.run(&pipeline(false)).outcomes(), ["pull=ran", "train=ran"], "what train reads changed");
    assert_eq!(repo.read("data/mine.csv"), "my own file");
    assert_eq!(repo.read("model.txt"), "2");
    repo.write("data/other.csv", "another");
    assert_eq!(repo.run(&pipeline(true)).outcomes(), ["pull=failed", "train=skipped"]);
    assert_eq!(repo.read("data/other.csv"), "another", "a failed run moves nothing either");
    assert!(!repo.path(".slipway/lost+found").exists());
}

#[test]
fn an_environment_is_fresh_only_while_it_is_really_there() {
    let repo = Repo::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let pipeline = || {
        let runs = runs.clone();
        one(Stage::new("deploy", "start a server")
            .environment("env")
            .alive(|root, _| match root.join("env/running").exists() {
                true => Ok(()),
                false => Err("nothing answers on port 1".into()),
            })
            .run(move |ctx| {
                runs.fetch_add(1, Ordering::SeqCst);
                fs::create_dir_all(ctx.root().join("env"))?;
                fs::write(ctx.root().join("env/running"), "")?;
                Ok(())
            }))
    };
    assert_eq!(repo.run(&pipeline()).outcomes(), ["deploy=ran"]);
    assert_eq!(repo.run(&pipeline()).outcomes(), ["deploy=cached"]);
    fs::remove_file(repo.path("env/running")).unwrap();
    assert_eq!(stale_reasons(&repo, &pipeline(), 0), ["environment `env` is not there: nothing answers on port 1"]);
    assert_eq!(repo.run(&pipeline()).outcomes(), ["deploy=ran"]);
}

/// Any change to what a key covers, or how it is written, must be deliberate: it changes this
/// digest, and then `FINGERPRINT_VERSION` must change too (old records must stop matching).
#[test]
fn a_fingerprint_is_pinned() {
    let mut repo = Repo::new();
    repo.write("src/a.txt", "alpha\n");
    repo.write("src/sub/b.txt", "beta\n");
    repo.env.insert("MODE".into(), "fast".into());
    repo.env.insert("TOKEN".into(), "secret".into());
    let stage = Stage::new("pinned", "a fixed stage")
        .files("src", &["src"])
        .env("MODE")
        .secret_env("TOKEN")
        .pass_env(&["HOME"])
        .param("C", 0.5)
        .command(Command::new("run", "sh").args(["-c", "true"]).env("X", "1").path_prepend("bin"));
    let pipeline = one(stage.clone());
    let resolved = engine::resolve(&pipeline, &stage, &repo.workspace(), &Default::default(), &|_| {}).unwrap();
    assert_eq!(engine::FINGERPRINT_VERSION, "slipway-stage-v2");
    assert_eq!(
        resolved.fingerprint.to_hex(),
        PINNED,
        "what a key covers changed: bump FINGERPRINT_VERSION and this digest"
    );
}

const PINNED: &str = "e8d7873b72acc205e80490af2f7e775a2627c78d0cfd40e4f30a4622497a5ec1";

#[test]
fn a_run_whose_inputs_changed_meanwhile_is_not_recorded() {
    let repo = Repo::new();
    repo.write("src/a.txt", "before\n");
    let runs = Arc::new(AtomicUsize::new(0));
    let pipeline = |edit: bool| {
        let runs = runs.clone();
        // As if a person saved a file while the stage ran.
        one(Stage::new("slow", "read src").files("src", &["src"]).output("out.txt").run(move |ctx| {
            runs.fetch_add(1, Ordering::SeqCst);
            fs::write(ctx.root().join("out.txt"), fs::read(ctx.root().join("src/a.txt"))?)?;
            if edit {
                fs::write(ctx.root().join("src/a.txt"), "saved meanwhile\n")?;
            }
            Ok(())
        }))
    };
    let run = repo.run(&pipeline(true));
    assert_eq!(run.outcomes(), ["slow=ran"]);
    assert!(
        run.events.iter().any(|e| e.contains("slow: its inputs changed while it ran (files:src: src/a.txt changed")),
        "{:?}",
        run.events
    );
    assert_eq!(repo.run(&pipeline(false)).outcomes(), ["slow=ran"], "the first run was not cached");
    assert_eq!(repo.read("out.txt"), "saved meanwhile\n");
    assert_eq!(repo.run(&pipeline(false)).outcomes(), ["slow=cached"]);
}
