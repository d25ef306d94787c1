#![no_main]
//! PEM splitting and inspection never panic, and never echo private key bytes.

use istio_vault_wizard::certs::{inspect_items, inspect_pem, split_pem};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let blocks = split_pem(&text);
    for b in &blocks {
        let _ = format!("{b:?}");
    }
    let _ = inspect_pem(&text);
    let _ = inspect_items(&text, time::OffsetDateTime::UNIX_EPOCH);
});
