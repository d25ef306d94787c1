//! Istio CA certificates: generate (rcgen), parse, inspect and check (x509-parser with
//! real signature verification through aws-lc-rs).
//!
//! Layout, as Istio's `tools/certs/Makefile.selfsigned.mk` + `common.mk` make it:
//!
//! ```text
//! OUT/root-cert.pem  OUT/root-key.pem                 (shared trust anchor)
//! OUT/<cluster>/ca-cert.pem  ca-key.pem  cert-chain.pem (intermediate, then root)  root-cert.pem
//! ```
//!
//! * [`generate_root`] / [`generate_intermediate`] build the PEMs in memory
//!   ([`GenerateOptions`] holds every value, with Istio's defaults);
//!   [`write_istio_layout`] writes them (keys created 0600 at open time, nothing
//!   overwritten unless `force`); [`load_root_dir`] / [`load_cluster_dir`] read them back.
//! * [`check_bundle`] checks the four PEMs as istiod will use them and reports every
//!   [`Finding`] (severity, stable code, file, sentence); [`check_dir`] does the same on a
//!   cluster directory; [`key_matches_cert`] is the key/certificate pairing test.
//! * [`inspect_pem`] describes every certificate of a PEM text ([`CertInfo`]);
//!   [`inspect_items`] also describes private keys (type and size only, never content).
//!
//! Formats in [`CertInfo`]: `serial` is lowercase colon-separated hex of the serial's
//! big-endian bytes without a leading zero byte (as `openssl x509 -text` prints long
//! serials); `sha256_fingerprint` is uppercase colon-separated hex of SHA-256(DER) (as
//! `openssl x509 -fingerprint -sha256`); times are RFC 3339 UTC.
//!
//! Fuzzing: `fuzz/` is a separate cargo-fuzz crate (not part of this build). With a nightly
//! toolchain and `cargo install cargo-fuzz`:
//!
//! ```text
//! cd fuzz && cargo +nightly fuzz run check_bundle -- -max_total_time=60
//! cd fuzz && cargo +nightly fuzz run inspect_pem  -- -max_total_time=60
//! ```

mod check;
pub mod cli;
mod generate;
mod inspect;
mod pemutil;

use std::path::PathBuf;

pub use crate::config::KeyType;
pub use check::{
    BundleInput, Finding, Severity, check_bundle, check_bundle_pems, check_dir, is_usable,
    key_matches_cert,
};
pub use generate::{
    CaBundle, ClusterBundle, GenerateOptions, generate_intermediate, generate_into, generate_root,
    load_cluster_dir, load_root_dir, write_cluster_dir, write_istio_layout,
};
pub use inspect::{CertInfo, PemItem, inspect_items, inspect_pem, inspect_pem_at};
pub use pemutil::{KeyInfo, PemBlock, split_pem};

/// Former names, kept for the engine and the doctor.
pub type BundleFinding = Finding;
pub type LoadedBundle = ClusterBundle;
pub type BundleError = CertsError;

/// File names of Istio's plugged-in CA layout.
pub const CA_KEY: &str = "ca-key.pem";
pub const CA_CERT: &str = "ca-cert.pem";
pub const CERT_CHAIN: &str = "cert-chain.pem";
pub const ROOT_CERT: &str = "root-cert.pem";
pub const ROOT_KEY: &str = "root-key.pem";

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} already exists (pass --force to overwrite)", path.display())]
    Exists { path: PathBuf },
    #[error("{what}: no PEM block found")]
    NoPem { what: String },
    #[error("{what}: no certificate found{}", found.as_deref().map(|f| format!(" ({f})")).unwrap_or_default())]
    NoCertificate { what: String, found: Option<String> },
    #[error("{what}: unreadable certificate: {reason}")]
    BadCertificate { what: String, reason: String },
    #[error("{what}: no private key found")]
    NoKey { what: String },
    #[error(
        "{what}: the private key is encrypted; decrypt it first (openssl pkey -in KEY -out PLAIN)"
    )]
    EncryptedKey { what: String },
    #[error("{what}: unreadable private key: {reason}")]
    BadKey { what: String, reason: String },
    #[error("{key} does not belong to {cert}")]
    KeyMismatch { key: String, cert: String },
    #[error("invalid option: {0}")]
    InvalidOption(String),
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

impl From<rcgen::Error> for CertsError {
    fn from(e: rcgen::Error) -> Self {
        CertsError::Generate(e.to_string())
    }
}

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> CertsError + '_ {
    move |source| CertsError::Io {
        path: path.to_path_buf(),
        source,
    }
}
