//! The error of a whole command, and the exit code that follows from its kind
//! (README, "Exit codes"): bad input is 2 wherever it is found, a machine or
//! infrastructure failure is 3. Each stage keeps its own error type; this one only
//! gathers them and says which kind each is.

use std::path::PathBuf;

/// What an error means for the person who ran the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A scenario, a local.conf, a template, a recipe or an argument is wrong: exit 2.
    BadInput,
    /// The machine lacks something the command needs: exit 3, never retried.
    Machine,
    /// The infrastructure failed (image, boot, SSH, a guest step): exit 3, retried
    /// by `--retries`.
    Infrastructure,
}

impl Kind {
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::BadInput => crate::report::exit::BAD_INPUT,
            Kind::Machine | Kind::Infrastructure => crate::report::exit::INFRA,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Scenario(#[from] crate::scenario::ScenarioError),
    #[error(transparent)]
    LocalConf(#[from] crate::localconf::LocalConfError),
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
    /// Boxed: a runner's and a boot's errors carry the console's tail and paths.
    #[error(transparent)]
    Runner(Box<crate::runner::RunnerError>),
    #[error(transparent)]
    Boot(Box<crate::boot::BootError>),
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    #[error(transparent)]
    Exec(#[from] crate::exec::ExecError),
    #[error(transparent)]
    Prerequisites(#[from] crate::prereq::Missing),
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    #[error("{0}")]
    Usage(String),
    /// The local.conf a scenario builds from has lint errors: nothing was started.
    #[error(
        "{diagnostics}nothing was started: the cloud cannot be built from this local.conf (fix the errors above, or see `harness lint`)"
    )]
    Lint { diagnostics: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("interrupted; everything the run created was removed")]
    Interrupted,
}

impl From<crate::runner::RunnerError> for Error {
    fn from(e: crate::runner::RunnerError) -> Error {
        Error::Runner(Box::new(e))
    }
}

impl From<crate::boot::BootError> for Error {
    fn from(e: crate::boot::BootError) -> Error {
        Error::Boot(Box::new(e))
    }
}

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::Scenario(_) | Error::LocalConf(_) | Error::Input { .. } | Error::Usage(_) | Error::Lint { .. } => Kind::BadInput,
            Error::Render(e) if e.is_bad_input() => Kind::BadInput,
            Error::Image(e) if e.is_bad_input() => Kind::BadInput,
            Error::Runner(e) if e.is_bad_input() => Kind::BadInput,
            Error::Boot(e) if e.is_bad_input() => Kind::BadInput,
            // A run id that does not exist is a wrong argument.
            Error::Run(crate::run::RunError::NotFound { .. }) => Kind::BadInput,
            Error::Prerequisites(_) => Kind::Machine,
            _ => Kind::Infrastructure,
        }
    }

    pub fn exit_code(&self) -> u8 {
        self.kind().exit_code()
    }
}
