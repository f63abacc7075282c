//! Any bytes as a command line (NUL-separated arguments, the first few also offered as
//! environment values): parsing must end in a command or a clear error, never a panic.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let args: Vec<OsString> = data.split(|&b| b == 0).map(|a| OsString::from_vec(a.to_vec())).collect();
    let env_value = args.first().cloned();
    let env = |name: &str| match name {
        "TINI_VERBOSITY" | "BUNDLE_INIT_BUNDLE" => env_value.clone(),
        _ => None,
    };
    let _ = bundle_init::cli::parse(args.clone(), &env);
    for arg in &args {
        let text = arg.to_string_lossy();
        let _ = bundle_init::signal::parse_signal(&text);
        let _ = bundle_init::time::parse_duration(&text);
        let _ = bundle_init::values::split_words(&text);
    }
});
