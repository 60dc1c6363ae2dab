//! Render stage: a [`Plan`] in, the files a run needs out: cloud-init's
//! `user-data`, `meta-data` and `network-config`, the host recipe and the DevStack
//! `local.conf`. Templates are tera files under `harness/templates/`, embedded in
//! the binary; a directory given with `--templates` overrides any of them.

use crate::keys::RunKeys;
use crate::scenario::Plan;
use include_dir::{include_dir, Dir};
use serde::Serialize;
use std::path::{Path, PathBuf};

static EMBEDDED: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// Template names, relative to the templates directory.
pub const USER_DATA: &str = "cloud-init/user-data.yaml";
pub const META_DATA: &str = "cloud-init/meta-data.yaml";
pub const NETWORK_CONFIG: &str = "cloud-init/network-config.yaml";
pub const HOST_RECIPE: &str = "host-recipe.sh";
pub const FAULTS: &str = "faults.sh";
pub const LOCAL_CONF: &str = "local.conf";
pub const REPLICA: &str = "replica.sh";
pub const DEVSTACK: &str = "devstack.sh";
pub const NEUTRON: &str = "neutron.sh";
pub const NEUTRON_HOST2: &str = "neutron/ml2_conf-host2.ini";
/// DevStack's host steps, included by the replica's and the neutron cloud's scripts.
const HOST_STEPS: &str = "devstack-host-steps.sh";
const ALL: &[&str] =
    &[USER_DATA, META_DATA, NETWORK_CONFIG, HOST_RECIPE, FAULTS, LOCAL_CONF, HOST_STEPS, REPLICA, DEVSTACK, NEUTRON, NEUTRON_HOST2];

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{path}: cannot read template: {source}")]
    ReadTemplate { path: PathBuf, source: std::io::Error },
    #[error("template {name}: {message}")]
    Template { name: String, message: String },
    #[error("{path}: cannot write: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

impl RenderError {
    /// A template that cannot be read or rendered is bad input; writing is the machine's.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, RenderError::Write { .. })
    }
}

/// The guest's two NICs. Fixed MACs are safe: each run's data NIC sits in its
/// own namespace and the management NIC is user-mode networking.
#[derive(Debug, Clone, Serialize)]
pub struct Nics {
    pub data_mac: String,
    pub mgmt_mac: String,
    pub mgmt_name: String,
    pub mgmt_address: String,
}

impl Default for Nics {
    fn default() -> Self {
        Nics {
            data_mac: "52:54:00:d5:00:10".into(),
            mgmt_mac: "52:54:00:d5:00:99".into(),
            mgmt_name: "mgmt0".into(),
            // QEMU's user-mode network: the guest is 10.0.2.15 by convention.
            mgmt_address: "10.0.2.15/24".into(),
        }
    }
}

/// Everything rendered for one run.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub user_data: String,
    pub meta_data: String,
    pub network_config: String,
    pub host_recipe: String,
    pub local_conf: String,
}

impl Rendered {
    /// (file name in the output directory, contents), in a stable order.
    pub fn files(&self) -> [(&'static str, &str); 5] {
        [
            ("user-data", &self.user_data),
            ("meta-data", &self.meta_data),
            ("network-config", &self.network_config),
            ("host-recipe.sh", &self.host_recipe),
            ("local.conf", &self.local_conf),
        ]
    }

    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, RenderError> {
        std::fs::create_dir_all(dir).map_err(|source| RenderError::Write { path: dir.into(), source })?;
        let mut written = Vec::new();
        for (name, text) in self.files() {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| RenderError::Write { path: path.clone(), source })?;
            if name.ends_with(".sh") {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
            }
            written.push(path);
        }
        Ok(written)
    }
}

pub struct Renderer {
    tera: tera::Tera,
    /// Each template as loaded (embedded or overridden), by name.
    texts: std::collections::BTreeMap<&'static str, String>,
}

fn tera_error(name: &str, e: tera::Error) -> RenderError {
    // tera nests the useful part (line, column, what was expected) in sources.
    let mut message = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        message.push_str(": ");
        message.push_str(&s.to_string());
        src = s.source();
    }
    RenderError::Template { name: name.into(), message }
}

impl Renderer {
    /// The embedded templates, with any file of `override_dir` taking precedence.
    pub fn new(override_dir: Option<&Path>) -> Result<Renderer, RenderError> {
        let mut tera = tera::Tera::default();
        tera.autoescape_on(vec![]);
        let mut texts = std::collections::BTreeMap::new();
        for name in ALL {
            let text = match override_dir.map(|d| d.join(name)).filter(|p| p.exists()) {
                Some(path) => std::fs::read_to_string(&path).map_err(|source| RenderError::ReadTemplate { path, source })?,
                None => EMBEDDED.get_file(name).and_then(|f| f.contents_utf8()).expect("every template is embedded").to_owned(),
            };
            tera.add_raw_template(name, &text).map_err(|e| tera_error(name, e))?;
            texts.insert(*name, text);
        }
        Ok(Renderer { tera, texts })
    }

    /// What the templates that make a `kind` cloud's prepared state are: a change
    /// to any of them changes this. The host recipe and the local.conf are in a
    /// state's key as rendered; the faults are switched on after every start; the
    /// other clouds' scripts do not run.
    pub fn digest_for(&self, kind: crate::scenario::CloudKind) -> String {
        use crate::scenario::CloudKind;
        let own: &[&str] = match kind {
            CloudKind::Replica => &[REPLICA, HOST_STEPS],
            CloudKind::Neutron => &[NEUTRON, NEUTRON_HOST2, HOST_STEPS],
            CloudKind::Devstack => &[DEVSTACK],
        };
        let mut digest = <sha2::Sha256 as sha2::Digest>::new();
        for name in [USER_DATA, META_DATA, NETWORK_CONFIG].iter().chain(own) {
            sha2::Digest::update(&mut digest, name.as_bytes());
            sha2::Digest::update(&mut digest, self.texts[name].as_bytes());
        }
        hex::encode(sha2::Digest::finalize(digest))
    }

    /// A template of a later stage, with the plan and that stage's values (`v`).
    pub fn render_extra(&self, name: &str, plan: &Plan, values: &impl Serialize) -> Result<String, RenderError> {
        let mut ctx = tera::Context::new();
        ctx.insert("plan", plan);
        ctx.insert("v", values);
        self.tera.render(name, &ctx).map_err(|e| tera_error(name, e))
    }

    /// What every template sees: the plan and the host's IP.
    fn plan_context(plan: &Plan) -> tera::Context {
        let mut ctx = tera::Context::new();
        ctx.insert("plan", plan);
        ctx.insert("host_ip", &plan.host_ip().to_string());
        ctx
    }

    /// The host recipe alone (it depends on the plan only).
    pub fn host_recipe(&self, plan: &Plan) -> Result<String, RenderError> {
        self.tera.render(HOST_RECIPE, &Self::plan_context(plan)).map_err(|e| tera_error(HOST_RECIPE, e))
    }

    /// The scenario's faults script (apply, revert).
    pub fn faults(&self, plan: &Plan) -> Result<String, RenderError> {
        self.tera.render(FAULTS, &Self::plan_context(plan)).map_err(|e| tera_error(FAULTS, e))
    }

    /// The local.conf alone: the scenario's own file, or the rendered template.
    pub fn local_conf(&self, plan: &Plan) -> Result<String, RenderError> {
        match &plan.user_local_conf {
            Some((_, text)) => Ok(text.clone()),
            None => self.tera.render(LOCAL_CONF, &Self::plan_context(plan)).map_err(|e| tera_error(LOCAL_CONF, e)),
        }
    }

    pub fn render(&self, plan: &Plan, run_id: &str, keys: &RunKeys) -> Result<Rendered, RenderError> {
        let nics = Nics::default();
        let mut ctx = Self::plan_context(plan);
        ctx.insert("run_id", run_id);
        ctx.insert("keys", keys);
        ctx.insert("nics", &nics);
        let render = |name: &str, ctx: &tera::Context| self.tera.render(name, ctx).map_err(|e| tera_error(name, e));

        let local_conf = self.local_conf(plan)?;
        let host_recipe = self.host_recipe(plan)?;
        ctx.insert("local_conf", &local_conf);
        ctx.insert("host_recipe", &host_recipe);
        Ok(Rendered {
            user_data: render(USER_DATA, &ctx)?,
            meta_data: render(META_DATA, &ctx)?,
            network_config: render(NETWORK_CONFIG, &ctx)?,
            host_recipe,
            local_conf,
        })
    }
}
