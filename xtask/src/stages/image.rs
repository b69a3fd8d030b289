//! The `image` stage: the serving image, daemonless and reproducible, with its SBOM; pushed when
//! a registry is configured (`SLIPWAY_REGISTRY`, e.g. `ghcr.io/team/slipway-serve` or
//! `http://127.0.0.1:5000/slipway-serve`). It ships, so it runs only after every gate passed.
//!
//! Everything it knows about git comes from the probes it declares (the commit, the branch, the
//! tags on HEAD, the commit time), so tagging a release reruns it and the tag is pushed.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use engine::{Stage, StageContext, StageError};

use crate::paths::{IMAGE_DIR, IMAGE_PROVENANCE, IMAGE_RECORD, MODEL, SERVE_BIN, TRAIN_LOCK};

/// The variables the image reads, each keyed by value: where it is pushed and as whom, its
/// timestamps and its source label.
const IMAGE_ENV: &[&str] = &["SLIPWAY_REGISTRY", "SLIPWAY_REGISTRY_USER", "SOURCE_DATE_EPOCH", "SLIPWAY_SOURCE_URL"];

/// The lock file of the Cargo workspace that builds the server.
const CARGO_LOCK: &str = "Cargo.lock";

/// The label an image carries when `SLIPWAY_SOURCE_URL` is not set.
const DEFAULT_SOURCE: &str = "https://github.com/slipway/slipway";

/// Builds the image from the release binaries, the runtime and the model, after every gate.
pub fn stage() -> Stage {
    let mut stage = engine::stage!("image", "build the serving image (and push it if SLIPWAY_REGISTRY is set)")
        .ships()
        .uses("build")
        .uses("train")
        .after("lint")
        .after("test")
        .after("check-data")
        .after("validate")
        .pipeline_code(crate::ort::CODE)
        .pipeline_code(crate::paths::CODE)
        .crates(&["slipway-image", "slipway-store"])
        .files("inputs", &[crate::paths::DEMO_POINTER, TRAIN_LOCK])
        // The SBOM lists every crate of the program's lock file, wherever the project is.
        .pipeline_code(CARGO_LOCK)
        .env(crate::ort::DYLIB_VAR)
        .secret_env(image::PASSWORD_VAR)
        .pass_env(&["DOCKER_CONFIG"])
        // The runtime libraries layer is copied from this machine.
        .tool("system-libraries", &["dpkg-query", "-W", "libc6", "libstdc++6", "libgcc-s1"])
        .probe("git-commit", &["git", "rev-parse", "HEAD"])
        .probe("git-branch", &["git", "rev-parse", "--abbrev-ref", "HEAD"])
        .probe("git-tags", &["git", "tag", "--points-at", "HEAD"])
        .probe("git-time", &["git", "log", "-1", "--format=%ct"])
        .output(IMAGE_DIR);
    for var in IMAGE_ENV {
        stage = stage.env(var);
    }
    stage.run(action)
}

fn action(ctx: &StageContext) -> Result<(), StageError> {
    let root = ctx.root();
    let git = Git::from_probes(ctx);
    let runtime = crate::ort::search(root, ctx.env()).find()?;
    let model = root.join(MODEL);
    let model_digest = format!("blake3:{}", blake3::hash(&std::fs::read(&model).context("read the model")?).to_hex());
    let data_digest = data_digest(root)?;
    let epoch = ctx.env().get("SOURCE_DATE_EPOCH").and_then(|e| e.parse().ok()).unwrap_or(git.commit_time);
    let ort_version = image::onnxruntime_version(&runtime).unwrap_or_else(|| "unknown".into());
    let sbom = image::sbom(&image::SbomInput {
        name: "slipway-serve".into(),
        version: git.short.clone(),
        cargo_lock: ctx.program_root().join(CARGO_LOCK),
        python_lock: Some(root.join(TRAIN_LOCK)),
        onnxruntime_version: ort_version,
        model_digest: model_digest.clone(),
        data_digest: data_digest.clone(),
        source_date_epoch: epoch,
    })
    .map_err(|e| anyhow::anyhow!("{}", image::WithHelp(&e)))?;
    let mut labels = BTreeMap::new();
    labels.insert(image::LABEL_REVISION.to_string(), git.sha.clone());
    let source = ctx.env().get("SLIPWAY_SOURCE_URL").cloned().unwrap_or_else(|| DEFAULT_SOURCE.into());
    labels.insert(image::LABEL_SOURCE.to_string(), source);
    labels.insert(image::LABEL_VERSION.to_string(), git.tags.first().cloned().unwrap_or_else(|| git.short.clone()));
    labels.insert(image::LABEL_MODEL_DIGEST.to_string(), model_digest);
    labels.insert(image::LABEL_DATA_DIGEST.to_string(), data_digest.clone());
    let spec = image::ImageSpec {
        repository: "slipway-serve".into(),
        serve_binary: root.join(SERVE_BIN),
        onnxruntime: runtime.clone(),
        model,
        source_date_epoch: epoch,
        labels,
        out_dir: root.join(IMAGE_DIR),
        tags: git.image_tags(),
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
    let told = ctx.env().get("SLIPWAY_SOURCE_URL").filter(|s| !s.is_empty()).map(String::as_str);
    let statement = provenance(ctx, &git, told, &runtime, &data_digest, &built, &spec.tags)?;
    engine::write_atomic(&root.join(IMAGE_PROVENANCE), &statement)?;
    ctx.log_line(&format!("  provenance: {IMAGE_PROVENANCE}"));
    let pushed = push_if_configured(ctx, &built.layout, &spec.tags)?;
    let record = serde_json::json!({
        "manifest_digest": built.manifest_digest,
        "config_digest": built.config_digest,
        "tags": spec.tags,
        "layers": built.layers.iter().map(|l| serde_json::json!({"name": l.name, "digest": l.digest, "size": l.size})).collect::<Vec<_>>(),
        "pushed": pushed,
    });
    let json = serde_json::to_string_pretty(&record).map_err(anyhow::Error::from)?;
    engine::write_atomic(&root.join(IMAGE_RECORD), json.as_bytes())?;
    Ok(())
}

fn push_if_configured(ctx: &StageContext, layout: &Path, tags: &[String]) -> Result<Option<String>, StageError> {
    let Some(registry) = ctx.env().get("SLIPWAY_REGISTRY").filter(|r| !r.is_empty()).cloned() else { return Ok(None) };
    let mut digest = None;
    for tag in tags {
        let reference = format!("{registry}:{tag}");
        let (layout, env) = (layout.to_path_buf(), ctx.env().clone());
        // The pusher runs its own runtime; stages run inside ours, so it gets a thread of its own.
        let pushed = std::thread::spawn(move || {
            let host = image::Reference::parse(&reference)
                .map_err(|e| anyhow::anyhow!("{}", image::WithHelp(&e)))?
                .host
                .clone();
            let creds = image::Credentials::for_registry(&host, &env)
                .map_err(|e| anyhow::anyhow!("{}", image::WithHelp(&e)))?;
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

/// The SLSA provenance of the image `built`: the commit (when git knows it), the program's
/// `Cargo.lock`, the data's md5 from its pointer, the model, the training lock, the server
/// binary and ONNX Runtime, each by digest; the SBOM as a byproduct.
fn provenance(
    ctx: &StageContext,
    git: &Git,
    source_uri: Option<&str>,
    runtime: &Path,
    data_digest: &str,
    built: &image::Built,
    tags: &[String],
) -> Result<Vec<u8>> {
    let root = ctx.root();
    let file = |name: &str, path: &Path, blake: bool| -> Result<image::Material> {
        let bytes = std::fs::read(path).with_context(|| format!("read {} for the provenance", path.display()))?;
        let mut m = image::Material::new(name, "sha256", image::sha256(&bytes).trim_start_matches("sha256:"));
        if blake {
            m.digest.insert("blake3".into(), blake3::hash(&bytes).to_hex().to_string());
        }
        Ok(m)
    };
    let commit = ([40, 64].contains(&git.sha.len()) && git.sha.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| git.sha.to_ascii_lowercase());
    // Where the source lives only when the build was told (`SLIPWAY_SOURCE_URL`): a default
    // would credit a team's commit to Slipway's repository.
    let uri = source_uri.map(|s| format!("git+{s}"));
    let mut materials = Vec::new();
    if let Some(commit) = &commit {
        let mut source = image::Material::new("source", "gitCommit", commit);
        source.uri = uri.clone();
        materials.push(source);
    }
    materials.push(file(CARGO_LOCK, &ctx.program_root().join(CARGO_LOCK), false)?);
    if let Some(md5) = data_digest.strip_prefix("md5:") {
        let mut data = image::Material::new("data", "md5", md5);
        data.annotations.insert("pointer".into(), crate::paths::DEMO_POINTER.into());
        data.annotations.insert("digest_of".into(), "the DVC manifest of the directory the pointer tracks".into());
        materials.push(data);
    }
    materials.push(file("model.onnx", &root.join(MODEL), true)?);
    materials.push(file(TRAIN_LOCK, &root.join(TRAIN_LOCK), false)?);
    materials.push(file("slipway-serve", &root.join(SERVE_BIN), true)?);
    materials.push(file("libonnxruntime.so", runtime, false)?);
    let input = image::ProvenanceInput {
        image_name: "slipway-serve".into(),
        manifest_digest: built.manifest_digest.clone(),
        tags: tags.to_vec(),
        builder_id: format!("{DEFAULT_SOURCE}/xtask@{}", env!("CARGO_PKG_VERSION")),
        external_parameters: {
            // Only what is known: no key holds a null.
            let mut source = serde_json::Map::new();
            if let Some(uri) = uri {
                source.insert("uri".into(), uri.into());
            }
            if let Some(commit) = commit {
                source.insert("digest".into(), serde_json::json!({ "gitCommit": commit }));
            }
            let mut params = serde_json::json!({ "source": source });
            if let Some(branch) = &git.branch {
                params["branch"] = branch.clone().into();
            }
            params
        },
        materials,
        byproducts: vec![file("sbom.cdx.json", &built.sbom, false)?],
    };
    image::provenance(&input).map_err(|e| anyhow::anyhow!("{}", image::WithHelp(&e)))
}

/// The data set's identity: the md5 of its DVC manifest, from `data.dvc`.
fn data_digest(root: &Path) -> Result<String> {
    let pointer = crate::paths::DEMO_POINTER;
    let text = std::fs::read_to_string(root.join(pointer)).with_context(|| format!("read {pointer}"))?;
    let outs = store::dvc::parse_pointer(pointer, &text)?;
    let out = outs.first().with_context(|| format!("{pointer} names no output"))?;
    Ok(format!("md5:{}", out.md5))
}

/// What git said about HEAD when the stage was planned.
struct Git {
    sha: String,
    short: String,
    branch: Option<String>,
    tags: Vec<String>,
    commit_time: i64,
}

impl Git {
    fn from_probes(ctx: &StageContext) -> Git {
        let sha = ctx.probe("git-commit").filter(|s| !s.is_empty()).unwrap_or("unknown").to_string();
        let mut tags: Vec<String> = ctx.probe("git-tags").unwrap_or_default().lines().map(str::to_string).collect();
        tags.sort();
        Git {
            short: sha.chars().take(12).collect(),
            branch: ctx.probe("git-branch").filter(|b| !b.is_empty() && *b != "HEAD").map(str::to_string),
            tags,
            commit_time: ctx.probe("git-time").and_then(|t| t.parse().ok()).unwrap_or(0),
            sha,
        }
    }

    /// The git sha first (the docker target runs `slipway-serve:<first tag>`), then the branch
    /// and every tag on HEAD.
    fn image_tags(&self) -> Vec<String> {
        let mut tags = vec![self.short.clone()];
        tags.extend(self.branch.as_deref().map(image::tag_from));
        tags.extend(self.tags.iter().map(|t| image::tag_from(t)));
        let mut seen = std::collections::BTreeSet::new();
        tags.retain(|t| seen.insert(t.clone()));
        tags
    }
}
