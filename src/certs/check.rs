//! Checks of the four PEMs istiod reads, reporting every finding.

use std::collections::HashSet;
use std::path::Path;

use ::time::OffsetDateTime;
use x509_parser::error::X509Error;
use x509_parser::prelude::*;

use super::inspect::{fingerprint, is_self_signed, rfc3339};
use super::pemutil::{key_matches_spki, parse_private_key, split_pem};
use super::{CA_CERT, CA_KEY, CERT_CHAIN, CertsError, ROOT_CERT};

/// A certificate expiring within this many days gives an `expires-soon` warning.
pub const EXPIRES_SOON_DAYS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// One finding of [`check_bundle`].
///
/// Codes (stable): `missing-file`, `pem-unreadable`, `key-encrypted`, `extra-certificates`,
/// `not-a-ca`, `no-keycertsign`, `no-key-usage`, `key-mismatch`, `weak-key`,
/// `chain-does-not-start-with-ca-cert`, `chain-signature-invalid`,
/// `signature-unverifiable`, `chain-does-not-reach-root`, `chain-omits-root`,
/// `root-cert-mismatch`, `root-not-self-signed`, `multiple-roots`, `pathlen-violated`,
/// `expired`, `not-yet-valid`, `expires-soon`, `duplicate-certificate`, `non-certificate-block`, `chain-verified`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub code: &'static str,
    /// The file (`ca-cert.pem`, ...) the finding is about.
    pub file: String,
    pub message: String,
}

impl Finding {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<7} [{}] {}: {}",
            self.severity, self.code, self.file, self.message
        )
    }
}

/// True when no finding is an error (warnings and infos allowed).
pub fn is_usable(findings: &[Finding]) -> bool {
    !findings.iter().any(Finding::is_error)
}

/// The four PEM texts (any may be absent), as files or Vault KV fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct BundleInput<'a> {
    pub ca_key: Option<&'a str>,
    pub ca_cert: Option<&'a str>,
    pub cert_chain: Option<&'a str>,
    pub root_cert: Option<&'a str>,
}

struct Report(Vec<Finding>);

impl Report {
    fn push(&mut self, severity: Severity, code: &'static str, file: &str, message: String) {
        self.0.push(Finding {
            severity,
            code,
            file: file.to_string(),
            message,
        });
    }
    fn error(&mut self, code: &'static str, file: &str, message: String) {
        self.push(Severity::Error, code, file, message);
    }
    fn warn(&mut self, code: &'static str, file: &str, message: String) {
        self.push(Severity::Warning, code, file, message);
    }
    fn info(&mut self, code: &'static str, file: &str, message: String) {
        self.push(Severity::Info, code, file, message);
    }
}

/// The DER of every readable certificate of one file; problems become findings.
fn cert_ders(file: &str, text: Option<&str>, r: &mut Report) -> Vec<Vec<u8>> {
    let Some(text) = text else {
        r.error(
            "missing-file",
            file,
            format!("{file} is missing: istiod needs ca-key.pem, ca-cert.pem, cert-chain.pem and root-cert.pem"),
        );
        return Vec::new();
    };
    let blocks = split_pem(text);
    if blocks.is_empty() {
        r.error(
            "pem-unreadable",
            file,
            format!("{file} holds no PEM block (expected -----BEGIN CERTIFICATE-----)"),
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        if let Err(e) = &b.der {
            r.error(
                "pem-unreadable",
                file,
                format!(
                    "{file}: PEM block {} ({}) cannot be decoded: {e}",
                    i + 1,
                    b.label
                ),
            );
            continue;
        }
        if b.is_private_key() {
            r.error(
                "pem-unreadable",
                file,
                format!(
                    "{file} holds a private key (block {}); it must hold certificates only",
                    i + 1
                ),
            );
            continue;
        }
        if !b.is_certificate() {
            r.warn(
                "non-certificate-block",
                file,
                format!(
                    "{file}: block {} is a {}, not a certificate; it is ignored",
                    i + 1,
                    b.label
                ),
            );
            continue;
        }
        match &b.der {
            Err(e) => r.error(
                "pem-unreadable",
                file,
                format!("{file}: certificate {} cannot be decoded: {e}", i + 1),
            ),
            Ok(der) => match X509Certificate::from_der(der) {
                Ok((rest, _)) if !rest.is_empty() => r.error(
                    "pem-unreadable",
                    file,
                    format!(
                        "{file}: certificate {} has {} byte(s) of trailing data after the certificate (Go's x509, used by istiod, rejects it)",
                        i + 1,
                        rest.len()
                    ),
                ),
                Ok((_, c))
                    if c.signature_algorithm != c.tbs_certificate.signature
                        || !signature_algorithms_match(der) =>
                {
                    r.error(
                    "pem-unreadable",
                    file,
                    format!(
                        "{file}: certificate {} is malformed: its inner and outer signature algorithms differ",
                        i + 1
                    ),
                    )
                }
                Ok(_) => out.push(der.clone()),
                Err(e) => r.error(
                    "pem-unreadable",
                    file,
                    format!(
                        "{file}: certificate {} is not a valid X.509 certificate: {e}",
                        i + 1
                    ),
                ),
            },
        }
    }
    if out.is_empty() && !r.0.iter().any(|f| f.file == file && f.is_error()) {
        r.error(
            "pem-unreadable",
            file,
            format!("{file} holds no certificate"),
        );
    }
    out
}

/// One DER TLV: (whole, content, rest). Single-byte tags, definite lengths only.
fn tlv(input: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (&len0, after_tag) = input.get(1..)?.split_first()?;
    let (len, header) = if len0 < 0x80 {
        (usize::from(len0), 2)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = after_tag.get(..n)?;
        (
            bytes.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b)),
            2 + n,
        )
    };
    let end = header.checked_add(len)?;
    let whole = input.get(..end)?;
    Some((whole, &whole[header..], &input[end..]))
}

/// The raw outer signatureAlgorithm equals the TBS `signature` field and is an OID-led
/// SEQUENCE (x509-parser is lenient about the tag; Go's x509, used by istiod, is not).
fn signature_algorithms_match(der: &[u8]) -> bool {
    (|| {
        let (_, cert, _) = tlv(der)?;
        let (_, tbs, rest) = tlv(cert)?;
        let (outer, outer_content, _) = tlv(rest)?;
        let (mut first, _, mut after) = tlv(tbs)?;
        if first.first() == Some(&0xa0) {
            (first, _, after) = tlv(after)?; // serial
        }
        let _ = first;
        let (inner, _, _) = tlv(after)?;
        Some(outer == inner && outer.first() == Some(&0x30) && outer_content.first() == Some(&0x06))
    })()
    .unwrap_or(false)
}

fn parse(ders: &[Vec<u8>]) -> Vec<X509Certificate<'_>> {
    ders.iter()
        .filter_map(|d| X509Certificate::from_der(d).ok().map(|(_, c)| c))
        .collect()
}

fn name(c: &X509Certificate<'_>) -> String {
    let s = c.subject().to_string();
    if s.is_empty() {
        "(empty subject)".into()
    } else {
        format!("\"{s}\"")
    }
}

fn check_ca_flags(c: &X509Certificate<'_>, file: &str, what: &str, r: &mut Report) {
    match c.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        Ok(Some(_)) => r.error(
            "not-a-ca",
            file,
            format!("{what} {} has basicConstraints CA:FALSE: it cannot sign certificates, so istiod cannot issue workload certificates with it", name(c)),
        ),
        Ok(None) => r.error(
            "not-a-ca",
            file,
            format!("{what} {} has no basicConstraints CA:TRUE extension: it is not a CA and cannot sign certificates", name(c)),
        ),
        Err(e) => r.error(
            "not-a-ca",
            file,
            format!("{what} {}: unreadable basicConstraints ({e})", name(c)),
        ),
    }
    match c.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => r.error(
            "no-keycertsign",
            file,
            format!(
                "{what} {} has a keyUsage without keyCertSign: it may not sign certificates",
                name(c)
            ),
        ),
        Ok(Some(_)) => {}
        Ok(None) => r.info(
            "no-key-usage",
            file,
            format!(
                "{what} {} has no keyUsage extension (Istio's tooling sets keyCertSign explicitly)",
                name(c)
            ),
        ),
        Err(e) => r.error(
            "no-keycertsign",
            file,
            format!("{what} {}: unreadable keyUsage ({e})", name(c)),
        ),
    }
}

fn verify(child: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> Result<(), X509Error> {
    child.verify_signature(Some(issuer.public_key()))
}

/// Checks the four PEMs as istiod will use them, at time `now`, and returns every finding
/// (errors first, then warnings, then infos). The bundle is usable when no finding is an
/// error ([`is_usable`]).
pub fn check_bundle(input: &BundleInput<'_>, now: OffsetDateTime) -> Vec<Finding> {
    let mut r = Report(Vec::new());

    // Key.
    let key = match input.ca_key {
        None => {
            r.error("missing-file", CA_KEY, format!("{CA_KEY} is missing: istiod needs the intermediate's private key to sign workload certificates"));
            None
        }
        Some(text) => match parse_private_key(text, CA_KEY) {
            Ok((kp, info)) => {
                if info.key_type == "RSA" && info.key_bits < 2048 {
                    r.warn(
                        "weak-key",
                        CA_KEY,
                        format!(
                            "the CA key is RSA {} bits; use at least 2048 (Istio uses 4096)",
                            info.key_bits
                        ),
                    );
                }
                Some(kp)
            }
            Err(CertsError::EncryptedKey { .. }) => {
                r.error("key-encrypted", CA_KEY, format!("{CA_KEY} is encrypted; istiod needs it unencrypted (openssl pkey -in {CA_KEY} -out plain.pem)"));
                None
            }
            Err(e) => {
                r.error("pem-unreadable", CA_KEY, e.to_string());
                None
            }
        },
    };

    let ca_ders = cert_ders(CA_CERT, input.ca_cert, &mut r);
    let chain_ders = cert_ders(CERT_CHAIN, input.cert_chain, &mut r);
    let root_ders = cert_ders(ROOT_CERT, input.root_cert, &mut r);
    let cas = parse(&ca_ders);
    let chain = parse(&chain_ders);
    let roots = parse(&root_ders);

    // ca-cert.pem
    if let Some(ca) = cas.first() {
        if cas.len() > 1 {
            r.warn(
                "extra-certificates",
                CA_CERT,
                format!(
                    "{CA_CERT} holds {} certificates; istiod uses only the first, {}",
                    cas.len(),
                    name(ca)
                ),
            );
        }
        check_ca_flags(ca, CA_CERT, "the intermediate CA", &mut r);
        if let Some(kp) = &key
            && !key_matches_spki(kp, ca.public_key())
        {
            r.error(
                "key-mismatch",
                CA_KEY,
                format!(
                    "{CA_KEY} does not belong to {CA_CERT} {}: the public keys differ",
                    name(ca)
                ),
            );
        }
        let (kt, bits) = super::pemutil::spki_description(ca.public_key());
        if kt == "RSA" && bits < 2048 && key.is_none() {
            r.warn(
                "weak-key",
                CA_CERT,
                format!("the intermediate's key is RSA {bits} bits; use at least 2048"),
            );
        }
    }

    // cert-chain.pem
    let mut chain_ok = !chain.is_empty();
    if let (Some(ca), Some(first)) = (ca_ders.first(), chain_ders.first())
        && ca != first
    {
        chain_ok = false;
        let first_name = chain.first().map(name).unwrap_or_default();
        r.error("chain-does-not-start-with-ca-cert", CERT_CHAIN, format!("{CERT_CHAIN} starts with {first_name}, not with the certificate of {CA_CERT}; it must be the intermediate first, then up to the root"));
    }
    {
        let mut seen = HashSet::new();
        for (i, d) in chain_ders.iter().enumerate() {
            if !seen.insert(d) {
                r.warn(
                    "duplicate-certificate",
                    CERT_CHAIN,
                    format!("certificate {} appears twice in {CERT_CHAIN}", i + 1),
                );
            }
        }
    }
    for (i, pair) in chain.windows(2).enumerate() {
        let (child, issuer) = (&pair[0], &pair[1]);
        match verify(child, issuer) {
            Ok(()) => {}
            Err(X509Error::SignatureUnsupportedAlgorithm) => {
                chain_ok = false;
                r.warn(
                    "signature-unverifiable",
                    CERT_CHAIN,
                    format!(
                        "certificate {} {} uses a signature algorithm this tool cannot verify",
                        i + 1,
                        name(child)
                    ),
                );
            }
            Err(_) => {
                chain_ok = false;
                let names = if child.issuer().as_raw() == issuer.subject().as_raw() {
                    "its issuer name matches, but the signature does not verify with that key"
                        .to_string()
                } else {
                    format!("it was issued by \"{}\"", child.issuer())
                };
                r.error(
                    "chain-signature-invalid",
                    CERT_CHAIN,
                    format!(
                        "certificate {} {} is not signed by the next one, {}: {names}",
                        i + 1,
                        name(child),
                        name(issuer)
                    ),
                );
            }
        }
    }
    for (i, c) in chain.iter().enumerate().skip(1) {
        check_ca_flags(
            c,
            CERT_CHAIN,
            &format!("chain certificate {}", i + 1),
            &mut r,
        );
        if let Ok(Some(bc)) = c.basic_constraints()
            && let Some(max) = bc.value.path_len_constraint
            && (max as usize) < i
        {
            r.error("pathlen-violated", CERT_CHAIN, format!("chain certificate {} {} allows {max} CA(s) below it (pathlen:{max}), but the chain puts {i} below it: clients will reject every workload certificate", i + 1, name(c)));
        }
    }
    // Reaching the root.
    if let Some(last) = chain.last() {
        let last_der = chain_ders.last().map(Vec::as_slice).unwrap_or_default();
        let is_a_root = root_ders.iter().any(|d| d.as_slice() == last_der);
        if !is_a_root && !roots.is_empty() {
            let signed_by_root = roots.iter().any(|root| verify(last, root).is_ok());
            if signed_by_root {
                r.warn("chain-omits-root", CERT_CHAIN, format!("{CERT_CHAIN} ends with {} which {ROOT_CERT} signed; Istio's tooling appends the root itself", name(last)));
            } else {
                chain_ok = false;
                if is_self_signed(last) {
                    r.error("root-cert-mismatch", ROOT_CERT, format!("{CERT_CHAIN} ends with the root {} but {ROOT_CERT} holds {}: both must be the same root", name(last), roots.iter().map(name).collect::<Vec<_>>().join(", ")));
                }
                r.error("chain-does-not-reach-root", CERT_CHAIN, format!("{CERT_CHAIN} does not lead to {ROOT_CERT}: its last certificate {} is neither that root nor signed by it, so workloads trusting the root will reject istiod's certificates", name(last)));
            }
        }
    }

    // root-cert.pem
    if roots.len() > 1 {
        r.info(
            "multiple-roots",
            ROOT_CERT,
            format!("{ROOT_CERT} holds {} roots; all are trusted", roots.len()),
        );
    }
    for root in &roots {
        if !is_self_signed(root) {
            let why = if root.subject().as_raw() != root.issuer().as_raw() {
                format!("it was issued by \"{}\"", root.issuer())
            } else {
                "its signature does not verify with its own key".to_string()
            };
            r.error(
                "root-not-self-signed",
                ROOT_CERT,
                format!(
                    "{ROOT_CERT} {} is not a self-signed root: {why}",
                    name(root)
                ),
            );
        }
        check_ca_flags(root, ROOT_CERT, "the root", &mut r);
    }

    // Validity of every distinct certificate.
    let mut seen = HashSet::new();
    let all = [
        (CA_CERT, &ca_ders),
        (CERT_CHAIN, &chain_ders),
        (ROOT_CERT, &root_ders),
    ];
    for (file, ders) in all {
        for der in ders.iter() {
            if !seen.insert(fingerprint(der)) {
                continue;
            }
            let Ok((_, c)) = X509Certificate::from_der(der) else {
                continue;
            };
            let nb = c.validity().not_before.to_datetime();
            let na = c.validity().not_after.to_datetime();
            if na < now {
                r.error(
                    "expired",
                    file,
                    format!(
                        "{} expired on {} ({} days ago)",
                        name(&c),
                        rfc3339(na),
                        (now - na).whole_days()
                    ),
                );
            } else if nb > now {
                r.error(
                    "not-yet-valid",
                    file,
                    format!(
                        "{} is not valid before {} (check the clocks)",
                        name(&c),
                        rfc3339(nb)
                    ),
                );
            } else if (na - now).whole_days() < EXPIRES_SOON_DAYS {
                r.warn(
                    "expires-soon",
                    file,
                    format!(
                        "{} expires on {} (in {} days): rotate it",
                        name(&c),
                        rfc3339(na),
                        (na - now).whole_days()
                    ),
                );
            }
        }
    }

    if chain_ok && !r.0.iter().any(Finding::is_error) {
        let path: Vec<String> = chain.iter().map(name).collect();
        r.info(
            "chain-verified",
            CERT_CHAIN,
            format!("signatures verified: {}", path.join(" <- ")),
        );
    }
    let mut out = r.0;
    out.sort_by_key(|f| f.severity);
    out
}

/// Reads the four files of a cluster directory (missing ones become findings) and checks them.
/// Errors only when `dir` is not a readable directory.
pub fn check_dir(dir: &Path) -> Result<Vec<Finding>, CertsError> {
    let meta = std::fs::metadata(dir).map_err(super::io_err(dir))?;
    if !meta.is_dir() {
        return Err(CertsError::InvalidOption(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let mut unreadable = Vec::new();
    let mut read = |n: &str| -> Option<String> {
        let p = dir.join(n);
        match std::fs::read(&p) {
            Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                unreadable.push(Finding {
                    severity: Severity::Error,
                    code: "pem-unreadable",
                    file: n.to_string(),
                    message: format!("{} cannot be read: {e}", p.display()),
                });
                Some(String::new())
            }
        }
    };
    let (k, c, ch, r) = (
        read(CA_KEY),
        read(CA_CERT),
        read(CERT_CHAIN),
        read(ROOT_CERT),
    );
    let key = k.map(crate::secret::Secret::new);
    let mut findings = check_bundle(
        &BundleInput {
            ca_key: key.as_ref().map(|s| s.expose()),
            ca_cert: c.as_deref(),
            cert_chain: ch.as_deref(),
            root_cert: r.as_deref(),
        },
        OffsetDateTime::now_utc(),
    );
    if !unreadable.is_empty() {
        let unreadable_files: Vec<String> = unreadable.iter().map(|f| f.file.clone()).collect();
        findings.retain(|f| !(unreadable_files.contains(&f.file) && f.code == "pem-unreadable"));
        unreadable.extend(findings);
        findings = unreadable;
        findings.sort_by_key(|f| f.severity);
    }
    Ok(findings)
}

/// Whether the private key in `key_pem` (PKCS#1, PKCS#8 or SEC1) is the key of the first
/// certificate in `cert_pem`.
pub fn key_matches_cert(key_pem: &str, cert_pem: &str) -> Result<bool, CertsError> {
    let (kp, _) = parse_private_key(key_pem, "key")?;
    let blocks = split_pem(cert_pem);
    let Some(block) = blocks.iter().find(|b| b.is_certificate()) else {
        return Err(CertsError::NoCertificate {
            what: "certificate".into(),
            found: None,
        });
    };
    let der = block.der.as_ref().map_err(|e| CertsError::BadCertificate {
        what: "certificate".into(),
        reason: e.clone(),
    })?;
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertsError::BadCertificate {
        what: "certificate".into(),
        reason: e.to_string(),
    })?;
    Ok(key_matches_spki(&kp, cert.public_key()))
}

/// Former entry point, kept for the doctor and the engine.
pub fn check_bundle_pems(
    ca_key: Option<&str>,
    ca_cert: Option<&str>,
    cert_chain: Option<&str>,
    root_cert: Option<&str>,
) -> Vec<Finding> {
    check_bundle(
        &BundleInput {
            ca_key,
            ca_cert,
            cert_chain,
            root_cert,
        },
        OffsetDateTime::now_utc(),
    )
}
