//! Time as bundle-init sees it: readings of the monotonic clock, and durations written the
//! way bundle files and log lines write them. The supervisor gets `Time` values as event
//! arguments and never reads the clock itself; only the runtime calls [`now`].

use std::time::Duration;

/// A reading of the monotonic clock (time since boot): it never jumps with the wall clock.
pub(crate) type Time = Duration;

/// The monotonic clock now.
pub(crate) fn now() -> Time {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    // Nanoseconds since boot fit a u64 for 584 years; from_nanos has no panic path.
    Duration::from_nanos(
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64),
    )
}

/// `1.5s`, `250ms`, `2m`... as log lines and `--check` write a duration.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    }
}
