//! The appengine-lite Docker image, built with no registry:
//!
//! 1. a Debian minbase rootfs with LXC, squashfs-tools, D-Bus, busybox and
//!    netcat ([`crate::debian::minbase`], cached), imported as
//!    `pv-appengine-lite-base:<sha of the tarball>` (`docker import`);
//! 2. a layer adding our static `pv-appengine`, `pvcontrol` and
//!    `pv-xconnect` at `/usr/bin`, tagged `pv-appengine-lite:<hash of all
//!    inputs>`; rebuilt only when one of them changes.
//!
//! `PV_APPENGINE_IMAGE` (an image already loaded) or `PV_APPENGINE_TAR` (a
//! `docker save` tarball such as Yocto's `pantavisor-appengine-docker.tar`)
//! select a real Pantavisor image instead ([`ImageSource`]); see
//! [`AppengineImage`].
//!
//! Images are built or loaded here with bollard; nothing is ever pulled
//! (these hosts reach no registry).

use std::path::Path;

use anyhow::{bail, Context, Result};
use bollard::query_parameters::{BuildImageOptionsBuilder, CreateImageOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::config::{Config, ImageSource};
use crate::util::{self, Step};
use crate::{binaries, debian, docker};

/// Debian packages of the appengine-lite image.
pub const PACKAGES: &[&str] = &[
    "lxc",
    "squashfs-tools",
    "dbus",
    "dbus-bin",
    "busybox",
    "netcat-openbsd",
];

/// Our binaries that go to `/usr/bin` in the image.
pub const IMAGE_BINARIES: &[&str] = &["pv-appengine", "pvcontrol", "pv-xconnect"];

/// The two kinds of appengine the harness knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// appengine-lite, our imitation, built from this workspace.
    Lite,
    /// A real Pantavisor appengine image (Yocto-built or built from
    /// upstream source): our pv-xconnect replaces the image's before boot.
    Real,
}

/// Which appengine the harness boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppengineImage {
    pub reference: String,
    pub kind: ImageKind,
}

impl AppengineImage {
    /// A real Pantavisor image (not appengine-lite).
    pub fn is_real(&self) -> bool {
        self.kind == ImageKind::Real
    }
}

/// Prepares the image the configuration names: checks a loaded one is
/// there, loads a tarball, or builds appengine-lite if needed. The static
/// binaries are built in every case (our pv-xconnect goes into any image).
pub async fn ensure(config: &Config, docker: &Docker) -> Result<AppengineImage> {
    let kind = config.appengine.kind();
    let reference = match &config.appengine {
        ImageSource::Loaded(r) => {
            if !docker::image_exists(docker, r).await {
                bail!("PV_APPENGINE_IMAGE={r} is not loaded in the engine (docker load < ...tar)");
            }
            binaries::build(config)?;
            r.clone()
        }
        ImageSource::Tar(t) => {
            binaries::build(config)?;
            load_tar(docker, t).await?
        }
        ImageSource::Lite => appengine_lite(config, docker).await?,
    };
    Ok(AppengineImage { reference, kind })
}

/// Builds (or finds) the appengine-lite image; returns its reference.
pub async fn appengine_lite(config: &Config, docker: &Docker) -> Result<String> {
    let bins = binaries::build(config)?;
    let mut missing = Vec::new();
    let mut inputs = Sha256::new();
    let owned = config.clone();
    let base = tokio::task::spawn_blocking(move || debian::minbase(&owned, PACKAGES)).await??;
    let base_ref = format!("pv-appengine-lite-base:{}", &base.sha256[..16]);
    inputs.update(base.sha256.as_bytes());
    inputs.update(DOCKERFILE_TAIL.as_bytes());
    for b in IMAGE_BINARIES {
        let p = bins.join(b);
        if !p.is_file() {
            missing.push(*b);
            continue;
        }
        inputs.update(b.as_bytes());
        inputs.update(util::sha256_file(&p)?.as_bytes());
    }
    if !missing.is_empty() {
        bail!("static binaries missing after the build: {missing:?} (in {bins:?})");
    }
    let tag = hex::encode(inputs.finalize())[..16].to_string();
    let reference = format!("pv-appengine-lite:{tag}");
    if docker::image_exists(docker, &reference).await {
        util::note(format!("image {reference} is up to date"));
        return Ok(reference);
    }
    if !docker::image_exists(docker, &base_ref).await {
        import_base(docker, &base, &base_ref).await?;
    }
    let step = Step::start(format!("building image {reference}"));
    let context = build_context(&base_ref, &bins)?;
    let opts = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(&reference)
        .rm(true)
        .build();
    let mut s = docker.build_image(opts, None, Some(bollard::body_full(context.into())));
    while let Some(item) = s.next().await {
        let info = item.context("docker build")?;
        if let Some(e) = info.error_detail.and_then(|d| d.message) {
            bail!("docker build of {reference}: {e}");
        }
    }
    // A stable name for people looking around (`docker run ... :latest`).
    let _ = docker
        .tag_image(
            &reference,
            Some(
                bollard::query_parameters::TagImageOptionsBuilder::default()
                    .repo("pv-appengine-lite")
                    .tag("latest")
                    .build(),
            ),
        )
        .await;
    step.done("");
    Ok(reference)
}

const DOCKERFILE_TAIL: &str = "COPY rootfs/ /\nCMD [\"sleep\", \"infinity\"]\n";

fn build_context(base_ref: &str, bins: &Path) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let dockerfile = format!("FROM {base_ref}\n{DOCKERFILE_TAIL}");
    let mut h = tar::Header::new_gnu();
    h.set_size(dockerfile.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "Dockerfile", dockerfile.as_bytes())?;
    for d in [
        "rootfs/usr/lib/pantavisor/pvtx.d",
        "rootfs/var/pantavisor/storage",
        "rootfs/volumes",
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, format!("{d}/"), std::io::empty())?;
    }
    for name in IMAGE_BINARIES {
        let data = std::fs::read(bins.join(name)).with_context(|| format!("read {name}"))?;
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        b.append_data(&mut h, format!("rootfs/usr/bin/{name}"), &data[..])?;
    }
    Ok(b.into_inner()?)
}

async fn import_base(docker: &Docker, base: &debian::Tarball, reference: &str) -> Result<()> {
    let step = Step::start(format!("docker import {reference}"));
    let (repo, tag) = reference.split_once(':').unwrap_or((reference, "latest"));
    let data = tokio::fs::read(&base.path).await?;
    let opts = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(repo)
        .tag(tag)
        .build();
    let mut s = docker.create_image(Some(opts), Some(bollard::body_full(data.into())), None);
    while let Some(item) = s.next().await {
        item.with_context(|| format!("docker import {reference}"))?;
    }
    if !docker::image_exists(docker, reference).await {
        bail!("docker import reported success but {reference} does not exist");
    }
    step.done("");
    Ok(())
}

/// `docker load` of a saved image; returns the first tag it carries.
async fn load_tar(docker: &Docker, path: &Path) -> Result<String> {
    let step = Step::start(format!("docker load {path:?}"));
    let data = tokio::fs::read(path)
        .await
        .with_context(|| format!("PV_APPENGINE_TAR={path:?}"))?;
    let mut s = docker.import_image(
        bollard::query_parameters::ImportImageOptionsBuilder::default().build(),
        bollard::body_full(data.into()),
        None,
    );
    let mut loaded = None;
    while let Some(item) = s.next().await {
        let info = item.context("docker load")?;
        if let Some(tag) = info
            .stream
            .as_deref()
            .and_then(|l| l.trim().strip_prefix("Loaded image: "))
        {
            loaded.get_or_insert_with(|| tag.to_string());
        }
    }
    step.done("");
    loaded.with_context(|| format!("{path:?} loaded no tagged image"))
}
