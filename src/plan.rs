//! What bundle-init is asked to run: built from the command line (single-child mode) or from
//! a bundle file, then handed to the supervisor. Plain data, no I/O.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::signal::Sig;
use crate::sys::{MAX_SIGNAL, libc_sig};

/// What happens when a daemon exits without having been asked to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExitPolicy {
    /// Log it; the siblings carry on; nothing restarts it.
    KeepRunning,
    /// Start it again after a backoff that doubles up to a cap.
    Restart,
    /// Shut the whole bundle down and exit with this daemon's code.
    StopBundle,
}

impl ExitPolicy {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ExitPolicy::KeepRunning => "keep-running",
            ExitPolicy::Restart => "restart",
            ExitPolicy::StopBundle => "stop-bundle",
        }
    }
}

/// Delays between automatic restarts: `initial`, doubling up to `max`; a run that lasted
/// at least `stable_after` counts as healthy and brings the delay back to `initial`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
    pub(crate) stable_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
        }
    }
}

/// The environment a daemon starts with: bundle-init's own, minus `unset` names and
/// `unset_prefixes`, plus `set` (applied last, so a set variable survives a prefix unset).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct EnvPlan {
    pub(crate) set: Vec<(OsString, OsString)>,
    pub(crate) unset: Vec<OsString>,
    pub(crate) unset_prefixes: Vec<OsString>,
}

/// How bundle-init knows a daemon is ready (checked by bundle-init itself: the image may
/// have no tool to do it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReadyCheck {
    /// A TCP connection to `host:port` is accepted.
    Tcp(String),
    /// A connection to this Unix socket is accepted.
    Unix(PathBuf),
    /// This file exists.
    File(PathBuf),
    /// The daemon writes a newline to this descriptor (the s6 convention).
    Notify(i32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonSpec {
    pub name: String,
    pub(crate) argv: Vec<OsString>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) env: EnvPlan,
    /// Numeric uid and gid; supplementary groups are cleared when set.
    pub(crate) user: Option<(u32, u32)>,
    pub(crate) stop_signal: Sig,
    /// How long a stop signal may take before SIGKILL, on restart and at shutdown.
    pub(crate) grace: Duration,
    pub(crate) on_exit: ExitPolicy,
    pub(crate) backoff: Backoff,
    /// Route stdout/stderr through bundle-init as `[name] line`.
    pub(crate) prefix_output: bool,
    /// Signals go to the daemon's whole process group instead of its pid.
    pub(crate) signal_group: bool,
    pub(crate) no_new_privs: bool,
    pub(crate) ready: Option<ReadyCheck>,
    /// Names of daemons that must be ready before this one starts.
    pub(crate) after: Vec<String>,
    /// How long to wait for `after` before the exit policy applies.
    pub(crate) ready_timeout: Duration,
}

impl DaemonSpec {
    /// A daemon with every key at its default (`keys::DAEMON_KEYS` says which).
    pub(crate) fn new(name: &str, argv: Vec<OsString>) -> DaemonSpec {
        let mut spec = DaemonSpec {
            name: name.to_string(),
            argv,
            cwd: None,
            env: EnvPlan::default(),
            user: None,
            stop_signal: Sig(libc_sig::TERM),
            grace: Duration::ZERO,
            on_exit: ExitPolicy::KeepRunning,
            backoff: Backoff::default(),
            prefix_output: false,
            signal_group: false,
            no_new_privs: false,
            ready: None,
            after: Vec::new(),
            ready_timeout: Duration::ZERO,
        };
        for key in crate::keys::DAEMON_KEYS {
            (key.default)(&mut spec);
        }
        spec
    }
}

/// What a signal sent to bundle-init does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Stop every daemon and exit.
    Shutdown,
    /// Drop it.
    Ignore,
    /// Send it to every running daemon.
    ForwardAll,
    /// Send it to these daemons (indices into `Plan::daemons`).
    Forward(Vec<usize>),
    /// Restart these daemons in place; the signal itself is never passed on.
    Restart(Vec<usize>),
    /// Write every daemon's status to the log.
    Status,
}

/// A route per signal number (index 0 unused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Routes {
    table: Vec<Route>,
}

impl Routes {
    /// Bundle defaults: TERM, INT and QUIT shut down; everything else goes to every daemon.
    pub(crate) fn bundle_defaults() -> Routes {
        let mut routes = Routes::forward_everything();
        for sig in [libc_sig::TERM, libc_sig::INT, libc_sig::QUIT] {
            routes.set(Sig(sig), Route::Shutdown);
        }
        routes
    }

    /// tini's behaviour: every signal goes to the child, TERM included.
    pub(crate) fn forward_everything() -> Routes {
        Routes {
            table: vec![Route::ForwardAll; MAX_SIGNAL as usize + 1],
        }
    }

    pub(crate) fn set(&mut self, sig: Sig, route: Route) {
        if let Some(slot) = self.table.get_mut(sig.0 as usize) {
            *slot = route;
        }
    }

    pub(crate) fn get(&self, sig: Sig) -> &Route {
        self.table.get(sig.0 as usize).unwrap_or(&Route::Ignore)
    }

    /// Routes that differ from `base`, for printing a plan.
    pub(crate) fn changed_from<'a>(
        &'a self,
        base: &'a Routes,
    ) -> impl Iterator<Item = (Sig, &'a Route)> {
        (1..self.table.len())
            .filter(move |&n| self.table[n] != base.table[n])
            .map(move |n| (Sig(n as i32), &self.table[n]))
    }
}

/// Everything the supervisor needs to run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub(crate) daemons: Vec<DaemonSpec>,
    pub(crate) routes: Routes,
    /// Bundle mode: the one shared deadline for shutdown. Single-child mode: how long
    /// leftover processes get after the child exits (only if `stop_leftovers`).
    pub(crate) shutdown_grace: Duration,
    /// After the daemons are gone, TERM (then KILL at the deadline) any other process
    /// still around instead of exiting at once.
    pub(crate) stop_leftovers: bool,
    /// Exit codes reported as 0 (tini's `-e`).
    pub(crate) success_codes: Vec<u8>,
    /// Single-child mode: the bundle's exit code is the child's, not the highest failure.
    pub(crate) single_child: bool,
}
