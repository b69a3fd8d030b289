//! Pipelines: stages in declaration order, and the rules a wiring must obey before it runs.
//!
//! A stage may only use or run after stages declared before it, which rules out cycles by
//! construction. Being keyed is transitive: a stage is keyed on the outputs of everything it
//! uses, directly or not, and waits for everything those wait for. A stage that reads a path
//! another stage writes must use that stage, and a stage that ships must run after every gate,
//! so neither mistake can be written down.

use crate::input::Input;
use crate::stage::{Role, Stage};
use crate::walk::overlaps;

/// Stages in the order they were declared.
#[derive(Clone, Default)]
pub struct Pipeline {
    stages: Vec<Stage>,
    /// Per stage, the indices of the stages it is keyed on (transitive `uses`), ascending.
    keyed: Vec<Vec<usize>>,
    /// Per stage, the indices of every stage it waits for (transitive `uses` and `after`).
    waits: Vec<Vec<usize>>,
}

/// A mistake in how a pipeline was wired. These are bugs in the pipeline's code.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Two stages share a name.
    #[error("two stages are named `{0}`")]
    Duplicate(String),
    /// A stage runs after one that is not declared before it.
    #[error("stage `{stage}` runs after `{upstream}`, which is not declared before it")]
    UnknownUpstream {
        /// The stage.
        stage: String,
        /// Its unknown upstream.
        upstream: String,
    },
    /// A stage was asked for by name and does not exist.
    #[error("there is no stage named `{0}`")]
    NoSuchStage(String),
    /// Two inputs of a stage share a name.
    #[error("stage `{stage}` declares the input `{input}` twice")]
    DuplicateInput {
        /// The stage.
        stage: String,
        /// The input's name.
        input: String,
    },
    /// A stage reads a path that another stage writes, without being keyed on that stage.
    #[error("stage `{stage}` reads `{path}`, which stage `{writer}` writes; declare `.uses(\"{writer}\")`")]
    ReadsUnkeyedOutput {
        /// The reader.
        stage: String,
        /// What it reads.
        path: String,
        /// The stage that writes it.
        writer: String,
    },
    /// A stage writes a path that a stage declared before it reads.
    #[error("stage `{stage}` writes `{path}`, which stage `{reader}`, declared before it, reads")]
    WritesEarlierInput {
        /// The writer.
        stage: String,
        /// What it writes.
        path: String,
        /// The earlier reader.
        reader: String,
    },
    /// Two stages write the same path.
    #[error("stages `{first}` and `{second}` both write `{path}`")]
    WrittenTwice {
        /// The earlier writer.
        first: String,
        /// The later writer.
        second: String,
        /// The path.
        path: String,
    },
    /// A stage that ships does not wait for a gate.
    #[error("stage `{stage}` ships but does not run after the gate `{gate}`; declare `.after(\"{gate}\")`")]
    ShipsPastGate {
        /// The shipping stage.
        stage: String,
        /// The gate it would pass.
        gate: String,
    },
    /// A gate declared after a shipping stage, which could then ship before the gate judged.
    #[error("gate `{gate}` is declared after `{stage}`, which ships; declare gates before what ships")]
    GateAfterShipping {
        /// The gate.
        gate: String,
        /// The shipping stage before it.
        stage: String,
    },
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Pipeline {
        Pipeline::default()
    }

    /// Appends `stage`, checking its wiring against the stages declared before it.
    pub fn stage(mut self, stage: Stage) -> Result<Pipeline, PipelineError> {
        if self.index(&stage.name).is_some() {
            return Err(PipelineError::Duplicate(stage.name));
        }
        let index_of = |up: &String| {
            self.index(up)
                .ok_or_else(|| PipelineError::UnknownUpstream { stage: stage.name.clone(), upstream: up.clone() })
        };
        let uses = stage.uses.iter().map(index_of).collect::<Result<Vec<_>, _>>()?;
        let after = stage.after.iter().map(index_of).collect::<Result<Vec<_>, _>>()?;
        check_inputs(&stage)?;
        let keyed = close(&uses, &self.keyed);
        let waits = close(&uses.iter().chain(&after).copied().collect::<Vec<_>>(), &self.waits);
        self.check_paths(&stage, &keyed)?;
        self.check_gates(&stage, &waits)?;
        self.stages.push(stage);
        self.keyed.push(keyed);
        self.waits.push(waits);
        Ok(self)
    }

    fn check_paths(&self, stage: &Stage, keyed: &[usize]) -> Result<(), PipelineError> {
        for (i, earlier) in self.stages.iter().enumerate() {
            for written in earlier.writes() {
                if !keyed.contains(&i)
                    && let Some(path) = read_paths(stage).into_iter().find(|p| overlaps(p, &written))
                {
                    let writer = earlier.name.clone();
                    return Err(PipelineError::ReadsUnkeyedOutput { stage: stage.name.clone(), path, writer });
                }
                if let Some(path) = stage.writes().into_iter().find(|w| overlaps(w, &written)) {
                    let (first, second) = (earlier.name.clone(), stage.name.clone());
                    return Err(PipelineError::WrittenTwice { first, second, path });
                }
            }
            let reads = read_paths(earlier);
            if let Some(path) = stage.writes().into_iter().find(|w| reads.iter().any(|r| overlaps(r, w))) {
                let reader = earlier.name.clone();
                return Err(PipelineError::WritesEarlierInput { stage: stage.name.clone(), path, reader });
            }
        }
        Ok(())
    }

    fn check_gates(&self, stage: &Stage, waits: &[usize]) -> Result<(), PipelineError> {
        for (i, earlier) in self.stages.iter().enumerate() {
            match (stage.role, earlier.role) {
                (Role::Ships, Role::Gate) if !waits.contains(&i) => {
                    return Err(PipelineError::ShipsPastGate { stage: stage.name.clone(), gate: earlier.name.clone() });
                }
                (Role::Gate, Role::Ships) => {
                    return Err(PipelineError::GateAfterShipping {
                        gate: stage.name.clone(),
                        stage: earlier.name.clone(),
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    /// The stages in declaration order.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The stage named `name`.
    pub fn get(&self, name: &str) -> Option<&Stage> {
        self.index(name).map(|i| &self.stages[i])
    }

    /// The stages `name` is keyed on, directly or through others, in declaration order.
    pub fn keyed_on(&self, name: &str) -> Vec<&Stage> {
        self.index(name).map(|i| self.keyed[i].iter().map(|&j| &self.stages[j]).collect()).unwrap_or_default()
    }

    /// Every stage `name` waits for, directly or through others, in declaration order.
    pub fn waits_for(&self, name: &str) -> Vec<&Stage> {
        self.index(name).map(|i| self.waits[i].iter().map(|&j| &self.stages[j]).collect()).unwrap_or_default()
    }

    /// Every environment variable a stage declares secret: its value is masked wherever a run
    /// prints or logs.
    pub fn secrets(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .stages
            .iter()
            .flat_map(|s| &s.inputs)
            .filter_map(|i| match i {
                Input::Env { name, how } if how.is_secret() => Some(name.clone()),
                _ => None,
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Paths left out of `stage`'s file inputs: what it writes itself, and what the stages it is
    /// keyed on write (their outputs are keyed through them already).
    pub fn excluded_inputs(&self, stage: &Stage) -> Vec<String> {
        let mut out = stage.writes();
        out.extend(self.keyed_on(&stage.name).into_iter().flat_map(Stage::writes));
        out
    }

    /// The sub-pipeline that `targets` need: each target and everything it waits for.
    pub fn select<S: AsRef<str>>(&self, targets: &[S]) -> Result<Pipeline, PipelineError> {
        let mut wanted = vec![false; self.stages.len()];
        for t in targets {
            let i = self.index(t.as_ref()).ok_or_else(|| PipelineError::NoSuchStage(t.as_ref().to_string()))?;
            wanted[i] = true;
            self.waits[i].iter().for_each(|&j| wanted[j] = true);
        }
        let mut out = Pipeline::new();
        for (stage, _) in self.stages.iter().zip(&wanted).filter(|(_, w)| **w) {
            out = out.stage(stage.clone())?;
        }
        Ok(out)
    }

    /// The pipeline as a table a person reads: each stage, its role, the stages it uses
    /// (keyed on) and the ones it only runs after. The README and ARCHITECTURE show this text,
    /// and a tidy test holds them to it.
    pub fn diagram(&self) -> String {
        let rows: Vec<[String; 4]> = self
            .stages
            .iter()
            .map(|s| {
                let role = match s.role {
                    Role::Step => "",
                    Role::Gate => "gate",
                    Role::Ships => "ships",
                };
                [s.name.clone(), role.to_string(), s.uses.join(", "), s.after.join(", ")]
            })
            .collect();
        let header = ["stage".to_string(), "role".into(), "uses (keyed on its outputs)".into(), "runs after".into()];
        let widths: Vec<usize> =
            (0..4).map(|c| rows.iter().chain([&header]).map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
        let line = |r: &[String; 4]| {
            let cells: Vec<String> = (0..4).map(|c| format!("{:<w$}", r[c], w = widths[c])).collect();
            format!("{}\n", cells.join("  ").trim_end())
        };
        let mut out = line(&header);
        rows.iter().for_each(|r| out.push_str(&line(r)));
        out
    }
}

/// `direct` and everything their closures hold, ascending.
fn close(direct: &[usize], closures: &[Vec<usize>]) -> Vec<usize> {
    let mut all: Vec<usize> =
        direct.iter().flat_map(|&d| std::iter::once(d).chain(closures[d].iter().copied())).collect();
    all.sort_unstable();
    all.dedup();
    all
}

fn check_inputs(stage: &Stage) -> Result<(), PipelineError> {
    let mut names: Vec<String> = stage.inputs.iter().map(Input::key_name).collect();
    names.sort();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(PipelineError::DuplicateInput { stage: stage.name.clone(), input: w[0].clone() });
    }
    Ok(())
}

/// Every path a stage declares it reads: files and code.
fn read_paths(stage: &Stage) -> Vec<String> {
    let mut out: Vec<String> = stage.code.clone();
    out.extend(stage.pipeline_code.iter().cloned());
    for input in &stage.inputs {
        if let Input::Files { paths, .. } = input {
            out.extend(paths.iter().cloned());
        }
    }
    out
}
