//! The one loop: poll the signalfd, the daemons' output pipes, bundle-init's own outputs,
//! the control socket and the readiness probes; turn what happened into supervisor events;
//! carry out the supervisor's actions. Nothing here decides policy or looks at a daemon's
//! state: that is the supervisor's job. Log lines arrive already filtered.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use rustix::io::Errno;
use rustix::process::{WaitOptions, WaitStatus};

use crate::id::DaemonId;
use crate::output::Sink;
use crate::plan::ReadyCheck;
use logs::LogClients;
use pipes::{Lend, OutputPipes};

mod exit;
mod logs;
mod pipes;
use crate::signal::Sig;
use crate::spawn::{self, ChildOutput, ChildSetup};
use crate::supervisor::{
    Action, Effects, Event, ExitStatus, Level, ReadError, SpawnFailure, Supervisor,
};
use crate::sys::{self, POLLIN, POLLOUT, PollFd, SIGINFO_SIZE, SignalInfo, libc_sig};
use crate::time::{Time, now};

/// How long, at least, bundle-init keeps trying to write queued output after deciding to
/// exit; until the end of the shutdown budget when more of it is left.
const FINAL_FLUSH: Duration = Duration::from_millis(500);
/// si_code of a signal sent with kill(2).
const SI_USER: i32 = libc::SI_USER;

pub(crate) struct Settings {
    pub(crate) setup: ChildSetup,
    pub(crate) pid1: bool,
    /// Bundle mode: the file a reload reads, and the selection read at start.
    pub(crate) bundle: Option<crate::bundle::BundleSource>,
    /// `-v` flags on top of the default (1: notices).
    pub(crate) verbosity: u8,
    /// `-w`: reaped orphans are logged at the default level rather than as debug.
    pub(crate) warn_orphans: bool,
}

#[derive(Clone, Copy)]
enum Source {
    Signals,
    Pipe {
        daemon: DaemonId,
        stream: usize,
    },
    Sink(usize),
    Control(crate::control::Interest),
    Ready(crate::ready::Interest),
    /// A liveness check under way can go on.
    Live(DaemonId),
    /// A datagram on a daemon's notify socket.
    Notify(DaemonId),
    LogClient(usize),
    Http(crate::http::Interest),
}

pub(crate) struct Runtime {
    sup: Supervisor,
    signals: OwnedFd,
    settings: Settings,
    my_pid: i32,
    /// Leftovers that got SIGTERM already (-1: everyone, as PID 1).
    termed: Vec<i32>,
    pipes: OutputPipes,
    sinks: Vec<Sink>,
    /// Index into `sinks` for stderr (0, stdout's, when both are one file).
    err_sink: usize,
    poll_fds: Vec<PollFd>,
    poll_sources: Vec<Source>,
    control: Option<crate::control::Server>,
    http: Option<crate::http::Server>,
    /// Daemons' lines shed at shutdown and reported already (the sinks count the rest).
    shed_reported: u64,
    probes: crate::ready::Probes,
    live: crate::live::LiveChecks,
    notify: crate::notify::NotifySockets,
    /// The clients of `logs`, out of the control server's request slots.
    log_clients: LogClients,
    /// The processes with a mark, as one walk of /proc found them in this pass of the loop
    /// (a reap starts a new one): a mass exit costs one walk, not one per daemon.
    marked: Option<Vec<(i32, u64)>>,
}

impl Runtime {
    pub(crate) fn new(
        sup: Supervisor,
        signals: OwnedFd,
        settings: Settings,
        control: Option<crate::control::Server>,
        http: Option<crate::http::Server>,
    ) -> io::Result<Runtime> {
        let stdout = Sink::new(1);
        let shared = stdout.same_file_as(2);
        let mut sinks = vec![stdout];
        if !shared {
            sinks.push(Sink::new(2));
        }
        let (out_sink, err_sink) = (0, sinks.len() - 1);
        let mut pipes = OutputPipes::default();
        pipes.style = sup.log_style();
        let mut probes = crate::ready::Probes::default();
        for daemon in sup.daemons() {
            if daemon.spec.prefix_output {
                pipes.add(daemon.id, &daemon.spec.name, [out_sink, err_sink])?;
            }
            probes.set_check(daemon.id, daemon.spec.ready.clone());
        }
        Ok(Runtime {
            sup,
            signals,
            settings,
            my_pid: rustix::process::getpid().as_raw_nonzero().get(),
            termed: Vec::new(),
            pipes,
            sinks,
            err_sink,
            poll_fds: Vec::new(),
            poll_sources: Vec::new(),
            control,
            http,
            shed_reported: 0,
            probes,
            live: crate::live::LiveChecks::default(),
            notify: crate::notify::NotifySockets::default(),
            log_clients: LogClients::default(),
            marked: None,
        })
    }

    /// Runs until the supervisor says exit; returns the exit code.
    pub(crate) fn run(mut self) -> u8 {
        let single_child = self.settings.bundle.is_none();
        let mut actions = Effects::new(
            self.settings.verbosity,
            single_child,
            self.settings.warn_orphans,
        );
        self.sup.handle(Event::Start, now(), &mut actions);
        loop {
            if let Some(code) = self.execute(&mut actions) {
                return self.exit(code);
            }
            // Probes that are due (or new, for a daemon just started) run before the loop
            // decides how long it may sleep; what they find is carried out first.
            self.run_due_probes(&mut actions);
            if !actions.is_empty() {
                continue;
            }
            self.wait_for_events(&mut actions);
            self.dispatch(&mut actions);
        }
    }

    fn run_due_probes(&mut self, actions: &mut Effects) {
        let now = now();
        for id in self.probes.run_due(now) {
            self.sup.handle(Event::Ready(id), now, actions);
        }
    }

    /// Polls until something happens or the nearest deadline comes.
    fn wait_for_events(&mut self, actions: &mut Effects) {
        let shed_at = self
            .sinks
            .iter()
            .filter(|_| self.sup.is_shutting_down())
            .filter_map(Sink::shed_at)
            .min();
        let deadline = [
            self.sup.next_deadline(),
            self.control.as_ref().and_then(|c| c.next_deadline()),
            self.http.as_ref().and_then(|h| h.next_deadline()),
            self.probes.next_deadline(),
            self.live.next_deadline(),
            self.log_clients.next_deadline(),
            shed_at,
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout = match deadline {
            None => -1,
            Some(deadline) => {
                let wait = deadline.saturating_sub(now());
                // Round up: waking a hair early would only mean a second poll.
                wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
            }
        };
        self.build_poll_set();
        if self.poll_fds.len() == 1 && timeout < 0 {
            // Only a signal can change anything: block in the signalfd read itself, one
            // system call per event instead of two (the usual case for a single child).
            self.poll_fds[0].revents = POLLIN;
        } else if let Err(e) = sys::wait_for(&mut self.poll_fds, timeout) {
            let error = e.to_string();
            let failed = Event::DriverFailed {
                what: "poll",
                error,
            };
            self.sup.handle(failed, now(), actions);
        }
    }

    /// Turns what poll reported into supervisor events, then lets time pass.
    fn dispatch(&mut self, actions: &mut Effects) {
        let mut reap = false;
        let mut control_ready = Vec::new();
        let mut http_ready = Vec::new();
        let mut became_ready = Vec::new();
        let mut checked = Vec::new();
        let mut notified = Vec::new();
        let mut log_clients = Vec::new();
        for i in 0..self.poll_fds.len() {
            if self.poll_fds[i].revents == 0 {
                continue;
            }
            match self.poll_sources[i] {
                Source::Signals => reap |= self.read_signals(actions),
                Source::Pipe { daemon, stream } => {
                    let (pipes, mut lend) = self.pipes_and_lend();
                    pipes.read(daemon, stream, &mut lend);
                }
                Source::LogClient(index) => log_clients.push(index),
                // Writable, or the reader went away: then the write fails and marks the
                // sink broken.
                Source::Sink(sink) => self.sinks[sink].flush(),
                Source::Control(interest) => control_ready.push(interest),
                Source::Ready(interest) => became_ready.extend(self.probes.event(interest, now())),
                Source::Live(id) => checked.extend(self.live.event(id)),
                Source::Notify(id) => notified.push(id),
                Source::Http(interest) => http_ready.push(interest),
            }
        }
        self.serve_control(&control_ready, actions);
        self.serve_http(&http_ready, actions);
        // Read the clock only now: the signal read above may have blocked.
        let now = now();
        // The highest index first: a client that left is removed, shifting those after it.
        for &index in log_clients.iter().rev() {
            self.log_clients.event(index, now);
        }
        self.log_clients.flush_all(now);
        self.log_clients.expire(now);
        if reap {
            self.reap(now, actions);
        }
        for id in became_ready {
            self.sup.handle(Event::Ready(id), now, actions);
        }
        for id in notified {
            self.read_notifications(id, now, actions);
        }
        checked.extend(self.live.expire(now));
        for (id, pid, result) in checked {
            let event = Event::LiveChecked { id, pid, result };
            self.sup.handle(event, now, actions);
        }
        self.sup.handle(Event::Tick, now, actions);
        if let Some(server) = self.control.as_mut() {
            server.expire(now);
        }
        if let Some(server) = self.http.as_mut() {
            server.expire(now);
        }
        self.watch_sinks(now, actions);
    }

    /// Once shutdown began, a sink stuck for STUCK_AT_SHUTDOWN sheds daemons' output, so
    /// daemons blocked writing can act on their stop signal. When it takes writes again,
    /// one line says how much was lost.
    fn watch_sinks(&mut self, now: Time, actions: &mut Effects) {
        let shutting_down = self.sup.is_shutting_down();
        for sink in &mut self.sinks {
            sink.note_progress(now);
            if shutting_down && sink.shed_at().is_some_and(|at| now >= at) {
                sink.shedding = true;
            }
            if sink.shedding && sink.has_room() {
                sink.shedding = false;
                let lines = std::mem::take(&mut sink.shed_lines);
                self.shed_reported += lines;
                let shed = Event::OutputShed {
                    lines,
                    at_exit: false,
                };
                self.sup.handle(shed, now, actions);
            }
        }
    }

    /// New connections and request lines; each complete request goes to the supervisor.
    /// From the last client first, so a client refused and removed does not shift the ones
    /// still to serve.
    fn serve_control(&mut self, ready: &[crate::control::Interest], actions: &mut Effects) {
        use crate::control::Interest;
        let Some(server) = self.control.as_mut() else {
            return;
        };
        let now = now();
        for interest in ready.iter().rev() {
            match *interest {
                Interest::Listener => {
                    server.accept(now);
                    if let Some(error) = server.take_warning() {
                        let what = "accepting a control client";
                        self.sup
                            .handle(Event::DriverFailed { what, error }, now, actions);
                    }
                }
                Interest::Client(c) => {
                    if let Some((client, request)) = server.readable(c, now) {
                        self.sup
                            .handle(Event::Control { client, request }, now, actions);
                    }
                }
            }
        }
    }

    /// HTTP connections: new ones, requests read, responses written. A complete request
    /// is answered from the supervisor's views at once; nothing it asks changes anything.
    /// Connections are served after the listener here: they keep their slots, and an
    /// eviction by an accept only closes one already served or still silent.
    fn serve_http(&mut self, ready: &[crate::http::Interest], actions: &mut Effects) {
        use crate::http::Interest;
        if self.http.is_none() {
            return;
        }
        let now = now();
        for interest in ready {
            let Interest::Connection(slot) = *interest else {
                continue;
            };
            let asked = self.http.as_mut().and_then(|h| h.ready(slot, now));
            if let Some(asked) = asked {
                let response = self.answer_http(asked.request.endpoint, now);
                if let Some(server) = self.http.as_mut() {
                    server.respond(asked, &response, now);
                }
            }
        }
        if ready.iter().any(|i| matches!(i, Interest::Listener))
            && let Some(server) = self.http.as_mut()
        {
            server.accept(now);
            if let Some(error) = server.take_warning() {
                let what = "accepting an HTTP client";
                self.sup
                    .handle(Event::DriverFailed { what, error }, now, actions);
            }
        }
    }

    /// What the supervisor's views say for `endpoint`, formatted.
    fn answer_http(&self, endpoint: crate::http::Endpoint, now: Time) -> crate::http::Response {
        use crate::http::{Endpoint, Response, response};
        match endpoint {
            Endpoint::Healthz => Response::verdict(self.sup.health(), "healthy"),
            Endpoint::Readyz => Response::verdict(self.sup.readiness(), "ready"),
            Endpoint::Status => Response::ok(response::JSON, self.sup.status_document(now) + "\n"),
            Endpoint::Metrics => {
                let metrics = self.sup.metrics(self.output_counts(), now);
                Response::ok(response::METRICS, metrics)
            }
        }
    }

    /// The lines the sinks dropped so far, for `/metrics`.
    fn output_counts(&self) -> crate::supervisor::OutputCounts {
        let own = self.sinks.iter().map(|s| s.dropped).sum();
        let shed: u64 = self.sinks.iter().map(|s| s.shed_lines).sum();
        crate::supervisor::OutputCounts {
            own_lines_dropped: own,
            daemon_lines_dropped: self.shed_reported + shed,
        }
    }

    fn build_poll_set(&mut self) {
        self.poll_fds.clear();
        self.poll_sources.clear();
        let mut add = |fd: i32, events: i16, source: Source| {
            self.poll_fds.push(PollFd {
                fd,
                events,
                revents: 0,
            });
            self.poll_sources.push(source);
        };
        add(self.signals.as_raw_fd(), POLLIN, Source::Signals);
        for (fd, daemon, stream) in self.pipes.readable(&self.sinks) {
            add(fd, POLLIN, Source::Pipe { daemon, stream });
        }
        for (i, sink) in self.sinks.iter().enumerate() {
            if sink.wants_write() {
                add(sink.fd(), POLLOUT, Source::Sink(i));
            }
        }
        if let Some(server) = &self.control {
            for (fd, interest) in server.interests() {
                add(fd, POLLIN, Source::Control(interest));
            }
        }
        for (fd, events, interest) in self.probes.interests() {
            add(fd, events, Source::Ready(interest));
        }
        for (fd, events, id) in self.live.interests() {
            add(fd, events, Source::Live(id));
        }
        for (fd, id) in self.notify.interests() {
            add(fd, POLLIN, Source::Notify(id));
        }
        for (fd, events, index) in self.log_clients.interests() {
            add(fd, events, Source::LogClient(index));
        }
        if let Some(server) = &self.http {
            for (fd, events, interest) in server.interests() {
                add(fd, events, Source::Http(interest));
            }
        }
    }

    /// Reads every queued signal. Returns whether SIGCHLD was among them.
    fn read_signals(&mut self, actions: &mut Effects) -> bool {
        let mut buf = [0u8; SIGINFO_SIZE * 16];
        let mut saw_child = false;
        loop {
            let n = match rustix::io::read(&self.signals, &mut buf) {
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(e) => {
                    let error = e.to_string();
                    let what = "reading signals";
                    self.sup
                        .handle(Event::DriverFailed { what, error }, now(), actions);
                    break;
                }
            };
            // After the read: it may have blocked for a long time.
            let now = now();
            for record in buf[..n].chunks_exact(SIGINFO_SIZE) {
                let Some(info) = SignalInfo::parse(record) else {
                    continue;
                };
                if info.signo == libc_sig::CHLD {
                    saw_child = true;
                } else if info.code == SI_USER && info.sender == self.my_pid as u32 {
                    // Sent by bundle-init to itself: SIGPIPE from writing to a log reader
                    // that went away. Not a request from anyone.
                } else {
                    self.sup
                        .handle(Event::Signal(Sig(info.signo)), now, actions);
                }
            }
            // The signalfd blocks: read again only if the buffer was full and more is ready.
            let mut more = [PollFd {
                fd: self.signals.as_raw_fd(),
                events: POLLIN,
                revents: 0,
            }];
            if n < buf.len() || !matches!(sys::wait_for(&mut more, 0), Ok(1)) {
                break;
            }
        }
        saw_child
    }

    /// Reaps every child that has exited, tracked or not, so none stays a zombie.
    fn reap(&mut self, now: Time, actions: &mut Effects) {
        self.marked = None;
        let children_remain = loop {
            match rustix::process::wait(WaitOptions::NOHANG) {
                Ok(Some((pid, status))) => {
                    let pid = pid.as_raw_nonzero().get();
                    let Some(status) = exit_status(status) else {
                        continue;
                    };
                    let mut leftovers = Vec::new();
                    if let Some(daemon) = self.sup.daemon_of(pid) {
                        // Its last lines belong before the line that says it exited.
                        let (pipes, mut lend) = self.pipes_and_lend();
                        pipes.reaped(daemon, &mut lend);
                        leftovers = self.leftovers_of(daemon);
                    }
                    // A later process may get the same pid: it has had no TERM.
                    self.termed.retain(|&p| p != pid);
                    let exited = Event::Exited {
                        pid,
                        status,
                        leftovers,
                    };
                    self.sup.handle(exited, now, actions);
                }
                Ok(None) => break true,
                Err(Errno::INTR) => continue,
                Err(Errno::CHILD) => break false,
                Err(e) => {
                    let error = e.to_string();
                    let failed = Event::DriverFailed {
                        what: "wait",
                        error,
                    };
                    self.sup.handle(failed, now, actions);
                    break true;
                }
            }
        };
        self.sup
            .handle(Event::ReapingDone { children_remain }, now, actions);
    }

    /// Carries out actions until none are left. Returns the exit code once asked to exit.
    fn execute(&mut self, actions: &mut Effects) -> Option<u8> {
        let mut exit = None;
        while let Some(action) = actions.pop() {
            match action {
                Action::Spawn(id) => {
                    let result = self.spawn(id);
                    self.sup
                        .handle(Event::Spawned { id, result }, now(), actions);
                }
                Action::Signal { pid, sig, group } => {
                    let target = if group { -pid } else { pid };
                    if let Err(e) = sys::send_signal(target, sig.0) {
                        let error = e.to_string();
                        let failed = Event::SignalFailed { target, sig, error };
                        self.sup.handle(failed, now(), actions);
                    }
                }
                Action::SignalLeftovers(sig) => {
                    self.signal_leftovers(sig);
                    // They may be gone already: look now rather than wait for a SIGCHLD.
                    self.reap(now(), actions);
                }
                Action::FindLeftovers { id, signal } => {
                    let pids = self.leftovers_of(id);
                    if let Some(sig) = signal {
                        signal_each(&pids, sig);
                    }
                    self.sup
                        .handle(Event::Leftovers { id, pids }, now(), actions);
                }
                Action::StartProbe { id, .. } => self.probes.start(id, now()),
                Action::CheckLive { id, pid } => self.check_live(id, pid, actions),
                Action::StopProbe(id) => self.probes.stop(id),
                Action::Reply { client, reply } => {
                    if let Some(server) = self.control.as_mut() {
                        server.reply(client, &reply);
                    }
                }
                Action::SendLog {
                    client,
                    ids,
                    lines,
                    follow,
                } => self.send_log(client, ids, lines, follow),
                Action::Log(level, line) => self.log(level, &line, None),
                Action::LogEvent(level, line, event) => self.log(level, &line, Some(&event)),
                Action::ReadBundle(request) => {
                    let plan = self.read_bundle();
                    self.sup
                        .handle(Event::BundleRead { request, plan }, now(), actions);
                }
                Action::Forget(id) => self.forget(id),
                Action::Exit(code) => exit = exit.or(Some(code)),
            }
        }
        for sink in &mut self.sinks {
            sink.flush_unpolled();
        }
        self.marked = None;
        exit
    }

    /// The bundle file again, validated as at start, descriptors included.
    fn read_bundle(&self) -> Result<crate::plan::Plan, ReadError> {
        let Some(source) = &self.settings.bundle else {
            return Err(ReadError::NoBundleFile);
        };
        source.reload().map_err(ReadError::Load)
    }

    /// Before a start: the output pipes and readiness check the daemon's definition asks
    /// for now (a reload may have added the daemon or changed it). Pipes are kept across
    /// restarts; a daemon that stops prefixing gets its last lines drained first.
    fn prepare_start(&mut self, id: DaemonId) -> Result<(), SpawnFailure> {
        let Some(spec) = self.sup.spec(id) else {
            return Err(SpawnFailure {
                transient: false,
                code: 127,
                message: "it is not defined any more".to_string(),
            });
        };
        self.probes.set_check(id, spec.ready.clone());
        match (self.pipes.has(id), spec.prefix_output) {
            (false, true) => {
                let sinks = [0, self.err_sink];
                let added = self.pipes.add(id, &spec.name, sinks);
                added.map_err(|e| SpawnFailure {
                    transient: true,
                    code: 126,
                    message: format!("cannot create its output pipes: {e}"),
                })?;
            }
            (true, false) => {
                let (pipes, mut lend) = self.pipes_and_lend();
                pipes.remove(id, &mut lend);
            }
            _ => {}
        }
        Ok(())
    }

    fn spawn(&mut self, id: DaemonId) -> Result<i32, SpawnFailure> {
        self.prepare_start(id)?;
        // The pipes' write ends go straight to the child's 1 and 2 (dup2 in the child).
        let mut output = match self.pipes.write_ends(id) {
            Some([stdout, stderr]) => ChildOutput {
                stdout: Some(stdout),
                stderr: Some(stderr),
                notify: None,
            },
            None => ChildOutput::default(),
        };
        // The write end of a notify pipe becomes the child's FD; ours closes after the spawn.
        let notify = self.probes.notify_pipe(id);
        let notify = notify.map_err(|e| self.pipe_failure(id, e))?;
        output.notify = notify.as_ref().map(|n| (n.write.as_raw_fd(), n.target));
        let extra_env = self.notify_environment(id)?;
        let Some(spec) = self.sup.spec(id) else {
            return Err(SpawnFailure {
                transient: false,
                code: 127,
                message: "it is not defined any more".to_string(),
            });
        };
        spawn::spawn(id, spec, self.settings.setup, output, extra_env)
    }

    /// A pipe for daemon `id`'s start could not be made: the failure names its program.
    fn pipe_failure(&self, id: DaemonId, error: std::io::Error) -> SpawnFailure {
        let spec = self.sup.spec(id);
        let program = spec.and_then(|s| s.argv.first()).map(OsString::as_os_str);
        spawn::pipe_failure(program.unwrap_or_default(), error)
    }

    /// For a daemon with `ready = sd-notify`: a fresh notify socket, named in the
    /// `NOTIFY_SOCKET` it starts with (and `WATCHDOG_USEC` with a `watchdog`).
    fn notify_environment(
        &mut self,
        id: DaemonId,
    ) -> Result<Vec<(OsString, OsString)>, SpawnFailure> {
        let Some(spec) = self.sup.spec(id) else {
            return Ok(Vec::new());
        };
        if spec.ready != Some(ReadyCheck::SdNotify) {
            self.notify.close(id);
            return Ok(Vec::new());
        }
        let watchdog = spec.live.watchdog;
        let name = self.notify.open_for(id).map_err(|e| SpawnFailure {
            transient: true,
            code: 126,
            message: format!("cannot create its notify socket: {e}"),
        })?;
        let mut env = vec![(OsString::from("NOTIFY_SOCKET"), name)];
        if let Some(every) = watchdog {
            let micros = every.as_micros().to_string();
            env.push((OsString::from("WATCHDOG_USEC"), OsString::from(micros)));
        }
        Ok(env)
    }

    /// Runs daemon `id`'s liveness check of process `pid`, as its definition has it now.
    fn check_live(&mut self, id: DaemonId, pid: i32, actions: &mut Effects) {
        let Some(spec) = self.sup.spec(id) else {
            return;
        };
        let Some(check) = spec.live.check.clone() else {
            return;
        };
        let timeout = spec.live.timeout;
        if let Some((id, pid, result)) = self.live.start(id, pid, &check, timeout, now()) {
            self.sup
                .handle(Event::LiveChecked { id, pid, result }, now(), actions);
        }
    }

    /// The datagrams queued on daemon `id`'s notify socket, each to the supervisor.
    fn read_notifications(&mut self, id: DaemonId, now: Time, actions: &mut Effects) {
        for (from, message) in self.notify.receive(id) {
            self.sup
                .handle(Event::Notified { id, from, message }, now, actions);
        }
    }

    /// The processes with daemon `id`'s mark, but its main one. None can exist while every
    /// child of bundle-init is a daemon's main process: whatever a daemon leaves is adopted
    /// by bundle-init, directly or under a process that was. That look (one small read)
    /// spares the walk of /proc on the usual exit, which leaves nothing.
    fn leftovers_of(&mut self, id: DaemonId) -> Vec<i32> {
        let Some(marks) = self.settings.setup.marks else {
            return Vec::new();
        };
        let children = listed_children();
        if children.is_some_and(|c| c.iter().all(|&pid| self.sup.daemon_of(pid).is_some())) {
            return Vec::new();
        }
        let main = self.sup.daemon_pid(id);
        let me = self.my_pid;
        let mark = marks.of(id);
        self.marked
            .get_or_insert_with(|| crate::members::marked(me))
            .iter()
            .filter(|&&(pid, m)| m == mark && Some(pid) != main)
            .map(|&(pid, _)| pid)
            .collect()
    }

    /// As PID 1, kill(-1) reaches every other process in the namespace. Otherwise only
    /// bundle-init's own children that are not daemons: never processes it does not own.
    ///
    /// The supervisor asks again whenever orphans may have been adopted. SIGTERM goes to
    /// each process once (a second TERM means "hurry" to some programs); SIGKILL to
    /// whatever is there each time.
    fn signal_leftovers(&mut self, sig: Sig) {
        let once = sig.0 == sys::libc_sig::TERM;
        if self.settings.pid1 {
            if !(once && self.termed.contains(&-1)) {
                let _ = sys::send_signal(-1, sig.0);
                if once {
                    self.termed.push(-1);
                }
            }
            return;
        }
        for pid in own_children() {
            if self.sup.daemon_of(pid).is_some() || (once && self.termed.contains(&pid)) {
                continue;
            }
            let _ = sys::send_signal(pid, sig.0);
            if once {
                self.termed.push(pid);
            }
        }
    }

    /// A daemon a reload removed: its pipes and held lines go, its followers stop following.
    fn forget(&mut self, id: DaemonId) {
        let (pipes, mut lend) = self.pipes_and_lend();
        pipes.remove(id, &mut lend);
        self.log_clients.forget(id);
        self.probes.forget(id);
        self.live.forget(id);
        self.notify.close(id);
    }

    /// The output pipes, and what they borrow from the rest of the runtime.
    fn pipes_and_lend(&mut self) -> (&mut OutputPipes, Lend<'_>) {
        let lend = Lend {
            sinks: &mut self.sinks,
            clients: &mut self.log_clients,
            sup: &self.sup,
        };
        (&mut self.pipes, lend)
    }

    /// Answers a `logs` client with the lines held of `ids`, and with `follow` hands it
    /// their new lines from now on. It leaves the control server's slots either way.
    fn send_log(
        &mut self,
        client: crate::supervisor::ClientId,
        ids: Vec<DaemonId>,
        lines: Option<usize>,
        follow: bool,
    ) {
        let Some(fd) = self.control.as_mut().and_then(|s| s.take_client(client)) else {
            return;
        };
        if self.log_clients.is_full() {
            return LogClients::refuse(&fd);
        }
        let mut answer = b"OK\n".to_vec();
        for &id in &ids {
            self.pipes.write_held(id, lines, &mut answer);
        }
        let following = if follow { ids } else { Vec::new() };
        self.log_clients.add(fd, answer, following);
        self.log_clients.flush_all(now());
    }

    /// Writes a line the supervisor decided to show, in the bundle's style.
    fn log(&mut self, level: Level, line: &str, event: Option<&crate::supervisor::LogEvent>) {
        use crate::logline::{json_own_line, rfc3339, wall_clock_ms};
        let style = self.pipes.style;
        let time = style.wants_time().then(|| rfc3339(wall_clock_ms()));
        let sink = self.err_sink;
        match time {
            Some(time) if style.json => {
                let mut record = Vec::with_capacity(128 + line.len());
                json_own_line(&mut record, level, line, event, &time);
                self.sinks[sink].log_line(&record);
            }
            _ => {
                let tag = if level == Level::Error { "error: " } else { "" };
                let text = match time {
                    None => format!("[bundle-init] {tag}{line}\n"),
                    Some(time) => {
                        let stamp = std::str::from_utf8(&time).unwrap_or_default();
                        format!("{stamp} [bundle-init] {tag}{line}\n")
                    }
                };
                self.sinks[sink].log_line(text.as_bytes());
            }
        }
    }
}

fn exit_status(status: WaitStatus) -> Option<ExitStatus> {
    if let Some(code) = status.exit_status() {
        Some(ExitStatus::Code((code & 0xff) as u8))
    } else {
        status.terminating_signal().map(ExitStatus::Signal)
    }
}

/// Children of this process, from /proc/thread-self/children (empty without /proc).
fn own_children() -> Vec<i32> {
    listed_children().unwrap_or_default()
}

/// Children of this (single-threaded) process, or None when the kernel does not list them.
/// Through /proc/thread-self, not /proc/PID: under `unshare --pid` without its own /proc
/// mount, PID (1 to bundle-init) would name the host's init, and every exit would look as
/// if it left something, a walk of the host's /proc each time.
fn listed_children() -> Option<Vec<i32>> {
    let text = std::fs::read_to_string("/proc/thread-self/children").ok()?;
    Some(
        text.split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect(),
    )
}

/// A stop signal, then SIGCONT so a stopped process can act on it, to each of `pids`.
/// Failures are for processes already gone.
fn signal_each(pids: &[i32], sig: Sig) {
    for &pid in pids {
        let _ = sys::send_signal(pid, sig.0);
        if sig.0 != libc_sig::KILL && sig.0 != libc_sig::CONT {
            let _ = sys::send_signal(pid, libc_sig::CONT);
        }
    }
}
