//! The recipes in examples/, each built from its Containerfile as written (BASE and
//! BUNDLE_INIT pointed at the local images) and run under podman and Docker Engine, with
//! the real daemons from Debian and real clients from the host (curl, psql, redis-cli) in
//! the container's network namespace. Each test prints its figures (build, restart and
//! stop times, the held connection's answers) with `--nocapture`.
// A test body tells one story from start to end; the 60-line limit is for src/.
#![allow(clippy::too_many_lines)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::TempDir;
use common::engines::{Engine, Instance, recipe_image, started_pid, status_lines};

/// `NAME restarted (WHY): pid A -> B in X ms` for daemon `name`, the latest: (A, B, X).
fn restarted(c: &Instance, name: &str) -> (i32, i32, String) {
    let line = c.stderr.wait_for(&format!("{name} restarted"), |l| {
        l.starts_with(&format!("[bundle-init] {name} restarted ("))
    });
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "->").unwrap();
    (
        words[at - 1].parse().unwrap(),
        words[at + 1].parse().unwrap(),
        words[at + 3..].join(" "),
    )
}

/// The uid a process in the container runs as.
fn uid_of(c: &Instance, pid: i32) -> String {
    let (code, out, err) = c.exec(&[
        "sed",
        "-n",
        r"s/^Uid:\t\([0-9]*\).*/\1/p",
        &format!("/proc/{pid}/status"),
    ]);
    assert_eq!(code, 0, "{err}");
    out.trim().to_string()
}

/// What a stop must show in the log: each daemon exited by itself (no SIGKILL, nothing
/// left behind for the sweep).
fn assert_clean_stop(c: &Instance, daemons: &[&str]) {
    c.stderr.wait_closed();
    let log = c.stderr.text();
    for name in daemons {
        assert!(
            log.contains(&format!("[bundle-init] {name} exited with code 0"))
                || log.contains(&format!("[bundle-init] {name} was killed by SIGTERM")),
            "{name} did not end cleanly:\n{log}"
        );
    }
    assert!(!log.contains("sending SIGKILL"), "{log}");
    assert!(!log.contains(" left "), "something was left behind:\n{log}");
}

// ---------------------------------------------------------------------------------------
// nginx + php-fpm

/// An HTTP/1.1 keep-alive connection the test holds itself (one TCP connection for
/// every request it sends).
struct Http {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

/// A response: status code, headers (lower-case names), body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

impl Http {
    fn open(c: &Instance) -> Http {
        let stream = c.connect("127.0.0.1:8080");
        let reader = BufReader::new(stream.try_clone().unwrap());
        Http { stream, reader }
    }

    /// GET `path`; None when the server has closed the connection.
    fn get(&mut self, path: &str) -> Option<Response> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        self.stream.write_all(request.as_bytes()).ok()?;
        let status_line = self.line()?;
        let status = status_line.split(' ').nth(1)?.parse().ok()?;
        let mut headers = Vec::new();
        loop {
            let line = self.line()?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':')?;
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
        let mut response = Response {
            status,
            headers,
            body: String::new(),
        };
        if response.header("transfer-encoding") == "chunked" {
            loop {
                let size = usize::from_str_radix(&self.line()?, 16).ok()?;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk).ok()?;
                if size == 0 {
                    break;
                }
                response.body += &String::from_utf8_lossy(&chunk[..size]);
            }
        } else {
            let length = response.header("content-length").parse().unwrap_or(0);
            let mut body = vec![0; length];
            self.reader.read_exact(&mut body).ok()?;
            response.body = String::from_utf8_lossy(&body).into_owned();
        }
        Some(response)
    }

    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_string()),
        }
    }
}

/// curl, from the host, in the container's network namespace: (exit code, body).
fn curl(c: &Instance, path: &str) -> (i32, String) {
    let out = c
        .net_command("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:8080{path}"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// "php-fpm worker W of master M": (W, M).
fn fpm_pids(body: &str) -> (i32, i32) {
    let words: Vec<&str> = body.split_whitespace().collect();
    assert!(body.starts_with("php-fpm worker "), "{body}");
    (words[2].parse().unwrap(), words[5].parse().unwrap())
}

fn nginx_workers(c: &Instance, master: i32) -> Vec<i32> {
    c.processes()
        .into_iter()
        .filter(|(_, ppid, cmd)| *ppid == master && cmd.starts_with("nginx: worker process"))
        .map(|(pid, _, _)| pid)
        .collect()
}

fn nginx_php_fpm_story(engine: Engine) {
    if !engine.ready() {
        return;
    }
    let (image, built) = recipe_image(engine, "nginx-php-fpm");
    let mut flags = vec![];
    if engine == Engine::Docker {
        // Docker runs the image's HEALTHCHECK itself: every second here, not every 30 s.
        flags.extend(["--health-interval", "1s"]);
    }
    let c = Instance::run(engine, &flags, &image, &[]);
    c.stderr.wait_for_text("] nginx is ready");
    let log = c.stderr.all();
    let at = |text: &str| log.iter().position(|l| l.contains(text)).unwrap();
    assert!(
        at("] php-fpm is ready") < at("] nginx started"),
        "php-fpm is ready before nginx starts: {log:#?}"
    );
    let fpm = started_pid(&c.stderr, "php-fpm");
    let nginx = started_pid(&c.stderr, "nginx");
    assert_eq!(uid_of(&c, fpm), "33", "php-fpm runs as www-data");
    assert_eq!(uid_of(&c, nginx), "33", "nginx runs as www-data");
    let workers = nginx_workers(&c, nginx);
    assert_eq!(workers.len(), 2, "{:?}", c.processes());
    for worker in &workers {
        assert_eq!(uid_of(&c, *worker), "33");
    }

    // It serves: nginx hands index.php to php-fpm.
    let (code, body) = curl(&c, "/index.php");
    assert_eq!(code, 0, "{body}");
    assert_eq!(fpm_pids(&body).1, fpm);
    // Both logs are on the container's output.
    c.stdout.wait_for("nginx's access log", |l| {
        l.starts_with("[nginx] 127.0.0.1 - ") && l.contains("\"GET /index.php HTTP/1.1\" 200")
    });
    c.stderr.wait_for("php-fpm's access log", |l| {
        l.starts_with("[php-fpm] ") && l.contains("\"GET /index.php\" 200")
    });

    // A keep-alive connection to nginx, held across a restart of php-fpm (USR1).
    let mut held = Http::open(&c);
    let first = held.get("/index.php").expect("an answer");
    assert_eq!(first.status, 200);
    let connection = first.header("x-connection").to_string();
    assert!(connection.ends_with(" 1"), "{connection}");
    c.kill("USR1");
    let (old, new, took) = restarted(&c, "php-fpm");
    assert_eq!(old, fpm);
    c.stderr.wait_for_n(2, "php-fpm ready again", |l| {
        l.contains("] php-fpm is ready")
    });
    let second = held
        .get("/index.php")
        .expect("the held connection still answers");
    assert_eq!(second.status, 200);
    assert_eq!(fpm_pids(&second.body).1, new, "the new php-fpm answers");
    let same = connection.replace(" 1", " 2");
    assert_eq!(
        second.header("x-connection"),
        same,
        "the same connection, its second request"
    );
    assert_eq!(
        started_pid(&c.stderr, "nginx"),
        nginx,
        "nginx was not touched"
    );
    assert!(
        !c.processes()
            .iter()
            .any(|(pid, ppid, _)| *pid == fpm || *ppid == fpm),
        "nothing of the old php-fpm is left: {:?}",
        c.processes()
    );
    eprintln!(
        "[{}] php-fpm restart (USR1): {took}; held connection: {:?} -> {:?}",
        engine.name(),
        first.body.trim(),
        second.body.trim()
    );

    // HUP reaches nginx only: it reloads its configuration, same master, new workers. The
    // old workers close their idle keep-alive connections and exit (nginx's graceful
    // reload).
    c.kill("HUP");
    c.stderr.wait_for("nginx reloading", |l| {
        l.starts_with("[nginx] ") && l.contains("signal 1 (SIGHUP) received")
    });
    for worker in &workers {
        c.stderr
            .wait_for(&format!("old worker {worker} to exit"), |l| {
                l.starts_with("[nginx] ") && l.ends_with(&format!(" {worker}#{worker}: exit"))
            });
    }
    assert_eq!(
        held.get("/index.php").map(|r| r.status),
        None,
        "the idle connection was closed"
    );
    let deadline = Instant::now() + common::PATIENCE;
    let new_workers = loop {
        let now = nginx_workers(&c, nginx);
        if now.len() == 2 && now.iter().all(|w| !workers.contains(w)) {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "workers {now:?}, old {workers:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let (code, body) = curl(&c, "/index.php");
    assert_eq!((code, fpm_pids(&body).1), (0, new));
    let status = status_lines(&c.status());
    assert!(
        status["nginx"].contains(&format!(" running   pid {nginx} ")),
        "{status:?}"
    );
    assert!(status["nginx"].contains("restarts 0"), "{status:?}");
    assert!(status["php-fpm"].contains("restarts 1"), "{status:?}");
    assert!(status["run-dirs"].contains(" done "), "{status:?}");
    assert_eq!(
        started_pid(&c.stderr, "php-fpm"),
        new,
        "php-fpm did not see the HUP"
    );
    eprintln!(
        "[{}] nginx reload (HUP): master {nginx} kept, workers {workers:?} -> {new_workers:?}",
        engine.name()
    );

    // The image's HEALTHCHECK (exec form): healthy.
    match engine {
        Engine::Podman => {
            let out = engine.cmd(&["healthcheck", "run", &c.name]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Engine::Docker => {}
    }
    c.wait_health("healthy");

    // Stop: nginx first (QUIT, graceful), then php-fpm (QUIT), within the budget.
    let (took, code) = c.stop(10);
    assert_eq!(code, 0);
    assert!(took < Duration::from_secs(9), "stop took {took:?}");
    assert_clean_stop(&c, &["nginx", "php-fpm"]);
    let log = c.text();
    assert!(log.contains("signal 3 (SIGQUIT) received"), "{log}");
    assert!(
        log.contains("[php-fpm] ") && log.contains("NOTICE: Finishing ..."),
        "{log}"
    );
    let err = c.stderr.all();
    let at = |text: &str| err.iter().position(|l| l.contains(text)).unwrap();
    assert!(at("] nginx exited") < at("] php-fpm exited"), "{err:#?}");
    eprintln!(
        "[{}] nginx-php-fpm: built in {built:.1?}, stopped in {took:.3?}, exit code {code}",
        engine.name()
    );
}

#[test]
fn nginx_php_fpm_serves_restarts_php_fpm_under_a_held_connection_reloads_nginx_and_stops_cleanly_on_podman()
 {
    nginx_php_fpm_story(Engine::Podman);
}

#[test]
fn nginx_php_fpm_serves_restarts_php_fpm_under_a_held_connection_reloads_nginx_and_stops_cleanly_on_docker()
 {
    nginx_php_fpm_story(Engine::Docker);
}

/// curl of slow.php, started in the background; returns once php-fpm has begun to
/// answer it (slow.php says "sleeping" before it sleeps, unbuffered).
fn slow_request(c: &Instance, seconds: u32) -> Child {
    let mut child = c
        .net_command("curl")
        .args(["--silent", "--no-buffer"])
        .arg(format!("http://127.0.0.1:8080/slow.php?seconds={seconds}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "sleeping\n");
    child
}

/// nginx restarted while a request is in flight. With the recipe's settings
/// (worker_shutdown_timeout 3s below the grace of 5s) nginx ends the request and stops by
/// itself. With a grace shorter than that, bundle-init SIGKILLs the master at the grace;
/// its workers (in its process group, and marked as its processes) go with it, and the
/// new master binds the port.
fn nginx_restart_with_a_request_in_flight(engine: Engine) {
    if !engine.ready() {
        return;
    }
    let (image, _) = recipe_image(engine, "nginx-php-fpm");
    // 1. The recipe as it is.
    let c = Instance::run(engine, &[], &image, &[]);
    c.stderr.wait_for_text("] nginx is ready");
    let master = started_pid(&c.stderr, "nginx");
    let mut request = slow_request(&c, 30);
    let (code, out, err) = c.exec(&["/bundle-init", "restart", "nginx"]);
    assert_eq!(code, 0, "{out}{err}");
    let (old, new, took) = restarted(&c, "nginx");
    assert_eq!(old, master);
    assert!(
        !c.stderr.text().contains("sending SIGKILL"),
        "{}",
        c.stderr.text()
    );
    let _ = request.kill();
    let _ = request.wait();
    c.stderr
        .wait_for_n(2, "nginx ready again", |l| l.contains("] nginx is ready"));
    assert_eq!(curl(&c, "/index.php").0, 0);
    eprintln!(
        "[{}] nginx restart with a request in flight, worker_shutdown_timeout 3s: {old} -> {new} {took}",
        engine.name()
    );
    drop(c);

    // 2. A grace (1 s) shorter than nginx's own timeout: SIGKILL at the grace.
    let dir = TempDir::new("nginx-grace");
    let recipe = std::fs::read_to_string(format!(
        "{}/examples/nginx-php-fpm/web.bundle",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let nginx_section = recipe.find("[nginx]").unwrap();
    let (head, tail) = recipe.split_at(nginx_section);
    assert!(tail.contains("\ngrace = 5s\n"), "{tail}");
    let edited = format!("{head}{}", tail.replace("\ngrace = 5s\n", "\ngrace = 1s\n"));
    let path = dir.write("web.bundle", &edited);
    let mount = format!("{path}:/etc/bundle-init/web.bundle:ro");
    let c = Instance::run(engine, &["-v", &mount], &image, &[]);
    c.stderr.wait_for_text("] nginx is ready");
    let master = started_pid(&c.stderr, "nginx");
    let workers = nginx_workers(&c, master);
    let mut request = slow_request(&c, 30);
    let asked = Instant::now();
    let (code, out, err) = c.exec(&["/bundle-init", "restart", "nginx"]);
    assert_eq!(code, 0, "{out}{err}");
    c.stderr.wait_for_text(&format!(
        "nginx (pid {master}) did not stop within its grace: sending SIGKILL"
    ));
    let (_, new, took) = restarted(&c, "nginx");
    c.stderr.wait_for_n(2, "the new master to be ready", |l| {
        l.contains("] nginx is ready")
    });
    let ready_after = asked.elapsed();
    let status = request.wait().unwrap();
    assert!(!status.success(), "the request in flight was cut");
    let now = c.processes();
    for worker in &workers {
        assert!(
            !now.iter().any(|(pid, _, _)| pid == worker),
            "old worker {worker} is left: {now:?}"
        );
    }
    assert_eq!(nginx_workers(&c, new).len(), 2, "{now:?}");
    let (code, body) = curl(&c, "/index.php");
    assert_eq!(code, 0, "the new master serves on its port: {body}");
    let log = c.text();
    assert!(!log.contains("Address already in use"), "{log}");
    eprintln!(
        "[{}] nginx restart killed at its 1 s grace: {master} -> {new} {took}; ready again {ready_after:.3?} after the request",
        engine.name()
    );
}

#[test]
fn nginx_restarted_with_a_request_in_flight_stops_by_itself_or_at_its_grace_and_its_new_master_binds_on_podman()
 {
    nginx_restart_with_a_request_in_flight(Engine::Podman);
}

#[test]
fn nginx_restarted_with_a_request_in_flight_stops_by_itself_or_at_its_grace_and_its_new_master_binds_on_docker()
 {
    nginx_restart_with_a_request_in_flight(Engine::Docker);
}

// ---------------------------------------------------------------------------------------
// postgres + app

const PASSWORD: &str = "recipe-test-password";

/// A psql session held open by the test: one backend for every query it sends.
struct Psql {
    child: Child,
    reader: BufReader<std::process::ChildStdout>,
}

impl Psql {
    fn open(c: &Instance) -> Psql {
        let mut child = c
            .net_command("psql")
            .args(["--no-psqlrc", "--tuples-only", "--no-align", "--quiet"])
            .args([
                "--host",
                "127.0.0.1",
                "--username",
                "app",
                "--dbname",
                "app",
            ])
            .env("PGPASSWORD", PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let reader = BufReader::new(child.stdout.take().unwrap());
        Psql { child, reader }
    }

    /// One query whose answer is one line.
    fn ask(&mut self, query: &str) -> String {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{query};").unwrap();
        stdin.flush().unwrap();
        let mut answer = String::new();
        self.reader.read_line(&mut answer).unwrap();
        answer.trim().to_string()
    }
}

impl Drop for Psql {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn postgres_app_story(engine: Engine) {
    if !engine.ready() {
        return;
    }
    let (image, built) = recipe_image(engine, "postgres-app");
    let env = format!("APP_DB_PASSWORD={PASSWORD}");
    let mut c = Instance::run(engine, &["-e", &env], &image, &[]);
    c.stdout.wait_for_text("[app] app: heartbeat 1");
    c.stdout.wait_for_text("[initdb] initdb: made a cluster");
    let postgres = started_pid(&c.stderr, "postgres");
    assert_eq!(uid_of(&c, postgres), "999", "postgres runs as its own uid");
    let app = started_pid(&c.stderr, "app");
    assert_eq!(uid_of(&c, app), "65534", "the app runs as another");
    let log = c.stderr.all();
    let at = |text: &str| log.iter().position(|l| l.contains(text)).unwrap();
    assert!(
        at("] initdb done") < at("] postgres started")
            && at("] postgres is ready") < at("] migrate started")
            && at("] migrate done") < at("] app started"),
        "{log:#?}"
    );

    // A psql session from the host, held across a restart of the app.
    let mut psql = Psql::open(&c);
    let backend = psql.ask("SELECT pg_backend_pid()");
    let before: u64 = psql.ask("SELECT count(*) FROM heartbeats").parse().unwrap();
    assert!(before >= 1);
    let (code, out, err) = c.exec(&["/bundle-init", "restart", "app"]);
    assert_eq!(code, 0, "{out}{err}");
    let (old, new, took) = restarted(&c, "app");
    assert_eq!(old, app);
    c.stdout.wait_for_text("[app] app: stopping");
    c.stdout
        .wait_for_n(2, "the new app's first heartbeat", |l| {
            l.starts_with("[app] app: started")
        });
    let beats = format!("SELECT count(*) FROM heartbeats WHERE pid = {new}");
    let deadline = Instant::now() + common::PATIENCE;
    let by_new = loop {
        let n: u64 = psql.ask(&beats).parse().unwrap();
        if n > 0 {
            break n;
        }
        assert!(Instant::now() < deadline, "the new app never wrote");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        psql.ask("SELECT pg_backend_pid()"),
        backend,
        "the same session"
    );
    assert_eq!(
        started_pid(&c.stderr, "postgres"),
        postgres,
        "postgres was not touched"
    );
    eprintln!(
        "[{}] app restart: {took}; held psql session (backend {backend}): {before} heartbeats before, {by_new} from the new app after",
        engine.name()
    );
    drop(psql);

    // Stop: the app first, then postgres with a fast shutdown.
    let (took, code) = c.stop(10);
    assert_eq!(code, 0, "{}", c.text());
    assert!(took < Duration::from_secs(9), "stop took {took:?}");
    assert_clean_stop(&c, &["app", "postgres"]);
    let log = c.text();
    assert!(
        log.contains("LOG:  received fast shutdown request"),
        "{log}"
    );
    assert!(log.contains("LOG:  database system is shut down"), "{log}");
    let err = c.stderr.all();
    let at = |text: &str| err.iter().position(|l| l.contains(text));
    let app_ended = at("] app exited").or(at("] app was killed"));
    assert!(
        app_ended.unwrap() < at("received fast shutdown request").unwrap(),
        "the app stopped before postgres: {err:#?}"
    );
    assert!(
        !log.contains("terminating connection due to administrator command"),
        "{log}"
    );

    // The next start finds the cluster shut down cleanly: no recovery.
    c.start_again();
    c.stderr.wait_for_n(2, "the app started again", |l| {
        l.starts_with("[bundle-init] app started")
    });
    c.stdout
        .wait_for_text("[initdb] initdb: /var/lib/postgresql/data already holds a cluster");
    let log = c.text();
    assert_eq!(
        log.matches("LOG:  database system was shut down at")
            .count(),
        2,
        "{log}"
    );
    assert!(!log.contains("not properly shut down"), "{log}");
    assert!(!log.contains("automatic recovery in progress"), "{log}");
    let (again, code) = c.stop(10);
    assert_eq!(code, 0);
    eprintln!(
        "[{}] postgres-app: built in {built:.1?}, stopped in {took:.3?} and {again:.3?}, exit code 0; second start without recovery",
        engine.name()
    );
}

#[test]
fn postgres_app_initialises_keeps_a_psql_session_across_an_app_restart_and_shuts_down_fast_without_recovery_on_podman()
 {
    postgres_app_story(Engine::Podman);
}

#[test]
fn postgres_app_initialises_keeps_a_psql_session_across_an_app_restart_and_shuts_down_fast_without_recovery_on_docker()
 {
    postgres_app_story(Engine::Docker);
}

// ---------------------------------------------------------------------------------------
// redis + worker

/// An interactive redis-cli from the host, held open by the test: one connection.
struct RedisCli {
    child: Child,
    reader: BufReader<std::process::ChildStdout>,
}

impl RedisCli {
    fn open(c: &Instance) -> RedisCli {
        let mut child = c
            .net_command("redis-cli")
            .args(["-h", "127.0.0.1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let reader = BufReader::new(child.stdout.take().unwrap());
        RedisCli { child, reader }
    }

    /// One command whose reply is one line.
    fn ask(&mut self, command: &str) -> String {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
        let mut answer = String::new();
        self.reader.read_line(&mut answer).unwrap();
        answer.trim().to_string()
    }
}

impl Drop for RedisCli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-off redis-cli command from the host: its output.
fn redis(c: &Instance, args: &[&str]) -> String {
    let out = c
        .net_command("redis-cli")
        .args(["-h", "127.0.0.1", "--raw"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn redis_worker_story(engine: Engine) {
    if !engine.ready() {
        return;
    }
    let (image, built) = recipe_image(engine, "redis-worker");
    let c = Instance::run(engine, &[], &image, &[]);
    c.stdout.wait_for_text("[worker] worker: started");
    c.stderr.wait_for_text("] worker started");
    let log = c.text();
    assert!(
        log.contains("[redis] ") && log.contains("Supervised by systemd"),
        "{log}"
    );
    let err = c.stderr.all();
    let at = |text: &str| err.iter().position(|l| l.contains(text)).unwrap();
    assert!(at("] redis is ready") < at("] worker started"), "{err:#?}");
    let redis_pid = started_pid(&c.stderr, "redis");
    assert_eq!(uid_of(&c, redis_pid), "999");
    let worker = started_pid(&c.stderr, "worker");

    // It works: a job in, its result out.
    redis(&c, &["RPUSH", "jobs", "job-1"]);
    assert_eq!(
        redis(&c, &["BLPOP", "done", "10"]),
        format!("done\njob-1 done by {worker}")
    );

    // A redis-cli connection held across two restarts of the worker (USR1).
    let mut held = RedisCli::open(&c);
    let id = held.ask("CLIENT ID");
    let mut answers = vec![held.ask("PING")];
    let mut worker = worker;
    for round in 1..=2 {
        c.kill("USR1");
        let (old, new, took) = c
            .stderr
            .wait_for_n(round, "worker restarted", |l| {
                l.starts_with("[bundle-init] worker restarted (SIGUSR1)")
            })
            .pop()
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let at = w.iter().position(|x| *x == "->").unwrap();
                (
                    w[at - 1].parse::<i32>().unwrap(),
                    w[at + 1].parse::<i32>().unwrap(),
                    w[at + 3..].join(" "),
                )
            })
            .unwrap();
        assert_eq!(old, worker);
        worker = new;
        c.stdout.wait_for_n(round + 1, "the worker started", |l| {
            l.starts_with("[worker] worker: started")
        });
        let job = format!("job-{}", round + 1);
        // redis-cli without a terminal prints bare replies, one element a line.
        assert_eq!(held.ask(&format!("RPUSH jobs {job}")), "1");
        assert_eq!(
            held.ask("BLPOP done 10"),
            "done",
            "the held connection answers"
        );
        let mut second = String::new();
        held.reader.read_line(&mut second).unwrap();
        assert_eq!(second.trim(), format!("{job} done by {new}"));
        assert_eq!(held.ask("CLIENT ID"), id, "the same connection");
        answers.push(second.trim().to_string());
        eprintln!(
            "[{}] worker restart {round} (USR1): {old} -> {new} {took}",
            engine.name()
        );
    }
    assert_eq!(
        started_pid(&c.stderr, "redis"),
        redis_pid,
        "redis was not touched"
    );
    let status = status_lines(&c.status());
    assert!(status["redis"].contains("ready yes"), "{status:?}");
    assert!(status["worker"].contains("restarts 2"), "{status:?}");
    eprintln!(
        "[{}] held redis-cli connection (client id {id}): {answers:?}",
        engine.name()
    );
    drop(held);

    // Stop: the worker first (its whole group), then redis, which saves.
    let (took, code) = c.stop(10);
    assert_eq!(code, 0, "{}", c.text());
    assert!(took < Duration::from_secs(9), "stop took {took:?}");
    assert_clean_stop(&c, &["worker", "redis"]);
    let log = c.text();
    assert!(
        log.contains("Received SIGTERM scheduling shutdown"),
        "{log}"
    );
    assert!(log.contains("DB saved on disk"), "{log}");
    let err = c.stderr.all();
    let at = |text: &str| err.iter().position(|l| l.contains(text)).unwrap();
    assert!(
        at("] worker exited with code 0") < at("] redis exited with code 0"),
        "the worker stopped (its trap) before redis: {err:#?}"
    );
    c.stdout.wait_for_text("[worker] worker: stopping");
    eprintln!(
        "[{}] redis-worker: built in {built:.1?}, stopped in {took:.3?}, exit code {code}",
        engine.name()
    );
}

#[test]
fn redis_worker_is_ready_by_sd_notify_keeps_a_redis_cli_connection_across_worker_restarts_and_saves_at_stop_on_podman()
 {
    redis_worker_story(Engine::Podman);
}

#[test]
fn redis_worker_is_ready_by_sd_notify_keeps_a_redis_cli_connection_across_worker_restarts_and_saves_at_stop_on_docker()
 {
    redis_worker_story(Engine::Docker);
}

/// redis moved off its port at run time (`CONFIG SET port`): the process runs on, but its
/// port refuses. The tcp liveness check fails three times in a row, 5 s apart, and
/// bundle-init restarts redis alone; it saves at the TERM and comes back on its port,
/// from its configuration, with its data. (A frozen redis, SIGSTOPped, is not caught this
/// way: the kernel accepts connections for it. examples/README.md says so.)
#[test]
fn redis_that_stops_answering_on_its_port_is_restarted_by_its_liveness_check_with_its_data_on_podman()
 {
    let engine = Engine::Podman;
    if !engine.ready() {
        return;
    }
    let (image, _) = recipe_image(engine, "redis-worker");
    let c = Instance::run(engine, &[], &image, &[]);
    c.stdout.wait_for_text("[worker] worker: started");
    let before = started_pid(&c.stderr, "redis");
    redis(&c, &["SET", "kept", "across the restart"]);
    assert!(status_lines(&c.status())["redis"].contains(" live ok"));
    let moved = Instant::now();
    assert_eq!(redis(&c, &["CONFIG", "SET", "port", "6380"]), "OK");
    for n in 1..=2 {
        c.stderr.wait_for_text(&format!(
            "redis failed its liveness check (connect to 127.0.0.1:6379 refused; {n} of 3 in a row)"
        ));
    }
    let (old, new, took) = restarted(&c, "redis");
    assert_eq!(old, before);
    let line = c.stderr.wait_for_text("] redis restarted (");
    assert!(
        line.contains("(liveness: connect to 127.0.0.1:6379 refused, 3 in a row)"),
        "{line}"
    );
    c.stderr
        .wait_for_n(2, "redis ready again", |l| l.contains("] redis is ready"));
    let back = moved.elapsed();
    assert_eq!(redis(&c, &["GET", "kept"]), "across the restart");
    assert!(c.text().contains("DB saved on disk"));
    assert_eq!(started_pid(&c.stderr, "redis"), new);
    eprintln!(
        "[podman] redis off its port: restarted by liveness {back:.3?} later ({old} -> {new} {took})"
    );
}

/// The nginx recipe on a read-only root, and without root. A read-only root needs a tmpfs
/// on /run, where the sockets and the pid file go, and on /tmp, where php's opcache keeps
/// its lock file: podman's `--read-only` mounts both itself, Docker's does not (`--tmpfs`). `--user 33:33` runs bundle-init itself as
/// www-data: `user = 33:33` then changes nothing, and the image's run directories serve.
fn nginx_php_fpm_read_only_and_without_root(engine: Engine) {
    if !engine.ready() {
        return;
    }
    let (image, _) = recipe_image(engine, "nginx-php-fpm");
    let read_only: &[&str] = match engine {
        Engine::Podman => &["--read-only"],
        Engine::Docker => &["--read-only", "--tmpfs", "/run", "--tmpfs", "/tmp"],
    };
    for flags in [read_only, &["--user", "33:33"]] {
        let c = Instance::run(engine, flags, &image, &[]);
        c.stderr.wait_for_text("] nginx is ready");
        assert_eq!(uid_of(&c, 1), if flags[0] == "--user" { "33" } else { "0" });
        let (code, body) = curl(&c, "/index.php");
        assert_eq!(code, 0, "{flags:?}: {body}");
        assert_eq!(fpm_pids(&body).1, started_pid(&c.stderr, "php-fpm"));
        c.kill("USR1");
        restarted(&c, "php-fpm");
        c.stderr.wait_for_n(2, "php-fpm ready again", |l| {
            l.contains("] php-fpm is ready")
        });
        let (code, body) = curl(&c, "/index.php");
        assert_eq!(code, 0, "{flags:?}: {body}");
        let (took, code) = c.stop(10);
        assert_eq!(code, 0, "{flags:?}: {}", c.text());
        assert_clean_stop(&c, &["nginx", "php-fpm"]);
        eprintln!(
            "[{}] nginx-php-fpm with {flags:?}: served, restarted php-fpm, stopped in {took:.3?}",
            engine.name()
        );
    }
}

#[test]
fn nginx_php_fpm_runs_on_a_read_only_root_and_without_root_on_podman() {
    nginx_php_fpm_read_only_and_without_root(Engine::Podman);
}

#[test]
fn nginx_php_fpm_runs_on_a_read_only_root_and_without_root_on_docker() {
    nginx_php_fpm_read_only_and_without_root(Engine::Docker);
}

// ---------------------------------------------------------------------------------------
// The files themselves

const RECIPES: [(&str, &str); 3] = [
    ("nginx-php-fpm", "web.bundle"),
    ("postgres-app", "shop.bundle"),
    ("redis-worker", "jobs.bundle"),
];

fn recipe_file(recipe: &str, file: &str) -> String {
    let path = format!("{}/examples/{recipe}/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Each recipe's bundle file passes `--check` as it is (the password the postgres recipe
/// requires given, as `docker run -e` would).
#[test]
fn every_recipes_bundle_file_passes_check() {
    for (recipe, file) in RECIPES {
        let path = format!("{}/examples/{recipe}/{file}", env!("CARGO_MANIFEST_DIR"));
        let out = std::process::Command::new(common::bundle_init_bin())
            .args(["--bundle", &path, "--check"])
            .env("APP_DB_PASSWORD", "checked")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{recipe}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// examples/README.md shows each bundle file as it is, without its comments and blank
/// lines: the page cannot drift from the files the tests run.
#[test]
fn the_recipes_page_shows_each_bundle_file_as_it_is() {
    let page = recipe_file("", "README.md");
    let blocks: Vec<String> = page
        .split("```ini\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap().to_string())
        .collect();
    assert_eq!(blocks.len(), RECIPES.len(), "one block per recipe");
    for ((recipe, file), block) in RECIPES.iter().zip(&blocks) {
        let text = recipe_file(recipe, file);
        let mut without_comments = String::new();
        for line in text.lines() {
            if !line.starts_with('#') {
                without_comments.push_str(line);
                without_comments.push('\n');
            }
        }
        let squeeze = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect()
        };
        assert_eq!(
            squeeze(block),
            squeeze(&without_comments),
            "examples/README.md's block for {recipe}/{file}"
        );
    }
}
