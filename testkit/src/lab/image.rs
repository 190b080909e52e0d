//! A real OCI image of the lab's busybox rootfs, for containers that must
//! look like Kubernetes ones to containerd: with an image name and a
//! content digest in its image store, a snapshot of their own from its
//! snapshotter. `ctr run --rootfs` records neither.
//!
//! The archive is built by hand (uncompressed layer tar from the system
//! `tar`, digests from `sha256sum`) and imported once per lab, on first use,
//! into the lab's namespace; containerd verifies every digest on the way in.
//! Content and snapshots live under the lab's root dir, so they go with it.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use super::rootfs::build_rootfs;
use super::{CONTAINER_PATH, Lab, LabError, Shared, checked, io_err, run_with_timeout, search_path};

/// The name lab containers in image mode are created from.
pub const IMAGE_REF: &str = "docker.io/tracelake/lab-busybox:1";
const IMPORT_TIMEOUT: Duration = Duration::from_secs(120);

/// The lab's image as imported, with the digests the lab computed itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabImage {
    /// Image name in containerd's store, e.g. `docker.io/tracelake/lab-busybox:1`.
    pub reference: String,
    /// Digest of the image manifest (`sha256:...`): the image's target in containerd.
    pub digest: String,
    /// Digest of the image config.
    pub config_digest: String,
    /// Digest of the one (uncompressed) layer, equal to its diff id.
    pub layer_digest: String,
}

impl Lab {
    /// The lab's busybox image, imported into its containerd on the first call.
    pub fn image(&self) -> Result<Arc<LabImage>, LabError> {
        lab_image(&self.shared)
    }
}

pub(super) fn lab_image(s: &Shared) -> Result<Arc<LabImage>, LabError> {
    // Held across the import: concurrent first users wait for one import.
    let mut slot = s.image.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(image) = slot.as_ref() {
        return Ok(Arc::clone(image));
    }
    let image = Arc::new(import(s)?);
    *slot = Some(Arc::clone(&image));
    Ok(image)
}

fn import(s: &Shared) -> Result<LabImage, LabError> {
    let dir = s.dir.join("image");
    let (staging, layout) = (dir.join("rootfs"), dir.join("layout"));
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(io_err(format!("creating {}", blobs.display())))?;
    build_rootfs(s, &staging, "lab-image")?;

    let layer = dir.join("layer.tar");
    let mut tar = tar_cmd(&staging, &layer);
    let mut entries: Vec<_> = fs::read_dir(&staging)
        .map_err(io_err(format!("listing {}", staging.display())))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_err(format!("listing {}", staging.display())))?;
    entries.sort();
    tar.args(&entries);
    checked(run_with_timeout(tar, IMPORT_TIMEOUT)?, "tar (image layer)")?;
    let layer_blob = add_blob(&blobs, &layer)?;

    let arch = oci_arch();
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","config":{{"Env":["{CONTAINER_PATH}"],"Cmd":["sh"],"WorkingDir":"/"}},"rootfs":{{"type":"layers","diff_ids":["{}"]}},"history":[{{"created_by":"tracelake testkit lab"}}]}}"#,
        layer_blob.0
    );
    let config_blob = write_blob(&blobs, &dir.join("config.json"), &config)?;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
        config_blob.0, config_blob.1, layer_blob.0, layer_blob.1
    );
    let manifest_blob = write_blob(&blobs, &dir.join("manifest.json"), &manifest)?;
    let tag = IMAGE_REF.rsplit_once(':').map_or("latest", |(_, t)| t);
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"platform":{{"architecture":"{arch}","os":"linux"}},"annotations":{{"io.containerd.image.name":"{IMAGE_REF}","org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#,
        manifest_blob.0, manifest_blob.1
    );
    let write = |name: &str, body: &str| fs::write(layout.join(name), body).map_err(io_err(format!("writing {name}")));
    write("index.json", &index)?;
    write("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#)?;

    let archive = dir.join("image.tar");
    let mut tar = tar_cmd(&layout, &archive);
    tar.args(["oci-layout", "index.json", "blobs"]);
    checked(run_with_timeout(tar, IMPORT_TIMEOUT)?, "tar (image archive)")?;
    // Unpacks for the host platform into the default (overlayfs) snapshotter, which `ctr run` uses too.
    let mut cmd = s.ctr();
    cmd.args(["images", "import"]).arg(&archive);
    checked(run_with_timeout(cmd, IMPORT_TIMEOUT)?, &format!("ctr images import {}", archive.display()))?;
    // containerd holds its own copy now.
    let _ = fs::remove_dir_all(&staging);
    let _ = fs::remove_dir_all(&layout);
    let _ = fs::remove_file(&archive);
    Ok(LabImage {
        reference: IMAGE_REF.to_string(),
        digest: manifest_blob.0,
        config_digest: config_blob.0,
        layer_digest: layer_blob.0,
    })
}

/// Root-owned entries with numeric ids, sorted: the layer does not depend on
/// the host's user database or directory order.
pub(crate) fn tar_cmd(dir: &Path, out: &Path) -> Command {
    let mut tar = Command::new("tar");
    tar.env("PATH", search_path()).args(["--numeric-owner", "--owner=0", "--group=0", "--sort=name", "-C"]);
    tar.arg(dir).arg("-cf").arg(out);
    tar
}

pub(crate) fn write_blob(blobs: &Path, tmp: &Path, body: &str) -> Result<(String, u64), LabError> {
    fs::write(tmp, body).map_err(io_err(format!("writing {}", tmp.display())))?;
    add_blob(blobs, tmp)
}

/// Moves `file` into the blob store under its digest; returns digest and size.
pub(crate) fn add_blob(blobs: &Path, file: &Path) -> Result<(String, u64), LabError> {
    let mut cmd = Command::new("sha256sum");
    cmd.env("PATH", search_path()).arg(file);
    let out = checked(run_with_timeout(cmd, IMPORT_TIMEOUT)?, &format!("sha256sum {}", file.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.split_whitespace().next().filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    let hex = hex.ok_or_else(|| io_err("sha256sum output")(std::io::Error::other(text.to_string())))?.to_string();
    let size = fs::metadata(file).map_err(io_err(format!("stat {}", file.display())))?.len();
    fs::rename(file, blobs.join(&hex)).map_err(io_err(format!("moving {} into the blob store", file.display())))?;
    Ok((format!("sha256:{hex}"), size))
}

/// GOARCH spelling, as image configs and containerd's platform matcher use it.
pub(crate) fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}
