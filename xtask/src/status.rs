//! `cargo xtask status` and `ci --dry-run`: for every stage, fresh or stale and why. Runs nothing.

use std::path::Path;

use anyhow::Result;
use engine::Freshness;

use crate::Env;
use crate::flags::Common;
use crate::pipeline::pipeline;

/// Prints the status of every stage; always exits 0 when it could be computed.
pub fn run(root: &Path, env: &Env, common: &Common, json: bool) -> Result<u8> {
    let runtime = tokio::runtime::Runtime::new()?;
    let pipeline = pipeline(&crate::root::program_root(env, root)?, root)?;
    let ws = crate::ci::open_workspace(root, env, &pipeline, &runtime)?;
    let mut statuses = engine::status(&pipeline, &ws, common.no_cache)?;
    for s in statuses.iter_mut().filter(|s| common.force.contains(&s.stage)) {
        s.freshness = Freshness::Stale { reasons: vec!["--force".to_string()] };
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
        return Ok(0);
    }
    let width = statuses.iter().map(|s| s.stage.len()).max().unwrap_or(0);
    for s in &statuses {
        match &s.freshness {
            Freshness::Fresh => println!("{:<width$}  fresh", s.stage),
            Freshness::Restore { outputs } => {
                println!("{:<width$}  cached, will restore: {}", s.stage, outputs.join(", "))
            }
            Freshness::Stale { reasons } => {
                println!("{:<width$}  stale", s.stage);
                for r in reasons {
                    println!("{:<width$}    {r}", "");
                }
            }
        }
    }
    Ok(0)
}
