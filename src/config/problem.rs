//! What can be wrong with a bundle file, one variant each, and the message a user reads.

use std::fmt;

use super::{MAX_DAEMONS, MAX_FILE_BYTES, MAX_LINE_BYTES};
use crate::expand::ExpandError;
use crate::keys;
use crate::signal::{Sig, SignalError};
use crate::time::DurationError;
use crate::values::ValueError;

/// What is wrong with a bundle file: the message after `PATH:LINE: ` (or `PATH: ` for
/// the whole file).
#[derive(Debug)]
pub(crate) enum Problem {
    Open(rustix::io::Errno),
    /// What the path is instead: "a directory", "a FIFO"...
    NotRegular(&'static str),
    Read(std::io::Error),
    TooLarge,
    NoDaemon,
    LineTooLong,
    NulByte,
    ByteOrderMark,
    NotUtf8,
    TextAfterHeader(String),
    UnclosedHeader(String),
    NotKeyValue(String),
    MissingKey,
    /// The daemon's name, and `PATH:LINE` of its first definition.
    DaemonTwice(String, String),
    /// `include` in an included file.
    NestedInclude,
    /// `include = /etc/*/x.bundle`: wildcards only in the last component.
    IncludeWildcardInDirectory(String),
    /// The directory of an include's glob could not be listed (other than missing).
    IncludeDirectory(String, rustix::io::Errno),
    /// The main file with its includes is larger than MAX_FILE_BYTES.
    IncludesTooLarge,
    TooManyDaemons,
    KeyTwice(String),
    RoutedTwice(Sig),
    DaemonKeyInBundle(String),
    UnknownBundleKey(String),
    BundleKeyInDaemon(String),
    UnknownDaemonKey {
        key: String,
        section: String,
    },
    Uncatchable(Sig),
    FaultSignal(Sig),
    ChildSignal,
    ReservedSignal(Sig),
    NoAction(Sig),
    TermNotShutdown,
    UnknownAction(String),
    NeedsNames(&'static str),
    TakesNoNames(&'static str),
    NoRun(String),
    DelayOverMax(String),
    /// `restart-delay = 0s`: a crash loop would fork and exec without a pause.
    DelayZero(String),
    StopOrder(String),
    LogFormat(String),
    OneshotOnExit(String),
    TimeoutZero(String),
    OnGiveUpWithoutMaxRestarts(String),
    AfterNeverStarted {
        daemon: String,
        name: String,
    },
    OneshotReady(String),
    OnlyForOneshot(String),
    /// `max-restarts` on a daemon that is never restarted.
    MaxRestartsWithoutRestart(String),
    GroupsWithoutUser(String),
    /// `watchdog` on a daemon that has no notify socket to ping.
    WatchdogWithoutSdNotify(String),
    /// `live-every`, `live-timeout` or `live-failures` with nothing to check.
    LiveSettingsWithoutCheck(String),
    LiveOnOneshot(String),
    AfterNotAbove {
        daemon: String,
        name: String,
    },
    RouteToUnknown {
        sig: Sig,
        name: String,
    },
    Value(ValueError),
    Expand(ExpandError),
    Signal(SignalError),
    Duration(DurationError),
}

impl fmt::Display for Problem {
    #[allow(clippy::too_many_lines)] // a table: one message per problem
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Problem as P;
        match self {
            P::Open(e) => write!(f, "cannot open: {e}"),
            P::NotRegular(kind) => write!(f, "is {kind}, not a regular file"),
            P::Read(e) => write!(f, "cannot read: {e}"),
            P::TooLarge => write!(f, "file is larger than {} KiB", MAX_FILE_BYTES / 1024),
            P::NoDaemon => f.write_str("defines no daemon"),
            P::LineTooLong => write!(f, "line is longer than {MAX_LINE_BYTES} bytes"),
            P::NulByte => f.write_str("line contains a NUL byte"),
            P::ByteOrderMark => f.write_str(
                "the file starts with a UTF-8 byte order mark (BOM, bytes EF BB BF): save it without one",
            ),
            P::NotUtf8 => f.write_str("line is not valid UTF-8"),
            P::TextAfterHeader(text) => write!(
                f,
                "section header \"{text}\" has text after its closing ] (a comment must be on a line of its own)"
            ),
            P::UnclosedHeader(text) => write!(f, "section header \"{text}\" has no closing ]"),
            P::NotKeyValue(text) => write!(f, "expected \"key = value\", found \"{text}\""),
            P::MissingKey => f.write_str("missing key before ="),
            P::DaemonTwice(name, first) => {
                write!(f, "daemon \"{name}\" is defined twice (first at {first})")
            }
            P::NestedInclude => f.write_str(
                "\"include\" only works in the main bundle file, not in an included one",
            ),
            P::IncludeWildcardInDirectory(glob) => write!(
                f,
                "include \"{glob}\": * and ? only work in the last part of the path"
            ),
            P::IncludeDirectory(dir, e) => write!(f, "include: cannot list {dir}: {e}"),
            P::IncludesTooLarge => write!(
                f,
                "the bundle file with its includes is larger than {} KiB",
                MAX_FILE_BYTES / 1024
            ),
            P::TooManyDaemons => write!(f, "more than {MAX_DAEMONS} daemons"),
            P::KeyTwice(key) => write!(f, "\"{key}\" is set twice"),
            P::RoutedTwice(sig) => write!(f, "{sig} is routed twice"),
            P::DaemonKeyInBundle(key) => write!(f, "\"{key}\" belongs in a [daemon] section"),
            P::UnknownBundleKey(key) => write!(f, "unknown bundle key \"{key}\""),
            P::BundleKeyInDaemon(key) => {
                write!(f, "\"{key}\" is a bundle key: put it before the first [daemon]")
            }
            P::UnknownDaemonKey { key, section } => {
                write!(f, "unknown key \"{key}\" in [{section}]")
            }
            P::Uncatchable(sig) => write!(f, "{sig} cannot be caught, so it cannot be routed"),
            P::FaultSignal(sig) => write!(
                f,
                "{sig} reports a fault in bundle-init itself and keeps its default action, so it cannot be routed"
            ),
            P::ChildSignal => f.write_str("SIGCHLD is how bundle-init reaps; it cannot be routed"),
            P::ReservedSignal(sig) => write!(
                f,
                "{sig} is reserved by the C library and never reaches bundle-init, so it cannot be routed"
            ),
            P::NoAction(sig) => write!(f, "route for {sig} has no action"),
            P::TermNotShutdown => f.write_str(
                "SIGTERM always shuts the bundle down (engines stop containers with it); to stop a daemon with another signal, give it stop-signal",
            ),
            P::UnknownAction(action) => write!(
                f,
                "unknown route action \"{action}\" (expected {})",
                keys::route_action_names()
            ),
            P::NeedsNames(action) => write!(f, "\"{action}\" needs at least one daemon name"),
            P::TakesNoNames(action) => write!(f, "\"{action}\" takes no daemon names"),
            P::NoRun(daemon) => write!(f, "[{daemon}] has no \"run\" line"),
            P::DelayOverMax(daemon) => {
                write!(f, "[{daemon}] restart-delay is longer than restart-delay-max")
            }
            P::DelayZero(daemon) => write!(
                f,
                "[{daemon}] restart-delay must be at least 1ms: 0s would restart a crash loop without a pause"
            ),
            P::AfterNeverStarted { daemon, name } => write!(
                f,
                "[{daemon}] after \"{name}\": it has autostart = no, so it is never ready at start (give [{daemon}] autostart = no too)"
            ),
            P::TimeoutZero(daemon) => write!(
                f,
                "[{daemon}] timeout must be at least 1ms: 0s would fail the task at once"
            ),
            P::WatchdogWithoutSdNotify(daemon) => write!(
                f,
                "[{daemon}] watchdog needs ready = sd-notify: the pings come on its notify socket"
            ),
            P::LiveOnOneshot(daemon) => write!(
                f,
                "[{daemon}] a oneshot runs to completion: live and watchdog do not apply (timeout does)"
            ),
            P::LiveSettingsWithoutCheck(daemon) => write!(
                f,
                "[{daemon}] live-every, live-timeout and live-failures need live = CHECK (or watchdog)"
            ),
            P::OnGiveUpWithoutMaxRestarts(daemon) => write!(
                f,
                "[{daemon}] on-give-up needs max-restarts: without it the daemon is never given up"
            ),
            P::OneshotOnExit(daemon) => write!(
                f,
                "[{daemon}] a oneshot runs once: on-exit does not apply (on-failure says what its failure does)"
            ),
            P::OneshotReady(daemon) => write!(
                f,
                "[{daemon}] a oneshot has no ready check: what starts after it waits for its exit 0"
            ),
            P::OnlyForOneshot(daemon) => write!(
                f,
                "[{daemon}] timeout and on-failure are for type = oneshot"
            ),
            P::LogFormat(text) => {
                write!(f, "unknown log-format \"{text}\" (expected text or json)")
            }
            P::StopOrder(text) => write!(
                f,
                "unknown stop-order \"{text}\" (expected dependencies or together)"
            ),
            P::MaxRestartsWithoutRestart(daemon) => write!(
                f,
                "[{daemon}] max-restarts needs on-exit = restart: this daemon is never restarted"
            ),
            P::GroupsWithoutUser(daemon) => write!(
                f,
                "[{daemon}] groups needs user: supplementary groups are set with the change of user"
            ),
            P::AfterNotAbove { daemon, name } => {
                write!(f, "[{daemon}] after \"{name}\": not a daemon defined above it")
            }
            P::RouteToUnknown { sig, name } => {
                write!(f, "route for {sig} names unknown daemon \"{name}\"")
            }
            P::Value(e) => e.fmt(f),
            P::Expand(e) => e.fmt(f),
            P::Signal(e) => e.fmt(f),
            P::Duration(e) => e.fmt(f),
        }
    }
}

impl From<ValueError> for Problem {
    fn from(e: ValueError) -> Problem {
        Problem::Value(e)
    }
}

impl From<ExpandError> for Problem {
    fn from(e: ExpandError) -> Problem {
        Problem::Expand(e)
    }
}

impl From<SignalError> for Problem {
    fn from(e: SignalError) -> Problem {
        Problem::Signal(e)
    }
}

impl From<DurationError> for Problem {
    fn from(e: DurationError) -> Problem {
        Problem::Duration(e)
    }
}
