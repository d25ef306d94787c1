#![no_main]
//! The four PEMs of a bundle from one input (split on NUL bytes) must never panic the
//! checker, and a bundle is never both "usable" and missing a file.

use istio_vault_wizard::certs::{BundleInput, check_bundle, is_usable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let ca_key = parts.next();
    let ca_cert = parts.next();
    let cert_chain = parts.next();
    let root_cert = parts.next();
    let findings = check_bundle(
        &BundleInput {
            ca_key,
            ca_cert,
            cert_chain,
            root_cert,
        },
        time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
    );
    if root_cert.is_none() {
        assert!(!is_usable(&findings));
    }
});
