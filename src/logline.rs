//! How the lines bundle-init writes look: text (`[name] line`, after an RFC 3339 time with
//! `log-time = yes`) or, with `log-format = json`, one JSON object per line. Each record,
//! in either form, is at most PIPE_BUF bytes: one atomic write to a pipe.
//!
//! JSON text is valid for any bytes: `"`, `\` and control characters are escaped, and each
//! invalid UTF-8 sequence becomes U+FFFD, as `String::from_utf8_lossy` replaces it.

use crate::output::PIPE_BUF;
use crate::signal::Sig;
use crate::supervisor::{ExitStatus, Level, LogEvent};

/// `2026-12-02T06:10:00.123Z`: the length of a time as records write it.
pub(crate) const TIME_LEN: usize = 24;

/// Milliseconds since 1970-01-01T00:00:00Z by CLOCK_REALTIME, read when a record is written.
pub(crate) fn wall_clock_ms() -> i64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    (ts.tv_sec as i64)
        .saturating_mul(1000)
        .saturating_add(ts.tv_nsec as i64 / 1_000_000)
}

/// The proleptic Gregorian date of day `days` after 1970-01-01: (year, month, day).
/// Counted in 400-year eras of 146,097 days, each year starting on March 1 so that the
/// leap day is the last day of its year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // 0..=146096
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // 0 = March .. 11 = February
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `ms` (since the epoch) as RFC 3339 in UTC to the millisecond. Years outside 0..=9999
/// are clamped: RFC 3339 has four digits for them.
pub(crate) fn rfc3339(ms: i64) -> [u8; TIME_LEN] {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000) as u32;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let of_day = secs.rem_euclid(86_400) as u32;
    let year = year.clamp(0, 9999) as u32;
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, value: u32, width: usize| {
        let mut v = value;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, of_day / 3600, 2);
    put(14, of_day / 60 % 60, 2);
    put(17, of_day % 60, 2);
    put(20, millis, 3);
    out
}

/// The two characters after `\` for the control characters JSON has short escapes for.
fn short_escape(b: u8) -> Option<u8> {
    match b {
        b'"' => Some(b'"'),
        b'\\' => Some(b'\\'),
        b'\n' => Some(b'n'),
        b'\r' => Some(b'r'),
        b'\t' => Some(b't'),
        0x08 => Some(b'b'),
        0x0c => Some(b'f'),
        _ => None,
    }
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Appends `bytes` as the inside of a JSON string, as much as fits in `room` bytes of
/// output, never cutting a character or an escape. Returns how many input bytes it took.
pub(crate) fn escape_into(out: &mut Vec<u8>, bytes: &[u8], room: usize) -> usize {
    let start = out.len();
    let left = |out: &Vec<u8>| room - (out.len() - start);
    let mut taken = 0;
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid().as_bytes();
        let mut i = 0;
        while i < valid.len() {
            let b = valid[i];
            if needs_escape(b) {
                let escaped = escape_byte(b);
                if escaped.len() > left(out) {
                    return taken + i;
                }
                out.extend_from_slice(&escaped);
                i += 1;
                continue;
            }
            let run = valid[i..].iter().position(|&b| needs_escape(b));
            let end = run.map_or(valid.len(), |n| i + n);
            let fits = i + (end - i).min(left(out));
            let cut = (i..=fits)
                .rev()
                .find(|&at| chunk.valid().is_char_boundary(at))
                .unwrap_or(i);
            out.extend_from_slice(&valid[i..cut]);
            if cut < end {
                return taken + cut;
            }
            i = end;
        }
        taken += valid.len();
        if !chunk.invalid().is_empty() {
            if left(out) < 3 {
                return taken;
            }
            out.extend_from_slice("\u{FFFD}".as_bytes());
            taken += chunk.invalid().len();
        }
    }
    taken
}

/// One byte that must be escaped, as JSON writes it: `\n`, `\"`, or `\u001b`.
fn escape_byte(b: u8) -> Vec8 {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match short_escape(b) {
        Some(c) => Vec8::new(&[b'\\', c]),
        None => Vec8::new(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[(b >> 4) as usize],
            HEX[(b & 15) as usize],
        ]),
    }
}

/// Up to 6 bytes on the stack: an escape, without an allocation.
struct Vec8 {
    bytes: [u8; 6],
    len: usize,
}

impl Vec8 {
    fn new(from: &[u8]) -> Vec8 {
        let mut bytes = [0; 6];
        bytes[..from.len()].copy_from_slice(from);
        Vec8 {
            bytes,
            len: from.len(),
        }
    }

    fn len(&self) -> usize {
        self.len
    }
}

impl std::ops::Deref for Vec8 {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Which of a daemon's outputs a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamName {
    Stdout,
    Stderr,
}

impl StreamName {
    pub(crate) fn of(index: usize) -> StreamName {
        if index == 0 {
            StreamName::Stdout
        } else {
            StreamName::Stderr
        }
    }

    fn name(self) -> &'static str {
        match self {
            StreamName::Stdout => "stdout",
            StreamName::Stderr => "stderr",
        }
    }
}

/// `,"partial":true`: the line goes on in the next record of the same daemon and stream.
const PARTIAL: &[u8] = b",\"partial\":true";

/// Writes a daemon's line (or piece of a line) as JSON records to `out`: as many records
/// as its escaped text needs to keep each within PIPE_BUF, every one but the last marked
/// partial (the last too when `ended` is false: the splitter cut the line there).
pub(crate) fn json_daemon_line(
    out: &mut Vec<u8>,
    name: &str,
    stream: StreamName,
    mut text: &[u8],
    ended: bool,
    time: &[u8; TIME_LEN],
) {
    loop {
        let start = out.len();
        out.extend_from_slice(b"{\"time\":\"");
        out.extend_from_slice(time);
        out.extend_from_slice(b"\",\"daemon\":\"");
        escape_into(out, name.as_bytes(), usize::MAX);
        out.extend_from_slice(b"\",\"stream\":\"");
        out.extend_from_slice(stream.name().as_bytes());
        out.extend_from_slice(b"\",\"text\":\"");
        let tail = 1 + PARTIAL.len() + 2; // `"`, partial, `}\n`
        let room = PIPE_BUF.saturating_sub(out.len() - start + tail);
        let taken = escape_into(out, text, room);
        // Room is thousands of bytes and a character takes at most six: never 0 unless
        // the text is empty. Were it 0, the loop would still end.
        text = if taken == 0 { &[] } else { &text[taken..] };
        out.push(b'"');
        if !text.is_empty() || !ended {
            out.extend_from_slice(PARTIAL);
        }
        out.extend_from_slice(b"}\n");
        if text.is_empty() {
            return;
        }
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Notice => "notice",
        Level::Info => "info",
        Level::Debug => "debug",
    }
}

/// `,"truncated":true`: the text did not fit one record and was cut.
const TRUNCATED: &[u8] = b",\"truncated\":true";

/// One of bundle-init's own lines as one JSON record of at most PIPE_BUF bytes; a text
/// too long for it is cut and the record says `"truncated":true`.
pub(crate) fn json_own_line(
    out: &mut Vec<u8>,
    level: Level,
    text: &str,
    event: Option<&LogEvent>,
    time: &[u8; TIME_LEN],
) {
    let start = out.len();
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(time);
    out.extend_from_slice(b"\",\"source\":\"bundle-init\",\"stream\":\"stderr\",\"level\":\"");
    out.extend_from_slice(level_name(level).as_bytes());
    out.push(b'"');
    if let Some(event) = event {
        event_fields(out, text, event);
    }
    out.extend_from_slice(b",\"text\":\"");
    let tail = 1 + TRUNCATED.len() + 2;
    let room = PIPE_BUF.saturating_sub(out.len() - start + tail);
    let taken = escape_into(out, text.as_bytes(), room);
    out.push(b'"');
    if taken < text.len() {
        out.extend_from_slice(TRUNCATED);
    }
    out.extend_from_slice(b"}\n");
}

/// `,"event":"exited","daemon":"web","pid":12,"code":3`: what an event line is about.
fn event_fields(out: &mut Vec<u8>, text: &str, event: &LogEvent) {
    use std::io::Write as _;
    let _ = write!(out, ",\"event\":\"{}\"", event.kind.name());
    if let Some(name) = text.get(..event.name_len).filter(|n| !n.is_empty()) {
        out.extend_from_slice(b",\"daemon\":\"");
        escape_into(out, name.as_bytes(), usize::MAX);
        out.push(b'"');
    }
    if let Some(pid) = event.pid {
        let _ = write!(out, ",\"pid\":{pid}");
    }
    match event.status {
        Some(ExitStatus::Code(code)) => {
            let _ = write!(out, ",\"code\":{code}");
        }
        Some(ExitStatus::Signal(n)) => {
            let _ = write!(out, ",\"signal\":\"{}\"", Sig(n));
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> String {
        String::from_utf8(rfc3339(ms).to_vec()).unwrap()
    }

    const DAY_MS: i64 = 86_400_000;

    #[test]
    fn the_epoch_is_1970_01_01() {
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1), "1970-01-01T00:00:00.001Z");
    }

    #[test]
    fn the_last_millisecond_of_a_year_then_new_year() {
        // 1999-12-31T23:59:59.999Z is 946684799999 ms.
        assert_eq!(at(946_684_799_999), "1999-12-31T23:59:59.999Z");
        assert_eq!(at(946_684_800_000), "2000-01-01T00:00:00.000Z");
    }

    /// 2000 is a leap year (divisible by 400); 2100 is not (by 100, not 400).
    #[test]
    fn leap_days_follow_the_gregorian_rules() {
        let march_2000 = 951_868_800_000; // 2000-03-01T00:00:00Z
        assert_eq!(at(march_2000 - DAY_MS), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(march_2000), "2000-03-01T00:00:00.000Z");
        let march_2100 = 4_107_542_400_000; // 2100-03-01T00:00:00Z
        assert_eq!(at(march_2100), "2100-03-01T00:00:00.000Z");
        assert_eq!(at(march_2100 - DAY_MS), "2100-02-28T00:00:00.000Z");
    }

    #[test]
    fn an_instant_of_today_and_one_before_the_epoch() {
        // 2026-12-02T06:10:00.123Z
        assert_eq!(at(1_796_191_800_123), "2026-12-02T06:10:00.123Z");
        assert_eq!(at(-1), "1969-12-31T23:59:59.999Z");
    }

    /// Every day of 1970..2400 follows the one before: the date counts up by one.
    #[test]
    fn consecutive_days_are_consecutive_dates() {
        let mut previous = civil_from_days(-1);
        assert_eq!(previous, (1969, 12, 31));
        for days in 0..(430 * 366) {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = previous;
            let next_day = y == py && m == pm && d == pd + 1;
            let next_month = y == py && m == pm + 1 && d == 1;
            let next_year = y == py + 1 && m == 1 && d == 1 && pm == 12 && pd == 31;
            assert!(
                next_day || next_month || next_year,
                "{previous:?} -> {y}-{m}-{d}"
            );
            previous = (y, m, d);
        }
    }

    fn escaped(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        assert_eq!(escape_into(&mut out, bytes, usize::MAX), bytes.len());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn quotes_backslashes_and_control_characters_are_escaped() {
        assert_eq!(escaped(b"a\"b\\c"), r#"a\"b\\c"#);
        assert_eq!(escaped(b"\n\r\t\x08\x0c"), r"\n\r\t\b\f");
        assert_eq!(escaped(b"\x00\x1b\x1f"), r"\u0000\u001b\u001f");
        assert_eq!(escaped("é€😀".as_bytes()), "é€😀");
    }

    /// Each invalid sequence becomes one U+FFFD, the way `from_utf8_lossy` replaces it.
    #[test]
    fn invalid_utf8_becomes_the_replacement_character() {
        for bytes in [
            &b"\xff\xfe"[..],
            b"a\xc3",
            b"\xe2\x82x",
            b"\xed\xa0\x80",
            b"ok\x80",
        ] {
            assert_eq!(escaped(bytes), String::from_utf8_lossy(bytes), "{bytes:?}");
        }
    }

    #[test]
    fn a_full_room_cuts_between_characters_never_inside_one() {
        let mut out = Vec::new();
        assert_eq!(escape_into(&mut out, "aé".as_bytes(), 2), 1);
        assert_eq!(out, b"a");
        out.clear();
        assert_eq!(escape_into(&mut out, b"a\n", 2), 1, "an escape is not cut");
        out.clear();
        assert_eq!(escape_into(&mut out, b"ab\xff", 4), 2, "nor a replacement");
    }

    /// A line of control characters escapes to six times its size: it is split into
    /// records that each fit one atomic write, the last one not partial.
    #[test]
    fn a_long_json_line_is_split_into_records_of_at_most_pipe_buf() {
        let name = "n".repeat(crate::values::MAX_NAME_LEN);
        let text = vec![0x01u8; 4000];
        let mut out = Vec::new();
        json_daemon_line(
            &mut out,
            &name,
            StreamName::Stderr,
            &text,
            true,
            &rfc3339(0),
        );
        let records: Vec<&[u8]> = out.split_inclusive(|&b| b == b'\n').collect();
        assert!(records.len() >= 6, "{} records", records.len());
        for (i, record) in records.iter().enumerate() {
            assert!(
                record.len() <= PIPE_BUF,
                "record {i}: {} bytes",
                record.len()
            );
            let partial = record.windows(PARTIAL.len()).any(|w| w == PARTIAL);
            assert_eq!(partial, i + 1 < records.len(), "record {i}");
        }
        let total: usize = records.iter().map(|r| r.len()).sum();
        assert_eq!(total, out.len());
    }

    #[test]
    fn an_empty_line_is_one_record_with_empty_text() {
        let mut out = Vec::new();
        json_daemon_line(&mut out, "d", StreamName::Stdout, b"", true, &rfc3339(0));
        assert_eq!(
            out,
            b"{\"time\":\"1970-01-01T00:00:00.000Z\",\"daemon\":\"d\",\"stream\":\"stdout\",\"text\":\"\"}\n"
        );
    }

    #[test]
    fn an_own_line_too_long_for_one_record_is_truncated_and_says_so() {
        let mut out = Vec::new();
        let text = "x".repeat(3 * PIPE_BUF);
        json_own_line(&mut out, Level::Error, &text, None, &rfc3339(0));
        assert!(out.len() <= PIPE_BUF);
        assert!(out.ends_with(b",\"truncated\":true}\n"));
    }
}
