//! The supervisor's way out: the queue of actions the runtime carries out, and the log
//! policy in front of it. A log line is only formatted when its level will be shown, so a
//! signal storm or a zombie flood costs no `format!` per event at the default verbosity;
//! and since the policy lives here, not in the supervisor, a line can be built while the
//! supervisor's own state is borrowed.

use std::collections::VecDeque;

use super::events::{Action, Level};
use crate::id::DaemonId;

#[derive(Debug)]
pub(crate) struct Effects {
    queue: VecDeque<Action>,
    /// The most detailed level shown.
    verbosity: Level,
    /// Level of start/exit lines: Notice in bundle mode, Info in single-child mode (tini is
    /// silent about its child unless asked).
    lifecycle: Level,
    /// Level of "reaped zombie" lines: Notice with `-w`, Debug otherwise.
    orphans: Level,
}

impl Effects {
    /// `verbosity` counts `-v` flags on top of the default (1: notices).
    pub(crate) fn new(verbosity: u8, single_child: bool, warn_orphans: bool) -> Effects {
        Effects {
            queue: VecDeque::new(),
            verbosity: match verbosity {
                0 => Level::Error,
                1 => Level::Notice,
                2 => Level::Info,
                _ => Level::Debug,
            },
            lifecycle: if single_child {
                Level::Info
            } else {
                Level::Notice
            },
            orphans: if warn_orphans {
                Level::Notice
            } else {
                Level::Debug
            },
        }
    }

    pub(crate) fn push(&mut self, action: Action) {
        self.queue.push_back(action);
    }

    pub(crate) fn pop(&mut self) -> Option<Action> {
        self.queue.pop_front()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues a log line; `line` is only called (formatted) when the line will be shown.
    pub(crate) fn log(&mut self, level: Level, line: impl FnOnce() -> String) {
        if level <= self.verbosity {
            self.queue.push_back(Action::Log(level, line()));
        }
    }

    /// A line about a daemon's lifecycle (started, exited, restarted).
    pub(crate) fn lifecycle(&mut self, line: impl FnOnce() -> String) {
        self.log(self.lifecycle, line);
    }

    /// A line about an orphan bundle-init reaped.
    pub(crate) fn orphan(&mut self, line: impl FnOnce() -> String) {
        self.log(self.orphans, line);
    }

    /// Whether the bundle is a single child, whose lines speak of "the child".
    pub(crate) fn single_child(&self) -> bool {
        self.lifecycle == Level::Info
    }

    /// Takes back a spawn of `id` still queued: the daemon must not start any more (the
    /// shutdown began after the spawn was asked for, in the same pass of the loop).
    pub(crate) fn withdraw_spawn(&mut self, id: DaemonId) {
        self.queue
            .retain(|a| !matches!(a, Action::Spawn(queued) if *queued == id));
    }

    /// Takes back a liveness check of `id` still queued: its process stops running (a
    /// shutdown or a restart began in the same pass of the loop), and a check of it now
    /// would only be thrown away.
    pub(crate) fn withdraw_live_check(&mut self, id: DaemonId) {
        self.queue
            .retain(|a| !matches!(a, Action::CheckLive { id: queued, .. } if *queued == id));
    }

    /// Takes back the signals still queued for `pid`, which was just reaped: the number is
    /// free, and may be a stranger's by the time they would be sent. A signal to its
    /// process group stays: the group lives on while its members do (and cannot be reused
    /// until they are gone), and a stop or a SIGKILL must still reach them.
    pub(crate) fn withdraw_signals_to(&mut self, pid: i32) {
        self.queue
            .retain(|a| !matches!(a, Action::Signal { pid: p, group: false, .. } if *p == pid));
    }

    /// The actions queued, oldest first.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Action> {
        self.queue.iter()
    }

    #[cfg(test)]
    pub(crate) fn clear(&mut self) {
        self.queue.clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, action: &Action) -> bool {
        self.queue.contains(action)
    }
}
