//! A bundle file becomes a plan: read and parsed (`config`), the BUNDLE_INIT_DAEMONS
//! selection applied, and the descriptors it needs checked against the limit. At start and
//! again at every reload, so a reload accepts exactly the files a start would.

use std::fmt;

use crate::config::{self, ConfigError, SelectionError};
use crate::plan::Plan;
use crate::sys;

/// The bundle file a reload reads: the one bundle-init started with, with the selection
/// it started with.
pub(crate) struct BundleSource {
    pub(crate) path: String,
    pub(crate) selection: Option<String>,
    /// Descriptors open before the bundle had any (see `descriptors_fit`).
    pub(crate) base_descriptors: usize,
}

impl BundleSource {
    /// The file again, for a reload: checked as at start, with the same selection.
    pub(crate) fn reload(&self) -> Result<Plan, LoadError> {
        checked_bundle_plan(&self.path, self.selection.as_deref(), self.base_descriptors)
    }
}

/// The bundle file's checked plan, and where a reload finds the file again.
pub(crate) fn bundle_source(path: &str) -> Result<(Plan, BundleSource), LoadError> {
    // What is open before the bundle has anything: its need comes on top, now and at
    // reload. (Read only in bundle mode: a single child's start-up never pays for it.)
    let base_descriptors = sys::open_descriptors();
    let selection = selection();
    let plan = checked_bundle_plan(path, selection.as_deref(), base_descriptors)?;
    let source = BundleSource {
        path: path.to_string(),
        selection,
        base_descriptors,
    };
    Ok((plan, source))
}

/// The bundle file's plan, once it parsed and fits the descriptor limit.
fn checked_bundle_plan(
    path: &str,
    selection: Option<&str>,
    base_descriptors: usize,
) -> Result<Plan, LoadError> {
    let plan = bundle_plan(path, selection).map_err(LoadError::Plan)?;
    descriptors_fit(&plan, base_descriptors).map_err(|error| LoadError::Descriptors {
        path: path.to_string(),
        error,
    })?;
    users_can_be_honoured(&plan).map_err(|(daemon, uid, gid, error)| LoadError::User {
        path: path.to_string(),
        daemon,
        uid,
        gid,
        error,
    })?;
    Ok(plan)
}

/// Whether every `user =` can be honoured by this bundle-init: it runs as that user
/// already, or it may change users. Checked before anything starts and before a reload is
/// applied, like the descriptors: otherwise the daemon would fail at each start.
fn users_can_be_honoured(plan: &Plan) -> Result<(), (String, u32, u32, sys::UserSwitchError)> {
    for daemon in &plan.daemons {
        if let Some((uid, gid)) = daemon.user {
            sys::can_switch_to(uid, gid).map_err(|e| (daemon.name.clone(), uid, gid, e))?;
        }
    }
    Ok(())
}

/// Whether the bundle's descriptors fit under RLIMIT_NOFILE (already raised to the hard
/// limit) on top of `base`, those open before the bundle had any. Checked before anything
/// starts, and before a reload is applied: a bundle that cannot have them all would
/// otherwise fail part-way, at some daemon's start.
pub(crate) fn descriptors_fit(plan: &Plan, base: usize) -> Result<(), DescriptorsError> {
    let needed = base + plan.descriptors_needed();
    let limit = sys::open_file_limit();
    if needed as u64 <= limit {
        return Ok(());
    }
    Err(DescriptorsError { needed, limit })
}

/// BUNDLE_INIT_DAEMONS, read once at start.
fn selection() -> Option<String> {
    std::env::var("BUNDLE_INIT_DAEMONS").ok()
}

/// Loads a bundle file and applies the BUNDLE_INIT_DAEMONS selection.
pub(crate) fn bundle_plan(path: &str, selection: Option<&str>) -> Result<Plan, PlanError> {
    let bundle = config::load(path).map_err(PlanError::Config)?;
    config::select(&bundle, selection).map_err(PlanError::Selection)
}

/// Why a bundle file could not become a plan: the message names the file and line, or the
/// variable that selected daemons.
#[derive(Debug)]
pub(crate) enum PlanError {
    Config(ConfigError),
    Selection(SelectionError),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Config(e) => e.fmt(f),
            PlanError::Selection(e) => write!(f, "BUNDLE_INIT_DAEMONS: {e}"),
        }
    }
}

impl std::error::Error for PlanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PlanError::Config(e) => Some(e),
            PlanError::Selection(e) => Some(e),
        }
    }
}

/// The bundle needs more descriptors at once than RLIMIT_NOFILE allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DescriptorsError {
    pub(crate) needed: usize,
    pub(crate) limit: u64,
}

impl fmt::Display for DescriptorsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let DescriptorsError { needed, limit } = self;
        write!(
            f,
            "the bundle needs up to {needed} open descriptors (4 per prefixed daemon), but the limit (RLIMIT_NOFILE) is {limit}: raise it (podman run --ulimit nofile=N:N) or set prefix-output = no for some daemons"
        )
    }
}

impl std::error::Error for DescriptorsError {}

/// Why bundle-init cannot start the bundle file it was given.
#[derive(Debug)]
pub(crate) enum LoadError {
    /// The file, or the selection, is wrong: bad usage.
    Plan(PlanError),
    /// The file is fine but cannot run under this descriptor limit: a setup failure.
    Descriptors {
        path: String,
        error: DescriptorsError,
    },
    /// A daemon's `user =` needs a change of user this bundle-init may not make.
    User {
        path: String,
        daemon: String,
        uid: u32,
        gid: u32,
        error: sys::UserSwitchError,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Plan(e) => e.fmt(f),
            LoadError::Descriptors { path, error } => write!(f, "{path}: {error}"),
            LoadError::User {
                path,
                daemon,
                uid,
                gid,
                error,
            } => write!(f, "{path}: [{daemon}] user {uid}:{gid}: {error}"),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Plan(e) => Some(e),
            LoadError::Descriptors { error, .. } => Some(error),
            LoadError::User { error, .. } => Some(error),
        }
    }
}
