//! One description of a certificate, shared by `certs inspect`, the TUI fingerprint pane
//! and the engine's verification step.

use ::time::OffsetDateTime;
use ::time::format_description::well_known::Rfc3339;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::*;

use super::CertsError;
use super::pemutil::{KeyInfo, PemBlock, key_format, key_from_block, spki_description, split_pem};

/// What `inspect` shows of one certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// Lowercase colon-separated hex, no leading zero byte (e.g. `3a:5f:01`).
    pub serial: String,
    /// Uppercase colon-separated hex of SHA-256 over the DER (as `openssl x509 -fingerprint -sha256`).
    pub sha256_fingerprint: String,
    /// RFC 3339, UTC.
    pub not_before: String,
    /// RFC 3339, UTC.
    pub not_after: String,
    /// Whole days from "now" to not-after (negative once expired).
    pub days_left: i64,
    /// `RSA`, `EC P-256`, `EC P-384`, ...
    pub key_type: String,
    pub key_bits: u32,
    pub is_ca: bool,
    /// basicConstraints pathLenConstraint, if any.
    pub path_len: Option<u32>,
    /// `DNS:name`, `IP:addr`, `URI:uri`, `email:addr`.
    pub sans: Vec<String>,
    /// keyUsage names as openssl prints them; empty when the extension is absent.
    pub key_usage: Vec<String>,
    pub signature_algorithm: String,
    /// Subject equals issuer and the certificate's own key verifies its signature.
    pub self_signed: bool,
}

/// One PEM block, described.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PemItem {
    Certificate(Box<CertInfo>),
    /// A private key: its type and size, never its content.
    PrivateKey(KeyInfo),
    /// A block we do not describe (CSR, public key, parameters...).
    Other {
        label: String,
    },
    /// A block that could not be decoded or parsed.
    Unreadable {
        label: String,
        reason: String,
    },
}

/// Every certificate of `pem`, described relative to the current time.
/// Errors when a certificate block is unreadable or when there is no certificate (the
/// error says if the text holds a private key instead, with its type).
pub fn inspect_pem(pem: &str) -> Result<Vec<CertInfo>, CertsError> {
    inspect_pem_at(pem, OffsetDateTime::now_utc())
}

/// [`inspect_pem`] with an explicit "now" (for `days_left`).
pub fn inspect_pem_at(pem: &str, now: OffsetDateTime) -> Result<Vec<CertInfo>, CertsError> {
    let blocks = split_pem(pem);
    if blocks.is_empty() {
        return Err(CertsError::NoPem {
            what: "input".into(),
        });
    }
    let mut certs = Vec::new();
    let mut key = None;
    for b in &blocks {
        if b.is_certificate() {
            let der = b.der.as_ref().map_err(|e| CertsError::BadCertificate {
                what: "input".into(),
                reason: e.clone(),
            })?;
            certs.push(
                describe_der(der, now).map_err(|reason| CertsError::BadCertificate {
                    what: "input".into(),
                    reason,
                })?,
            );
        } else if b.is_private_key() && key.is_none() {
            key = Some(describe_key(b));
        }
    }
    if certs.is_empty() {
        let found = key.map(|k| match k {
            PemItem::PrivateKey(k) => {
                format!(
                    "it is a private key: {} {} bits, {}",
                    k.key_type, k.key_bits, k.format
                )
            }
            _ => "it is a private key".into(),
        });
        return Err(CertsError::NoCertificate {
            what: "input".into(),
            found,
        });
    }
    Ok(certs)
}

/// Every PEM block of `pem`, described (certificates, keys by type only, others by label).
/// Errors only when the text holds no PEM block at all.
pub fn inspect_items(pem: &str, now: OffsetDateTime) -> Result<Vec<PemItem>, CertsError> {
    let blocks = split_pem(pem);
    if blocks.is_empty() {
        return Err(CertsError::NoPem {
            what: "input".into(),
        });
    }
    Ok(blocks
        .iter()
        .map(|b| {
            if b.is_certificate() {
                match &b.der {
                    Ok(der) => match describe_der(der, now) {
                        Ok(info) => PemItem::Certificate(Box::new(info)),
                        Err(reason) => PemItem::Unreadable {
                            label: b.label.clone(),
                            reason,
                        },
                    },
                    Err(reason) => PemItem::Unreadable {
                        label: b.label.clone(),
                        reason: reason.clone(),
                    },
                }
            } else if b.is_private_key() {
                describe_key(b)
            } else {
                match &b.der {
                    Ok(_) => PemItem::Other {
                        label: b.label.clone(),
                    },
                    Err(reason) => PemItem::Unreadable {
                        label: b.label.clone(),
                        reason: reason.clone(),
                    },
                }
            }
        })
        .collect())
}

fn describe_key(b: &PemBlock) -> PemItem {
    if b.encrypted {
        return PemItem::PrivateKey(KeyInfo {
            format: if b.label == "ENCRYPTED PRIVATE KEY" {
                "encrypted PKCS#8".into()
            } else {
                format!("encrypted {}", key_format(&b.label))
            },
            key_type: match b.label.as_str() {
                "RSA PRIVATE KEY" => "RSA".into(),
                "EC PRIVATE KEY" => "EC".into(),
                _ => "unknown".into(),
            },
            key_bits: 0,
        });
    }
    match key_from_block(b, "key") {
        Ok((_, info)) => PemItem::PrivateKey(info),
        Err(e) => PemItem::Unreadable {
            label: b.label.clone(),
            reason: e.to_string(),
        },
    }
}

pub(crate) fn colon_hex(bytes: &[u8], upper: bool) -> String {
    bytes
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect::<Vec<_>>()
        .join(":")
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

pub(crate) fn fingerprint(der: &[u8]) -> String {
    colon_hex(&Sha256::digest(der), true)
}

pub(crate) fn is_self_signed(c: &X509Certificate<'_>) -> bool {
    c.subject().as_raw() == c.issuer().as_raw() && c.verify_signature(None).is_ok()
}

fn describe_der(der: &[u8], now: OffsetDateTime) -> Result<CertInfo, String> {
    let (_, c) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    Ok(describe(&c, der, now))
}

pub(crate) fn describe(c: &X509Certificate<'_>, der: &[u8], now: OffsetDateTime) -> CertInfo {
    let serial = c.serial.to_bytes_be();
    let not_after = c.validity().not_after.to_datetime();
    let (key_type, key_bits) = spki_description(c.public_key());
    let bc = c.basic_constraints().ok().flatten();
    let sans = match c.subject_alternative_name() {
        Ok(Some(san)) => san.value.general_names.iter().map(general_name).collect(),
        _ => Vec::new(),
    };
    let key_usage = match c.key_usage() {
        Ok(Some(ku)) => {
            let k = ku.value;
            [
                (k.digital_signature(), "Digital Signature"),
                (k.non_repudiation(), "Non Repudiation"),
                (k.key_encipherment(), "Key Encipherment"),
                (k.data_encipherment(), "Data Encipherment"),
                (k.key_agreement(), "Key Agreement"),
                (k.key_cert_sign(), "Certificate Sign"),
                (k.crl_sign(), "CRL Sign"),
                (k.encipher_only(), "Encipher Only"),
                (k.decipher_only(), "Decipher Only"),
            ]
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| n.to_string())
            .collect()
        }
        _ => Vec::new(),
    };
    let sig_oid = &c.signature_algorithm.algorithm;
    let signature_algorithm = x509_parser::oid_registry::OidRegistry::default()
        .with_all_crypto()
        .get(sig_oid)
        .map(|e| e.sn().to_string())
        .unwrap_or_else(|| sig_oid.to_id_string());
    CertInfo {
        subject: c.subject().to_string(),
        issuer: c.issuer().to_string(),
        serial: colon_hex(&serial, false),
        sha256_fingerprint: fingerprint(der),
        not_before: rfc3339(c.validity().not_before.to_datetime()),
        not_after: rfc3339(not_after),
        days_left: (not_after - now).whole_days(),
        key_type,
        key_bits,
        is_ca: bc.as_ref().is_some_and(|b| b.value.ca),
        path_len: bc.and_then(|b| b.value.path_len_constraint),
        sans,
        key_usage,
        signature_algorithm,
        self_signed: is_self_signed(c),
    }
}

fn general_name(g: &GeneralName<'_>) -> String {
    match g {
        GeneralName::DNSName(n) => format!("DNS:{n}"),
        GeneralName::URI(u) => format!("URI:{u}"),
        GeneralName::RFC822Name(e) => format!("email:{e}"),
        GeneralName::IPAddress(b) => match b.len() {
            4 => {
                let a: [u8; 4] = [b[0], b[1], b[2], b[3]];
                format!("IP:{}", std::net::Ipv4Addr::from(a))
            }
            16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                format!("IP:{}", std::net::Ipv6Addr::from(a))
            }
            _ => format!("IP:{}", hex::encode(b)),
        },
        other => format!("{other}"),
    }
}
