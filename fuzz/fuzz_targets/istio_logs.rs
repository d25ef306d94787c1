#![no_main]
//! Arbitrary bytes as a log: recognising, joining entries and summarising never panic,
//! and any x509 line that parses re-formats to a line that parses to the same value.

use istio_vault_wizard::istio::{LogEvent, X509Line, entries, recognise, summarise};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for (_, entry) in entries(text.lines()) {
        if let LogEvent::X509Cert(x) = recognise(&entry) {
            assert_eq!(X509Line::parse(&x.to_log_message()), Ok(x));
        }
    }
    let _ = summarise(text.lines());
});
