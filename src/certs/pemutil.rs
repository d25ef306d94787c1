//! PEM splitting that never gives up on the whole text because of one bad block, private
//! key parsing (PKCS#1, PKCS#8, SEC1), and public-key descriptions.

use rcgen::{KeyPair, PublicKeyData};
use x509_parser::prelude::*;
use x509_parser::public_key::PublicKey;

use super::CertsError;

/// One PEM block: its label (`CERTIFICATE`, `RSA PRIVATE KEY`, ...) and decoded content.
/// A block whose base64 cannot be decoded has `der: Err(reason)`.
#[derive(Clone, PartialEq, Eq)]
pub struct PemBlock {
    pub label: String,
    pub der: Result<Vec<u8>, String>,
    /// Legacy `Proc-Type: 4,ENCRYPTED` header or `ENCRYPTED PRIVATE KEY` label.
    pub encrypted: bool,
}

impl PemBlock {
    pub fn is_private_key(&self) -> bool {
        self.label.ends_with("PRIVATE KEY")
    }
    pub fn is_certificate(&self) -> bool {
        matches!(
            self.label.as_str(),
            "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE"
        )
    }
}

/// Never prints key content.
impl std::fmt::Debug for PemBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let content = match &self.der {
            Ok(d) if self.is_private_key() => format!("<{} bytes redacted>", d.len()),
            Ok(d) => format!("<{} bytes>", d.len()),
            Err(e) => format!("<unreadable: {e}>"),
        };
        f.debug_struct("PemBlock")
            .field("label", &self.label)
            .field("der", &content)
            .field("encrypted", &self.encrypted)
            .finish()
    }
}

fn begin_label(line: &str) -> Option<&str> {
    line.trim()
        .strip_prefix("-----BEGIN ")?
        .strip_suffix("-----")
}

/// Splits a text into its PEM blocks, in order. Text outside blocks (comments,
/// `openssl x509 -text` output, "Bag Attributes") is ignored. A `BEGIN` without its `END`
/// gives a block with `der: Err`.
pub fn split_pem(text: &str) -> Vec<PemBlock> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    let mut open: Option<(String, usize)> = None;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let trimmed = line.trim();
        match &open {
            None => {
                if let Some(label) = begin_label(trimmed) {
                    open = Some((label.to_string(), start));
                }
            }
            Some((label, begin)) => {
                if trimmed == format!("-----END {label}-----") {
                    out.push(decode_block(label, &text[*begin..offset]));
                    open = None;
                } else if let Some(other) = begin_label(trimmed) {
                    out.push(PemBlock {
                        label: label.clone(),
                        der: Err(format!("BEGIN {label} without END")),
                        encrypted: false,
                    });
                    open = Some((other.to_string(), start));
                }
            }
        }
    }
    if let Some((label, _)) = open {
        out.push(PemBlock {
            der: Err(format!("BEGIN {label} without END")),
            label,
            encrypted: false,
        });
    }
    out
}

fn decode_block(label: &str, block: &str) -> PemBlock {
    let parsed = match ::pem::parse_many(block) {
        Ok(mut v) if v.len() == 1 => v.pop().ok_or(::pem::PemError::MissingData),
        Ok(v) if v.is_empty() => Err(::pem::PemError::MissingData),
        Ok(_) => {
            return PemBlock {
                label: label.to_string(),
                der: Err("two PEM blocks are glued together (missing line break)".into()),
                encrypted: false,
            };
        }
        Err(e) => Err(e),
    };
    match parsed {
        Ok(p) => {
            let encrypted = label == "ENCRYPTED PRIVATE KEY"
                || p.headers()
                    .get("Proc-Type")
                    .is_some_and(|v| v.contains("ENCRYPTED"));
            PemBlock {
                label: label.to_string(),
                der: Ok(p.into_contents()),
                encrypted,
            }
        }
        Err(e) => PemBlock {
            label: label.to_string(),
            der: Err(e.to_string()),
            encrypted: false,
        },
    }
}

/// Type and size of a public key, e.g. ("RSA", 4096) or ("EC P-256", 256).
pub(crate) fn spki_description(spki: &SubjectPublicKeyInfo<'_>) -> (String, u32) {
    let alg = &spki.algorithm.algorithm;
    let oid = alg.to_id_string();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => ("RSA".into(), bit_len(rsa.modulus)),
        Ok(PublicKey::EC(_)) | Ok(PublicKey::Unknown(_)) if oid == "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => ("EC P-256".into(), 256),
                Some("1.3.132.0.34") => ("EC P-384".into(), 384),
                Some("1.3.132.0.35") => ("EC P-521".into(), 521),
                Some(c) => (format!("EC curve {c}"), 0),
                None => ("EC (unknown curve)".into(), 0),
            }
        }
        _ if oid == "1.3.101.112" => ("Ed25519".into(), 256),
        _ if oid == "1.2.840.113549.1.1.10" => ("RSA-PSS".into(), 0),
        _ => (format!("unknown ({oid})"), 0),
    }
}

fn bit_len(be: &[u8]) -> u32 {
    let mut s = be;
    while let [0, rest @ ..] = s {
        s = rest;
    }
    match s.first() {
        None => 0,
        Some(b) => (s.len() as u32 - 1) * 8 + (8 - b.leading_zeros()),
    }
}

/// Type, size and encoding of a private key; never its content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    /// `PKCS#1`, `PKCS#8`, `SEC1`, or `encrypted PKCS#8` / `encrypted PKCS#1`.
    pub format: String,
    /// `RSA`, `EC P-256`, `EC P-384`, `Ed25519`, or `unknown`.
    pub key_type: String,
    /// Key size in bits (0 when unknown).
    pub key_bits: u32,
}

pub(crate) fn key_format(label: &str) -> &'static str {
    match label {
        "RSA PRIVATE KEY" => "PKCS#1",
        "EC PRIVATE KEY" => "SEC1",
        "PRIVATE KEY" => "PKCS#8",
        "ENCRYPTED PRIVATE KEY" => "encrypted PKCS#8",
        _ => "unknown",
    }
}

/// Reads the first private key of `text` (PKCS#1, PKCS#8 or SEC1; RSA or EC).
pub(crate) fn parse_private_key(text: &str, what: &str) -> Result<(KeyPair, KeyInfo), CertsError> {
    let blocks = split_pem(text);
    if blocks.is_empty() {
        return Err(CertsError::NoPem { what: what.into() });
    }
    let Some(block) = blocks.into_iter().find(PemBlock::is_private_key) else {
        return Err(CertsError::NoKey { what: what.into() });
    };
    key_from_block(&block, what)
}

pub(crate) fn key_from_block(
    block: &PemBlock,
    what: &str,
) -> Result<(KeyPair, KeyInfo), CertsError> {
    if block.encrypted {
        return Err(CertsError::EncryptedKey { what: what.into() });
    }
    let der = block.der.as_ref().map_err(|e| CertsError::BadKey {
        what: what.into(),
        reason: e.clone(),
    })?;
    let kp = KeyPair::try_from(der.as_slice()).map_err(|e| CertsError::BadKey {
        what: what.into(),
        reason: format!("{e} (supported: RSA and EC P-256/P-384 in PKCS#1, PKCS#8 or SEC1)"),
    })?;
    let spki_der = kp.subject_public_key_info();
    let (key_type, key_bits) = match SubjectPublicKeyInfo::from_der(&spki_der) {
        Ok((_, spki)) => spki_description(&spki),
        Err(_) => ("unknown".into(), 0),
    };
    let info = KeyInfo {
        format: key_format(&block.label).into(),
        key_type,
        key_bits,
    };
    Ok((kp, info))
}

/// Whether the key pair's public half is the certificate's public key.
pub(crate) fn key_matches_spki(kp: &KeyPair, spki: &SubjectPublicKeyInfo<'_>) -> bool {
    kp.public_key_raw() == &*spki.subject_public_key.data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_len_strips_leading_zeros() {
        assert_eq!(bit_len(&[0, 0x80, 0]), 16);
        assert_eq!(bit_len(&[0x01]), 1);
        assert_eq!(bit_len(&[]), 0);
        assert_eq!(bit_len(&[0, 0]), 0);
    }

    #[test]
    fn unterminated_block_is_reported_not_panicking() {
        let b = split_pem("-----BEGIN CERTIFICATE-----\nAAAA\n");
        assert_eq!(b.len(), 1);
        assert!(b[0].der.is_err());
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let b = PemBlock {
            label: "PRIVATE KEY".into(),
            der: Ok(vec![1, 2, 3]),
            encrypted: false,
        };
        assert!(format!("{b:?}").contains("redacted"));
    }
}
