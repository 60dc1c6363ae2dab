//! Image stage: a recipe (`images/NAME.toml`) in, a cached base image out, plus a
//! per-run qcow2 overlay on it. The cache is keyed by a hash of the recipe and
//! everything it copies, so a changed recipe rebuilds and an unchanged one is
//! reused at once. The base is never written: every run gets its own overlay.

use crate::progress::Progress;
use include_dir::{include_dir, Dir};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

static EMBEDDED: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../images");

/// Bumped when the way images are built changes, so that old cache entries are not reused.
const BUILDER_VERSION: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("no image recipe named {name:?}; known: {known}. Recipes live in images/NAME.toml")]
    UnknownImage { name: String, known: String },
    #[error("{path}: {message}")]
    BadRecipe { path: String, message: String },
    #[error("{step} failed: {detail}\n  fix: {fix}")]
    Tool { step: String, detail: String, fix: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("downloading {url}: {message}")]
    Download { url: String, message: String },
    #[error("{file}: checksum mismatch: expected sha256 {expected}, found {found}. The download is corrupt or the recipe's sums are stale; it was removed and nothing was cached")]
    Checksum { file: String, expected: String, found: String },
}

impl ImageError {
    /// The recipe or its name is wrong (exit 2); everything else is the machine's.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, ImageError::UnknownImage { .. } | ImageError::BadRecipe { .. })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io { path: path.into(), source }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecipeFile {
    #[serde(default)]
    pub description: String,
    pub build: BuildSpec,
    pub boot: BootSpec,
}

/// A recipe as written: `[build] kind = "extends"` names another recipe whose build
/// it continues, and may leave out `[boot]` to boot as that one does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeText {
    #[serde(default)]
    description: String,
    build: BuildText,
    boot: Option<BootSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum BuildText {
    Extends(Extends),
    Own(BuildSpec),
}

/// Another debootstrap recipe's build, then more commands in the same chroot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Extends {
    extends: String,
    /// Copied over the base's overlay, before any command runs.
    overlay: Option<String>,
    commands: Vec<String>,
    disk_gib: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BuildSpec {
    Debootstrap {
        suite: String,
        mirror: String,
        #[serde(default = "minbase")]
        variant: String,
        packages: Vec<String>,
        #[serde(default)]
        overlay: Option<String>,
        /// A second overlay, copied after the first (an extending recipe's own).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extra_overlay: Option<String>,
        #[serde(default)]
        commands: Vec<String>,
        disk_gib: u32,
    },
    Download {
        url: String,
        sha256sums: String,
        disk_gib: u32,
    },
}

fn minbase() -> String {
    "minbase".into()
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BootMethod {
    /// QEMU loads the kernel (and initrd) beside the disk.
    Direct,
    /// The image's own bootloader, through the firmware.
    Firmware,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DiskBus {
    Nvme,
    Virtio,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BootSpec {
    pub method: BootMethod,
    pub disk_bus: DiskBus,
    #[serde(default)]
    pub initrd: bool,
    #[serde(default)]
    pub cmdline: String,
    /// How to boot a VM whose state is to be saved (warm runs): QEMU migrates only
    /// some devices (NVMe it cannot), so such a VM may need another disk bus, and
    /// with it the initrd. No `[boot.warm]`: every run of this image is cold.
    #[serde(default)]
    pub warm: Option<WarmBoot>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WarmBoot {
    pub disk_bus: DiskBus,
    #[serde(default)]
    pub initrd: bool,
    pub cmdline: String,
}

/// A recipe with its name, where it came from, and its content hash.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub name: String,
    pub file: RecipeFile,
    /// Where the recipe and its overlay are read from (None: embedded in the binary).
    pub dir: Option<PathBuf>,
    pub hash: String,
}

impl Recipe {
    /// Built with debootstrap on this machine (else downloaded).
    pub fn needs_debootstrap(&self) -> bool {
        matches!(self.file.build, BuildSpec::Debootstrap { .. })
    }
}

/// A built base image in the cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Image {
    pub name: String,
    pub hash: String,
    pub dir: PathBuf,
    pub disk: PathBuf,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub boot: BootSpec,
    pub disk_gib: u32,
    pub built_at: u64,
    pub build_seconds: f64,
}

pub fn cache_root() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    base.join("devstack-harness")
}

/// The recipes directory: `--images DIR`, else `images/` of the current directory,
/// else the recipes embedded in the binary.
pub fn recipes_dir(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(d) => Some(d.into()),
        None => Some(PathBuf::from("images")).filter(|d| d.join("debian-12.toml").exists()),
    }
}

fn read_text(dir: Option<&Path>, rel: &str) -> Option<Vec<u8>> {
    match dir {
        Some(d) => std::fs::read(d.join(rel)).ok(),
        None => EMBEDDED.get_file(rel).map(|f| f.contents().to_vec()),
    }
}

/// Every file under an overlay directory, as (relative path, contents), sorted.
fn overlay_files(dir: Option<&Path>, overlay: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    match dir {
        Some(d) => {
            fn walk(base: &Path, cur: &Path, out: &mut Vec<(String, Vec<u8>)>) {
                let Ok(entries) = std::fs::read_dir(cur) else { return };
                for e in entries.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        walk(base, &p, out);
                    } else if let (Ok(rel), Ok(data)) = (p.strip_prefix(base), std::fs::read(&p)) {
                        out.push((rel.to_string_lossy().into_owned(), data));
                    }
                }
            }
            let base = d.join(overlay);
            walk(&base, &base, &mut out);
        }
        None => {
            fn walk(dir: &Dir<'_>, prefix: &str, out: &mut Vec<(String, Vec<u8>)>) {
                for f in dir.files() {
                    let rel = f.path().to_string_lossy();
                    out.push((rel.strip_prefix(prefix).unwrap_or(&rel).trim_start_matches('/').to_owned(), f.contents().to_vec()));
                }
                for d in dir.dirs() {
                    walk(d, prefix, out);
                }
            }
            if let Some(d) = EMBEDDED.get_dir(overlay) {
                walk(d, overlay, &mut out);
            }
        }
    }
    out.sort();
    out
}

pub fn known_recipes(dir: Option<&Path>) -> Vec<String> {
    let mut names: Vec<String> = match dir {
        Some(d) => std::fs::read_dir(d)
            .map(|r| r.flatten().filter_map(|e| e.file_name().to_str()?.strip_suffix(".toml").map(str::to_owned)).collect())
            .unwrap_or_default(),
        None => EMBEDDED.files().filter_map(|f| f.path().to_str()?.strip_suffix(".toml").map(str::to_owned)).collect(),
    };
    names.sort();
    names
}

pub fn load_recipe(dir: Option<&Path>, name: &str) -> Result<Recipe, ImageError> {
    let file = load_file(dir, name, 0)?;
    // The key covers what goes into the disk (the build section and the overlay),
    // not how it is booted: changing a kernel argument must not rebuild the image.
    let mut h = Sha256::new();
    h.update(BUILDER_VERSION.as_bytes());
    h.update(toml::to_string(&file.build).expect("serializable").as_bytes());
    if let BuildSpec::Debootstrap { overlay, extra_overlay, .. } = &file.build {
        for o in overlay.iter().chain(extra_overlay) {
            for (rel, data) in overlay_files(dir, o) {
                h.update(rel.as_bytes());
                h.update(&data);
            }
        }
    }
    let hash = hex::encode(h.finalize())[..16].to_owned();
    Ok(Recipe { name: name.into(), file, dir: dir.map(Into::into), hash })
}

/// Read a recipe and resolve what it extends into one debootstrap build.
fn load_file(dir: Option<&Path>, name: &str, depth: usize) -> Result<RecipeFile, ImageError> {
    let rel = format!("{name}.toml");
    let display = dir.map(|d| d.join(&rel).display().to_string()).unwrap_or_else(|| format!("(embedded) images/{rel}"));
    let bytes = read_text(dir, &rel).ok_or_else(|| ImageError::UnknownImage { name: name.into(), known: known_recipes(dir).join(", ") })?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let raw: RecipeText = toml::from_str(&text).map_err(|e| {
        let (line, col) = e.span().map(|s| line_col(&text, s.start)).unwrap_or((1, 1));
        ImageError::BadRecipe { path: format!("{display}:{line}:{col}"), message: e.message().to_owned() }
    })?;
    let bad = |message: String| ImageError::BadRecipe { path: display.clone(), message };
    let (build, inherited_boot) = match raw.build {
        BuildText::Own(b) => (b, None),
        BuildText::Extends(x) => {
            if depth > 4 {
                return Err(bad(format!("extends {:?}: recipes extend each other in a circle", x.extends)));
            }
            let base = load_file(dir, &x.extends, depth + 1)?;
            let BuildSpec::Debootstrap { suite, mirror, variant, packages, overlay, extra_overlay: None, mut commands, disk_gib } =
                base.build
            else {
                return Err(bad(format!("extends {:?}, which is not built with debootstrap: only those can be extended", x.extends)));
            };
            commands.extend(x.commands);
            let disk_gib = x.disk_gib.unwrap_or(disk_gib);
            let extra_overlay = x.overlay;
            (BuildSpec::Debootstrap { suite, mirror, variant, packages, overlay, extra_overlay, commands, disk_gib }, Some(base.boot))
        }
    };
    let boot = raw.boot.or(inherited_boot).ok_or_else(|| bad("missing [boot]: how the image boots".into()))?;
    Ok(RecipeFile { description: raw.description, build, boot })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    (before.matches('\n').count() + 1, before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1)
}

impl Recipe {
    pub fn cache_dir(&self, root: &Path) -> PathBuf {
        root.join("images").join(format!("{}-{}", self.name, self.hash))
    }

    fn disk_gib(&self) -> u32 {
        match &self.file.build {
            BuildSpec::Debootstrap { disk_gib, .. } | BuildSpec::Download { disk_gib, .. } => *disk_gib,
        }
    }
}

/// The cached image for a recipe, if it was built, booted as the recipe says now.
pub fn cached(recipe: &Recipe, root: &Path) -> Option<Image> {
    let meta = recipe.cache_dir(root).join("image.json");
    let mut image: Image = serde_json::from_slice(&std::fs::read(meta).ok()?).ok()?;
    if recipe.file.boot.initrd && image.initrd.is_none() {
        return None; // the boot now wants an initrd that this build did not keep
    }
    if !recipe.file.boot.initrd {
        image.initrd = None;
    }
    image.boot = recipe.file.boot.clone();
    Some(image)
}

/// Every image in the cache.
pub fn list(root: &Path) -> Vec<Image> {
    let mut out: Vec<Image> = std::fs::read_dir(root.join("images"))
        .map(|r| r.flatten().filter_map(|e| serde_json::from_slice(&std::fs::read(e.path().join("image.json")).ok()?).ok()).collect())
        .unwrap_or_default();
    out.sort_by(|a, b| (&a.name, a.built_at).cmp(&(&b.name, b.built_at)));
    out
}

/// Remove cached images named `name` (every version).
pub fn remove(root: &Path, name: &str) -> Result<usize, ImageError> {
    let mut n = 0;
    for img in list(root).into_iter().filter(|i| i.name == name) {
        std::fs::remove_dir_all(&img.dir).map_err(io(&img.dir))?;
        n += 1;
    }
    Ok(n)
}

/// The cached image, building it first when the recipe changed or was never built.
pub fn ensure(recipe: &Recipe, root: &Path, progress: &Progress) -> Result<Image, ImageError> {
    if let Some(img) = cached(recipe, root) {
        return Ok(img);
    }
    build(recipe, root, progress)
}

/// Build into a temp directory beside the cache entry and rename it into place, so
/// that a killed build never leaves a half image that looks finished.
pub fn build(recipe: &Recipe, root: &Path, progress: &Progress) -> Result<Image, ImageError> {
    let images = root.join("images");
    std::fs::create_dir_all(&images).map_err(io(&images))?;
    let work = tempfile::Builder::new().prefix(&format!(".build-{}-", recipe.name)).tempdir_in(&images).map_err(io(&images))?;
    let started = std::time::Instant::now();
    // Outside the work directory, which goes on failure: the log stays where the
    // error says it is.
    let log = images.join(format!("{}-{}.build.log", recipe.name, recipe.hash));
    let (kernel, initrd) = match &recipe.file.build {
        BuildSpec::Debootstrap { .. } => build_debootstrap(recipe, work.path(), &log, progress)?,
        BuildSpec::Download { url, sha256sums, .. } => {
            download_verified(url, sha256sums, &work.path().join("disk.qcow2"), progress)?;
            (None, None)
        }
    };
    let dest = recipe.cache_dir(root);
    let image = Image {
        name: recipe.name.clone(),
        hash: recipe.hash.clone(),
        dir: dest.clone(),
        disk: dest.join("disk.qcow2"),
        kernel: kernel.map(|_| dest.join("vmlinuz")),
        initrd: initrd.map(|_| dest.join("initrd.img")),
        boot: recipe.file.boot.clone(),
        disk_gib: recipe.disk_gib(),
        built_at: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        build_seconds: started.elapsed().as_secs_f64(),
    };
    let meta = work.path().join("image.json");
    std::fs::write(&meta, serde_json::to_vec_pretty(&image).expect("serializable")).map_err(io(&meta))?;
    let _ = std::fs::rename(&log, work.path().join("build.log"));
    let _ = std::fs::remove_dir_all(&dest);
    let kept = work.keep();
    std::fs::rename(&kept, &dest).map_err(io(&dest))?;
    // Older builds of the same recipe are of no further use.
    for old in list(root).into_iter().filter(|i| i.name == image.name && i.hash != image.hash) {
        let _ = std::fs::remove_dir_all(&old.dir);
    }
    Ok(image)
}

fn run_tool(step: &str, fix: &str, cmd: &mut Command) -> Result<String, ImageError> {
    let out = cmd.output().map_err(|e| ImageError::Tool { step: step.into(), detail: format!("cannot start: {e}"), fix: fix.into() })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(ImageError::Tool { step: step.into(), detail: format!("{} ({})", tail.join("\n  "), out.status), fix: fix.into() });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Undo the mounts debootstrap makes inside the target, whatever happened.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        for sub in ["proc", "sys", "dev/pts", "dev"] {
            let p = self.0.join(sub);
            let _ = Command::new("umount").arg("-l").arg(&p).stderr(std::process::Stdio::null()).status();
        }
    }
}

/// Append a step's output to the build log.
fn log_step(log: &Path, step: &str, out: &[u8]) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
        let _ = writeln!(f, "=== {step}");
        let _ = f.write_all(out);
    }
}

fn build_debootstrap(recipe: &Recipe, work: &Path, log: &Path, progress: &Progress) -> Result<(Option<()>, Option<()>), ImageError> {
    let BuildSpec::Debootstrap { suite, mirror, variant, packages, overlay, extra_overlay, commands, disk_gib } = &recipe.file.build else {
        unreachable!("called for debootstrap recipes only")
    };
    if !nix::unistd::geteuid().is_root() {
        return Err(ImageError::Tool {
            step: "debootstrap".into(),
            detail: "building an image needs root (debootstrap, chroot)".into(),
            fix: "run as root, e.g. sudo harness image build".into(),
        });
    }
    let rootfs = work.join("rootfs");
    let _unmount = Unmount(rootfs.clone());
    progress.phase(&format!("image {}: debootstrap {suite} from {mirror}", recipe.name));
    let mut child = Command::new("debootstrap")
        .arg(format!("--variant={variant}"))
        .arg(format!("--include={}", packages.join(",")))
        .arg(suite)
        .arg(&rootfs)
        .arg(mirror)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| ImageError::Tool {
            step: "debootstrap".into(),
            detail: format!("cannot start: {e}"),
            fix: "apt-get install debootstrap".into(),
        })?;
    // Show debootstrap's own "I: ..." lines as the progress message.
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut { stderr }, &mut s);
        s
    });
    let mut last = Vec::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
        progress.message(&line);
        last.push(line);
        if last.len() > 10 {
            last.remove(0);
        }
    }
    let status = child.wait().map_err(io(&rootfs))?;
    let stderr = err_thread.join().unwrap_or_default();
    let _ = std::fs::remove_file(log);
    log_step(log, "debootstrap", std::fs::read(rootfs.join("debootstrap/debootstrap.log")).unwrap_or_default().as_slice());
    log_step(log, "debootstrap (stderr)", stderr.as_bytes());
    if !status.success() {
        return Err(ImageError::Tool {
            step: "debootstrap".into(),
            detail: format!("{}\n  {}\n  (whole log: {})", status, last.join("\n  ") + &stderr, log.display()),
            fix: "check that the mirror is reachable and every package exists in the suite; rerun `harness image build`".into(),
        });
    }
    drop(_unmount);

    for o in overlay.iter().chain(extra_overlay) {
        progress.phase(&format!("image {}: copying {o}", recipe.name));
        for (rel, data) in overlay_files(recipe.dir.as_deref(), o) {
            let dest = rootfs.join(&rel);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            std::fs::write(&dest, data).map_err(io(&dest))?;
        }
    }
    for c in commands {
        progress.message(&format!("chroot: {c}"));
        // In its own PID and mount namespaces, with its own /proc: whatever a
        // package's scripts start (a database, epmd) ends with the command, and no
        // mount outlives it.
        let step = format!("chroot command `{c}`");
        let out = Command::new("unshare")
            .args(["--fork", "--pid", "--mount", "--kill-child"])
            .arg(format!("--mount-proc={}", rootfs.join("proc").display()))
            .arg("chroot")
            .arg(&rootfs)
            .args(["/bin/sh", "-c", &format!("exec 2>&1; {c}")])
            .output()
            .map_err(|e| ImageError::Tool {
                step: step.clone(),
                detail: format!("cannot start unshare: {e}"),
                fix: "apt-get install util-linux".into(),
            })?;
        log_step(log, &step, &out.stdout);
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            let tail: Vec<&str> = text.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev().collect();
            return Err(ImageError::Tool {
                step,
                detail: format!("{} ({})\n  (whole log: {})", tail.join("\n  "), out.status, log.display()),
                fix: "fix the command in the image recipe".into(),
            });
        }
    }

    // The kernel and initrd go beside the disk, for direct kernel boot.
    let boot = rootfs.join("boot");
    let find = |prefix: &str| -> Option<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&boot)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
            .collect();
        v.sort();
        v.pop()
    };
    let kernel = find("vmlinuz-").ok_or_else(|| ImageError::Tool {
        step: "kernel".into(),
        detail: format!("no vmlinuz-* in {}", boot.display()),
        fix: "add a kernel package (linux-image-cloud-amd64) to the recipe's packages".into(),
    })?;
    std::fs::copy(&kernel, work.join("vmlinuz")).map_err(io(&kernel))?;
    // Kept even when the boot does not use it, so that switching costs no rebuild.
    let initrd = match find("initrd.img-") {
        Some(i) => {
            std::fs::copy(&i, work.join("initrd.img")).map_err(io(&i))?;
            Some(())
        }
        None => None,
    };

    progress.phase(&format!("image {}: making the ext4 disk ({disk_gib} GiB, sparse)", recipe.name));
    let raw = work.join("disk.raw");
    let f = std::fs::File::create(&raw).map_err(io(&raw))?;
    f.set_len(u64::from(*disk_gib) << 30).map_err(io(&raw))?;
    drop(f);
    run_tool(
        "mkfs.ext4",
        "apt-get install e2fsprogs",
        Command::new("mkfs.ext4").args(["-q", "-F", "-L", "root", "-d"]).arg(&rootfs).arg(&raw),
    )?;
    run_tool(
        "qemu-img convert",
        "apt-get install qemu-utils",
        Command::new("qemu-img").args(["convert", "-O", "qcow2"]).arg(&raw).arg(work.join("disk.qcow2")),
    )?;
    std::fs::remove_file(&raw).map_err(io(&raw))?;
    std::fs::remove_dir_all(&rootfs).map_err(io(&rootfs))?;
    Ok((Some(()), initrd))
}

/// Download `url` and check it against the line for its file name in `sums_url`.
fn download_verified(url: &str, sums_url: &str, dest: &Path, progress: &Progress) -> Result<(), ImageError> {
    let file_name = url.rsplit('/').next().unwrap_or(url).to_owned();
    progress.phase(&format!("downloading {sums_url}"));
    let sums = ureq::get(sums_url)
        .call()
        .map_err(|e| ImageError::Download { url: sums_url.into(), message: e.to_string() })?
        .into_string()
        .map_err(|e| ImageError::Download { url: sums_url.into(), message: e.to_string() })?;
    let expected = sums
        .lines()
        .find_map(|l| {
            let (sum, name) = l.split_once(char::is_whitespace)?;
            (name.trim().trim_start_matches('*') == file_name).then(|| sum.to_lowercase())
        })
        .ok_or_else(|| ImageError::Download { url: sums_url.into(), message: format!("no checksum for {file_name}") })?;
    progress.phase(&format!("downloading {url}"));
    let resp = ureq::get(url).call().map_err(|e| ImageError::Download { url: url.into(), message: e.to_string() })?;
    let total: Option<u64> = resp.header("content-length").and_then(|v| v.parse().ok());
    let mut reader = resp.into_reader();
    let mut out = std::fs::File::create(dest).map_err(io(dest))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done: u64 = 0;
    loop {
        let n = std::io::Read::read(&mut reader, &mut buf).map_err(|e| ImageError::Download { url: url.into(), message: e.to_string() })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        std::io::Write::write_all(&mut out, &buf[..n]).map_err(io(dest))?;
        done += n as u64;
        progress.bytes(done, total);
    }
    verify_sha256(&file_name, &expected, &hex::encode(hasher.finalize()), dest)
}

/// Compare a checksum; on mismatch the file is removed so that nothing corrupt is cached.
pub fn verify_sha256(file: &str, expected: &str, found: &str, path: &Path) -> Result<(), ImageError> {
    if expected.eq_ignore_ascii_case(found) {
        return Ok(());
    }
    let _ = std::fs::remove_file(path);
    Err(ImageError::Checksum { file: file.into(), expected: expected.into(), found: found.into() })
}

/// A per-run copy-on-write overlay on the base image; the base is never written.
/// Its virtual size is the larger of the image's and `min_gib` (cloud-init's
/// growpart, where the image runs it, grows the root filesystem to match).
pub fn overlay(image: &Image, dest: &Path, min_gib: u32) -> Result<(), ImageError> {
    run_tool(
        "qemu-img create (overlay)",
        "apt-get install qemu-utils",
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(&image.disk)
            .arg(dest)
            .arg(format!("{}G", image.disk_gib.max(min_gib))),
    )?;
    Ok(())
}

/// A run's overlay on a saved disk (a prepared state's), which stays as it is.
pub fn overlay_on(backing: &Path, dest: &Path) -> Result<(), ImageError> {
    run_tool(
        "qemu-img create (overlay on a saved disk)",
        "apt-get install qemu-utils",
        Command::new("qemu-img").args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"]).arg(backing).arg(dest),
    )?;
    Ok(())
}
