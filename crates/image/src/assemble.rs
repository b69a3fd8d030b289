//! `build`: the five layers, the config, the manifest, the SBOM referrer, the layout and the
//! archive, in that order.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::ImageError;
use crate::layer::{self, Content, LayerBlob, Tree};
use crate::layout::{self, Archive, Blobs, to_json};
use crate::oci::{self, Descriptor, DockerManifest, History, ImageConfig, Manifest, RootFs, RunConfig};
use crate::spec::{self, Built, ImageSpec, LayerInfo, Library};
use crate::{libs, rfc3339};

/// The layers, base first: the one that changes most (the model) goes last, so a new model
/// re-uploads one layer and every registry and cache keeps the rest.
const LAYERS: [(&str, &str); 5] = [
    ("base", "slipway-image: /etc/passwd, /etc/group with user slipway (10001), /tmp"),
    ("libraries", "slipway-image: the runtime libraries ldd resolves for the server and ONNX Runtime"),
    ("onnxruntime", "slipway-image: ONNX Runtime in /opt/onnxruntime"),
    ("server", "slipway-image: the server at /usr/local/bin/slipway-serve"),
    ("model", "slipway-image: the model at /model/model.onnx"),
];

/// Builds the image described by `spec` into `spec.out_dir`: the layout `oci/`, the archive
/// `image.tar` and `sbom.cdx.json`. Equal specs give byte-identical outputs.
pub fn build(spec: &ImageSpec) -> Result<Built, ImageError> {
    let mtime = check(spec)?;
    let libraries = match &spec.libraries {
        Some(listed) => listed.clone(),
        None => libs::resolve_libraries(&[&spec.serve_binary, &spec.onnxruntime])?,
    };
    let staging = spec.out_dir.join(".oci.tmp");
    fresh_dir(&staging)?;
    let blobs = Blobs::create(&staging)?;
    let image = write_image(spec, &libraries, mtime, &blobs)?;
    let tags = layout::tag_entries(&image.manifest, &spec.repository, &spec.tags);
    layout::write_index(&staging, tags.iter().cloned().chain([image.sbom_entry.clone()]).collect())?;
    let archive = spec.out_dir.join("image.tar");
    let docker = docker_manifest(spec, &image.config, &image.layers);
    let blob_list = std::iter::once(&image.config).chain(&image.layers).collect();
    let contents = Archive { index: tags, blobs: blob_list, manifest: &image.manifest, docker };
    layout::write_archive(&archive, &blobs, &contents, mtime)?;
    let layout_dir = spec.out_dir.join("oci");
    replace_dir(&staging, &layout_dir)?;
    let sbom = spec.out_dir.join("sbom.cdx.json");
    layout::write_file(&sbom, &spec.sbom)?;
    Ok(image.into_built(layout_dir, archive, sbom))
}

/// The blobs of one image and its SBOM referrer.
struct Image {
    written: Vec<LayerBlob>,
    layers: Vec<Descriptor>,
    config: Descriptor,
    manifest: Descriptor,
    sbom_entry: Descriptor,
    sbom_size: u64,
}

/// Writes the layers, the config, the manifest and the SBOM artifact into `blobs`.
fn write_image(spec: &ImageSpec, libraries: &[Library], mtime: u64, blobs: &Blobs) -> Result<Image, ImageError> {
    let ort_name = file_name(&spec.onnxruntime)?;
    let written = write_layers(&trees(spec, libraries, &ort_name), mtime, blobs)?;
    let config = blobs.put(oci::CONFIG, &to_json(&image_config(spec, &ort_name, &written)))?;
    let layers: Vec<Descriptor> =
        written.iter().map(|l| Descriptor::new(oci::LAYER_GZIP, l.digest.clone(), l.size)).collect();
    let manifest = blobs.put(oci::MANIFEST, &to_json(&image_manifest(config.clone(), layers.clone())))?;
    let (sbom_entry, sbom_size) = attach_sbom(blobs, &spec.sbom, &manifest, spec.source_date_epoch)?;
    Ok(Image { written, layers, config, manifest, sbom_entry, sbom_size })
}

impl Image {
    fn into_built(self, layout: PathBuf, archive: PathBuf, sbom: PathBuf) -> Built {
        let layers = LAYERS.iter().zip(&self.written).map(|((name, _), l)| info(name, l)).collect();
        Built {
            manifest_digest: self.manifest.digest,
            manifest_size: self.manifest.size,
            config_digest: self.config.digest,
            config_size: self.config.size,
            layers,
            sbom_manifest_digest: self.sbom_entry.digest,
            sbom_size: self.sbom_size,
            layout,
            archive,
            sbom,
        }
    }
}

/// Refuses a spec that cannot give a valid, reproducible image; returns the layers' mtime.
fn check(spec: &ImageSpec) -> Result<u64, ImageError> {
    let mtime = u64::try_from(spec.source_date_epoch)
        .map_err(|_| ImageError::BadSpec(format!("source_date_epoch {} is before 1970", spec.source_date_epoch)))?;
    if spec.tags.is_empty() {
        return Err(ImageError::BadSpec("at least one tag is needed".into()));
    }
    spec.tags.iter().try_for_each(|t| spec::check_tag(t))?;
    let repo_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:".contains(c);
    if spec.repository.is_empty() || !spec.repository.chars().all(repo_ok) {
        return Err(ImageError::BadSpec(format!(
            "`{}` is not a repository name (lowercase, digits, ._-/)",
            spec.repository
        )));
    }
    for (what, path) in
        [("serve binary", &spec.serve_binary), ("ONNX Runtime library", &spec.onnxruntime), ("model", &spec.model)]
    {
        fs::metadata(path).map_err(|source| ImageError::Input { what, path: path.clone(), source })?;
    }
    Ok(mtime)
}

fn file_name(path: &Path) -> Result<String, ImageError> {
    let name = path.file_name().and_then(|n| n.to_str());
    name.map(str::to_owned).ok_or_else(|| ImageError::BadSpec(format!("{} has no usable file name", path.display())))
}

/// The five layers' contents, in [`LAYERS`] order.
fn trees(spec: &ImageSpec, libraries: &[Library], ort_name: &str) -> Vec<Tree> {
    let mut base = Tree::default();
    base.file("etc/passwd", Content::Bytes(PASSWD.into()), Some(0o644));
    base.file("etc/group", Content::Bytes(GROUP.into()), Some(0o644));
    base.dir("tmp", 0o1777);
    let mut libs = Tree::default();
    for library in libraries {
        match library {
            Library::File { source, path } => {
                libs.file(relative(path), Content::Path(source.clone(), "shared library"), None)
            }
            Library::Symlink { path, target } => libs.symlink(relative(path), target),
        }
    }
    let mut ort = Tree::default();
    let ort_path = format!("{}/{ort_name}", spec::ORT_DIR);
    ort.file(relative(&ort_path), Content::Path(spec.onnxruntime.clone(), "ONNX Runtime library"), None);
    let mut server = Tree::default();
    server.file(relative(spec::SERVE_PATH), Content::Path(spec.serve_binary.clone(), "serve binary"), Some(0o755));
    let mut model = Tree::default();
    model.file(relative(spec::MODEL_PATH), Content::Path(spec.model.clone(), "model"), Some(0o644));
    vec![base, libs, ort, server, model]
}

const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\nslipway:x:10001:10001:slipway:/nonexistent:/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nslipway:x:10001:\n";

fn relative(path: &str) -> &str {
    path.trim_start_matches('/')
}

/// Compresses the layers at the same time: the ONNX Runtime layer alone takes seconds.
fn write_layers(trees: &[Tree], mtime: u64, blobs: &Blobs) -> Result<Vec<LayerBlob>, ImageError> {
    std::thread::scope(|s| {
        let handles: Vec<_> = trees.iter().map(|t| s.spawn(move || layer::write(t, mtime, blobs))).collect();
        handles.into_iter().map(|h| h.join().expect("a layer writer panicked")).collect()
    })
}

fn image_config(spec: &ImageSpec, ort_name: &str, layers: &[LayerBlob]) -> ImageConfig {
    let created = rfc3339(spec.source_date_epoch);
    let mut labels = spec.labels.clone();
    labels.entry(spec::LABEL_CREATED.into()).or_insert_with(|| created.clone());
    let mut env = vec![
        format!("ORT_DYLIB_PATH={}/{ort_name}", spec::ORT_DIR),
        "PATH=/usr/local/bin:/usr/bin:/bin".into(),
        format!("SLIPWAY_LISTEN={}", spec::LISTEN),
        format!("SLIPWAY_MODEL={}", spec::MODEL_PATH),
    ];
    env.sort();
    let config = RunConfig {
        user: format!("{}:{}", spec::UID, spec::UID),
        exposed_ports: BTreeMap::from([("8080/tcp".into(), oci::Empty {})]),
        env,
        entrypoint: vec![spec::SERVE_PATH.into()],
        working_dir: "/".into(),
        labels,
    };
    let history = LAYERS.iter().map(|(_, by)| History { created: created.clone(), created_by: (*by).into() }).collect();
    let rootfs = RootFs { kind: "layers".into(), diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect() };
    ImageConfig { created, architecture: "amd64".into(), os: "linux".into(), config, rootfs, history }
}

fn image_manifest(config: Descriptor, layers: Vec<Descriptor>) -> Manifest {
    Manifest {
        schema_version: 2,
        media_type: oci::MANIFEST.into(),
        artifact_type: None,
        config,
        layers,
        subject: None,
        annotations: BTreeMap::new(),
    }
}

/// Stores the SBOM as an OCI artifact whose `subject` is the image, and returns its index entry
/// and the SBOM's size. Registries with the referrers API list it under the image; `push` also
/// tags it `sha256-<hex>.sbom` for those without.
fn attach_sbom(blobs: &Blobs, sbom: &[u8], image: &Descriptor, epoch: i64) -> Result<(Descriptor, u64), ImageError> {
    let mut layer = blobs.put(oci::CYCLONEDX, sbom)?;
    layer.annotations.insert("org.opencontainers.image.title".into(), "sbom.cdx.json".into());
    let mut manifest = image_manifest(blobs.put(oci::EMPTY, b"{}")?, vec![layer]);
    manifest.artifact_type = Some(oci::CYCLONEDX.into());
    manifest.subject = Some(Descriptor::new(oci::MANIFEST, image.digest.clone(), image.size));
    manifest.annotations.insert(spec::LABEL_CREATED.into(), rfc3339(epoch));
    let mut entry = blobs.put(oci::MANIFEST, &to_json(&manifest))?;
    entry.artifact_type = Some(oci::CYCLONEDX.into());
    Ok((entry, sbom.len() as u64))
}

fn docker_manifest(spec: &ImageSpec, config: &Descriptor, layers: &[Descriptor]) -> DockerManifest {
    let blob = |d: &Descriptor| format!("blobs/sha256/{}", crate::digest::hex_of(&d.digest));
    DockerManifest {
        config: blob(config),
        repo_tags: spec.tags.iter().map(|t| format!("{}:{t}", spec.repository)).collect(),
        layers: layers.iter().map(blob).collect(),
    }
}

fn info(name: &'static str, layer: &LayerBlob) -> LayerInfo {
    LayerInfo { name, digest: layer.digest.clone(), diff_id: layer.diff_id.clone(), size: layer.size }
}

fn fresh_dir(dir: &Path) -> Result<(), ImageError> {
    let out = |source| ImageError::Output { path: dir.to_path_buf(), source };
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(out)?;
    }
    fs::create_dir_all(dir).map_err(out)
}

/// Swaps the finished layout in, so a reader never sees a half-written one.
fn replace_dir(from: &Path, to: &Path) -> Result<(), ImageError> {
    let out = |source| ImageError::Output { path: to.to_path_buf(), source };
    if to.exists() {
        fs::remove_dir_all(to).map_err(out)?;
    }
    fs::rename(from, to).map_err(out)
}
