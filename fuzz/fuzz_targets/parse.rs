//! Config and manifest parsing: any text must give a config, a manifest, or an error; never a
//! panic, a hang, or unbounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxm_secrets::config::Config;
use mxm_secrets::manifest::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::parse(text, "fuzz");
        let _ = Manifest::parse(text, "fuzz");
    }
});
