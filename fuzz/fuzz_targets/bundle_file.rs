//! Any bytes as a bundle file: parsing must end in a plan or a clear error, never a panic,
//! and a parsed bundle must survive selection and printing. `parse_alone` expands `${...}`
//! from a fixed environment (PORT, EMPTY) and checks `include` globs without reading
//! files, so an input cannot make the fuzzer read the machine's files. `bundle_file.dict`
//! gives libFuzzer the vocabulary (keys, `${`, `:-`, `:?`, `$$`, `unlimited`...):
//!   cargo +nightly fuzz run bundle_file -- -dict=bundle_file.dict
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = bundle_init::config::parse_alone("fuzz.bundle", data) {
        let first = bundle.daemons.first().map(|d| d.name.clone()).unwrap_or_default();
        for selection in [None, Some(first.as_str()), Some(""), Some("nope")] {
            if let Ok(plan) = bundle_init::config::select(&bundle, selection) {
                let _ = bundle_init::keys::describe_plan("fuzz.bundle", &plan);
            }
        }
    }
});
