//! The `image` stage: the serving image, daemonless and reproducible, with its SBOM; pushed when
//! a registry is configured (`SLIPWAY_REGISTRY`, e.g. `ghcr.io/team/slipway-serve` or
//! `http://127.0.0.1:5000/slipway-serve`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use engine::{StageContext, StageError};
use xshell::cmd;

use crate::release::DIST;

/// Where the image layout, its `docker load` tar and its SBOM are written.
pub const IMAGE_DIR: &str = "dist/image";

/// Builds the image from the release binaries, the runtime and the model; pushes it if a
/// registry is configured.
pub fn stage_action(ctx: &StageContext) -> Result<(), StageError> {
    let root = ctx.root();
    let git = Git::read(root);
    let runtime = crate::validate::runtime_search(root, ctx.env()).find()?;
    let model = root.join("models/model.onnx");
    let model_digest = format!("blake3:{}", blake3::hash(&std::fs::read(&model).context("read the model")?).to_hex());
    let data_digest = data_digest(root)?;
    let epoch = ctx.env().get("SOURCE_DATE_EPOCH").and_then(|e| e.parse().ok()).unwrap_or(git.commit_time);
    let ort_version = image::onnxruntime_version(&runtime).unwrap_or_else(|| "unknown".into());
    let sbom = image::sbom(&image::SbomInput {
        name: "slipway-serve".into(),
        version: git.short.clone(),
        cargo_lock: root.join("Cargo.lock"),
        python_lock: Some(root.join("training/requirements.lock")),
        onnxruntime_version: ort_version,
        model_digest: model_digest.clone(),
        data_digest: data_digest.clone(),
        source_date_epoch: epoch,
    })
    .map_err(|e| anyhow::anyhow!("{}", image::WithHelp(&e)))?;
    let mut labels = BTreeMap::new();
    labels.insert(image::LABEL_REVISION.to_string(), git.sha.clone());
    labels.insert(
        image::LABEL_SOURCE.to_string(),
        ctx.env().get("SLIPWAY_SOURCE_URL").cloned().unwrap_or_else(|| "https://github.com/slipway/slipway".into()),
    );
    labels.insert(image::LABEL_VERSION.to_string(), git.version.clone().unwrap_or_else(|| git.short.clone()));
    labels.insert(image::LABEL_MODEL_DIGEST.to_string(), model_digest);
    labels.insert(image::LABEL_DATA_DIGEST.to_string(), data_digest);
    let spec = image::ImageSpec {
        repository: "slipway-serve".into(),
        serve_binary: root.join(DIST).join("slipway-serve"),
        onnxruntime: runtime,
        model,
        source_date_epoch: epoch,
        labels,
        out_dir: root.join(IMAGE_DIR),
        tags: git.tags(),
        sbom,
        libraries: None,
    };
    let built = image::build(&spec).map_err(|e| anyhow::anyhow!("{}", image::WithHelp(&e)))?;
    ctx.log_line(&format!("image {} (tags {})", built.manifest_digest, spec.tags.join(", ")));
    ctx.log_line(&format!(
        "  OCI layout: {}\n  docker load: {}\n  SBOM: {}",
        built.layout.display(),
        built.archive.display(),
        built.sbom.display()
    ));
    let pushed = push_if_configured(ctx, &built.layout, &spec.tags)?;
    let record = serde_json::json!({
        "manifest_digest": built.manifest_digest,
        "config_digest": built.config_digest,
        "tags": spec.tags,
        "layers": built.layers.iter().map(|l| serde_json::json!({"name": l.name, "digest": l.digest, "size": l.size})).collect::<Vec<_>>(),
        "pushed": pushed,
    });
    engine::write_atomic(
        &root.join(IMAGE_DIR).join("built.json"),
        serde_json::to_string_pretty(&record).map_err(anyhow::Error::from)?.as_bytes(),
    )?;
    Ok(())
}

fn push_if_configured(ctx: &StageContext, layout: &Path, tags: &[String]) -> Result<Option<String>, StageError> {
    let Some(registry) = ctx.env().get("SLIPWAY_REGISTRY").filter(|r| !r.is_empty()).cloned() else { return Ok(None) };
    let mut digest = None;
    for tag in tags {
        let reference = format!("{registry}:{tag}");
        let layout = layout.to_path_buf();
        // The pusher runs its own runtime; stages run inside ours, so it gets a thread of its own.
        let pushed = std::thread::spawn(move || {
            let host = image::Reference::parse(&reference)
                .map_err(|e| anyhow::anyhow!("{}", image::WithHelp(&e)))?
                .host
                .clone();
            let creds =
                image::Credentials::for_registry(&host).map_err(|e| anyhow::anyhow!("{}", image::WithHelp(&e)))?;
            image::push(&layout, &reference, &creds).map_err(|e| anyhow::anyhow!("{}", image::WithHelp(&e)))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the pusher panicked"))??;
        ctx.log_line(&format!(
            "pushed {registry}:{tag} = {} ({} new blobs, {} bytes)",
            pushed.digest, pushed.uploaded_blobs, pushed.uploaded_bytes
        ));
        digest = Some(pushed.digest);
    }
    Ok(digest)
}

/// The data set's identity: the md5 of its DVC manifest, from `data.dvc`.
fn data_digest(root: &Path) -> Result<String> {
    let text = std::fs::read_to_string(root.join("data.dvc")).context("read data.dvc")?;
    let outs = store::dvc::parse_pointer("data.dvc", &text)?;
    let out = outs.first().context("data.dvc names no output")?;
    Ok(format!("md5:{}", out.md5))
}

/// What git says about HEAD.
struct Git {
    sha: String,
    short: String,
    branch: Option<String>,
    version: Option<String>,
    commit_time: i64,
}

impl Git {
    fn read(root: &Path) -> Git {
        let sh = xshell::Shell::new().expect("a shell");
        sh.change_dir(root);
        let read = |c: xshell::Cmd<'_>| c.quiet().ignore_stderr().read().ok().filter(|s| !s.is_empty());
        let sha = read(cmd!(sh, "git rev-parse HEAD")).unwrap_or_else(|| "unknown".into());
        Git {
            short: sha.chars().take(12).collect(),
            branch: read(cmd!(sh, "git rev-parse --abbrev-ref HEAD")).filter(|b| b != "HEAD"),
            version: read(cmd!(sh, "git describe --exact-match --tags HEAD")),
            commit_time: read(cmd!(sh, "git log -1 --format=%ct")).and_then(|t| t.parse().ok()).unwrap_or(0),
            sha,
        }
    }

    /// The git sha first (the docker target runs `slipway-serve:<first tag>`), then the branch
    /// and the version when HEAD is tagged.
    fn tags(&self) -> Vec<String> {
        let mut tags = vec![self.short.clone()];
        tags.extend(self.branch.as_deref().map(image::tag_from));
        tags.extend(self.version.as_deref().map(image::tag_from));
        tags.dedup();
        tags
    }
}
