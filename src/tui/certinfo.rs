//! Certificate fingerprints for the KV pane (public certificates only; private keys are
//! never parsed here, only reported present or absent). `certs::inspect_pem` did not exist
//! when this was written, so the TUI parses with x509-parser itself.

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq)]
pub struct CertRow {
    /// KV field the certificate came from (`ca_cert`, `cert_chain`, `root_cert`).
    pub field: String,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub sha256: String,
    pub not_after: String,
    pub days_left: i64,
}

/// Every certificate of a PEM bundle. Non-certificate blocks are ignored.
pub fn inspect(
    field: &str,
    pem_text: &str,
    now: time::OffsetDateTime,
) -> Result<Vec<CertRow>, String> {
    let blocks = pem::parse_many(pem_text.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for b in blocks.iter().filter(|b| b.tag() == "CERTIFICATE") {
        let (_, cert) = x509_parser::parse_x509_certificate(b.contents())
            .map_err(|e| format!("{field}: {e}"))?;
        let not_after = cert.validity().not_after.to_datetime();
        let days_left = (not_after - now).whole_days();
        out.push(CertRow {
            field: field.to_string(),
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string(),
            sha256: hex::encode(Sha256::digest(b.contents())),
            not_after: not_after
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            days_left,
        });
    }
    if out.is_empty() {
        return Err(format!("{field}: no certificate in the value"));
    }
    Ok(out)
}
