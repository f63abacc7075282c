//! bundle-init's last moments: the daemons' last output drained and written while the
//! shutdown budget lasts, and what must be dropped counted in one line.

use super::*;

impl Runtime {
    /// Drains the daemons' last output and writes what it can until the shutdown budget is
    /// over (and at least FINAL_FLUSH): a log reader that comes late still gets it. What
    /// must be dropped then is counted, in one line.
    pub(super) fn exit(mut self, code: u8) -> u8 {
        let (pipes, mut lend) = self.pipes_and_lend();
        pipes.drain_all(&mut lend);
        let give_up = self.final_flush_deadline();
        self.flush_until(give_up);
        for sink in &mut self.sinks {
            sink.give_up();
        }
        self.log_what_was_dropped();
        // Then the count, in whatever time is left: once, without waiting, if none is.
        self.flush_until(give_up);
        code
    }

    fn final_flush_deadline(&self) -> Time {
        let at_least = now() + FINAL_FLUSH;
        match self.sup.shutdown_budget_ends() {
            Some(ends) => at_least.max(ends),
            None => at_least,
        }
    }

    /// The lines dropped at shutdown, bundle-init's own and daemons', on stderr.
    fn log_what_was_dropped(&mut self) {
        let dropped: u64 = self.sinks.iter().map(|s| s.dropped).sum();
        let shed: u64 = self.sinks.iter().map(|s| s.shed_lines).sum();
        let mut actions = Effects::new(self.settings.verbosity, false, false);
        let at_exit = [
            Event::LogLinesDropped(dropped),
            Event::OutputShed {
                lines: shed,
                at_exit: true,
            },
        ];
        for event in at_exit {
            self.sup.handle(event, now(), &mut actions);
        }
        while let Some(action) = actions.pop() {
            if let Action::Log(level, line) = action {
                self.log(level, &line, None);
            }
        }
    }

    /// Writes queued output until `give_up`, or until nothing is left to write; once, without
    /// waiting, when `give_up` has come.
    fn flush_until(&mut self, give_up: Time) {
        for sink in &mut self.sinks {
            sink.flush_unpolled();
        }
        loop {
            let waiting: Vec<usize> = (0..self.sinks.len())
                .filter(|&i| self.sinks[i].wants_write())
                .collect();
            if waiting.is_empty() {
                return;
            }
            let mut fds: Vec<PollFd> = waiting
                .iter()
                .map(|&i| PollFd {
                    fd: self.sinks[i].fd(),
                    events: POLLOUT,
                    revents: 0,
                })
                .collect();
            let left = give_up.saturating_sub(now());
            let timeout = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            let _ = sys::wait_for(&mut fds, timeout);
            // Only the ones poll called writable: a blocking one may not be.
            for (fd, &i) in fds.iter().zip(&waiting) {
                if fd.revents != 0 {
                    self.sinks[i].flush();
                }
            }
            if left.is_zero() {
                return;
            }
        }
    }
}
