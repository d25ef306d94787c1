//! Certificate fingerprints for the KV pane (public certificates only; private keys are
//! never parsed here, only reported present or absent). The values come from
//! `certs::inspect_pem_at`, the same function `certs inspect` and the doctor use.

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
    let infos = crate::certs::inspect_pem_at(pem_text, now).map_err(|e| format!("{field}: {e}"))?;
    if infos.is_empty() {
        return Err(format!("{field}: no certificate in the value"));
    }
    Ok(infos
        .into_iter()
        .map(|c| CertRow {
            field: field.to_string(),
            subject: c.subject,
            issuer: c.issuer,
            serial: c.serial,
            sha256: c.sha256_fingerprint,
            not_after: c.not_after,
            days_left: c.days_left,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_from_the_certs_module_and_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let settings = crate::config::CertsSection {
            key_type: crate::config::KeyType::EcP256,
            ..Default::default()
        };
        crate::certs::generate_into(dir.path(), "cluster1", &settings).expect("generate");
        let chain =
            std::fs::read_to_string(dir.path().join("cluster1/cert-chain.pem")).expect("chain");
        let rows = inspect("cert_chain", &chain, time::OffsetDateTime::now_utc()).expect("rows");
        assert_eq!(rows.len(), 2);
        assert!(rows[0].subject.contains("Intermediate CA"));
        assert!(rows[1].subject.contains("Root CA"));
        assert!(rows[0].days_left > 700);
        assert_eq!(rows[0].sha256.matches(':').count(), 31);
        let key = std::fs::read_to_string(dir.path().join("cluster1/ca-key.pem")).expect("key");
        assert!(
            inspect("ca_key", &key, time::OffsetDateTime::now_utc()).is_err(),
            "a key is not a certificate row"
        );
    }
}
