//! Entry point. `no_main` keeps Rust's runtime start-up out of PID 1: it would set SIGPIPE
//! to ignored before we could see what disposition we inherited (and children must get
//! exactly that), and it adds nothing bundle-init needs.
#![no_main]

use std::ffi::{CStr, OsString, c_char, c_int};
use std::os::unix::ffi::OsStrExt;

#[unsafe(no_mangle)]
extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    let mut args = Vec::new();
    for i in 1..argc.max(0) as usize {
        // SAFETY: the C runtime passes argc valid, NUL-terminated strings in argv.
        let arg = unsafe { CStr::from_ptr(*argv.add(i)) };
        args.push(OsString::from(std::ffi::OsStr::from_bytes(arg.to_bytes())));
    }
    c_int::from(bundle_init::run(args))
}
