//! How common daemons are kept in the foreground: the fix named in the line that says a
//! daemon put itself in the background. docs/bundle-file.md's table of foreground flags says
//! the same for people.

use std::ffi::OsStr;
use std::path::Path;

/// Program names (the file name of `command`'s first word) and what keeps each in the
/// foreground.
const FLAGS: &[(&str, &str)] = &[
    ("nginx", "-g 'daemon off;'"),
    ("php-fpm", "-F"),
    ("redis-server", "--daemonize no"),
    ("apache2", "-D FOREGROUND"),
    ("httpd", "-D FOREGROUND"),
    ("sshd", "-D"),
    ("haproxy", "-db"),
    ("cron", "-f"),
    ("crond", "-f"),
    ("rsyslogd", "-n"),
    ("dnsmasq", "-k"),
    ("squid", "-N"),
    ("named", "-f"),
    ("unbound", "-d"),
    ("dbus-daemon", "--nofork"),
    ("chronyd", "-d"),
    ("memcached", "without -d"),
    ("pg_ctl", "run postgres itself"),
    ("mysqld_safe", "run mysqld itself"),
];

/// The fix for `program`, in the words of the log line.
pub(super) fn hint(program: Option<&OsStr>) -> String {
    let name = program
        .and_then(|p| Path::new(p).file_name())
        .and_then(OsStr::to_str)
        .unwrap_or("");
    // php-fpm8.2, php-fpm7.4: the versioned names Debian installs.
    let known = FLAGS.iter().find(|(program, _)| {
        name == *program || (*program == "php-fpm" && name.starts_with(program))
    });
    match known {
        Some((program, flag)) => format!("run {program} in the foreground: {flag}"),
        None => "run it in the foreground (docs/bundle-file.md: Foreground flags)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_programs_get_their_flag_whatever_their_path_or_version() {
        let hint_for = |p: &str| hint(Some(OsStr::new(p)));
        assert_eq!(
            hint_for("/usr/sbin/nginx"),
            "run nginx in the foreground: -g 'daemon off;'"
        );
        assert_eq!(hint_for("php-fpm8.2"), "run php-fpm in the foreground: -F");
        assert_eq!(
            hint_for("redis-server"),
            "run redis-server in the foreground: --daemonize no"
        );
        assert_eq!(
            hint_for("/opt/mystery"),
            "run it in the foreground (docs/bundle-file.md: Foreground flags)"
        );
        assert_eq!(
            hint(None),
            "run it in the foreground (docs/bundle-file.md: Foreground flags)"
        );
    }
}
