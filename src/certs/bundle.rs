//! The engine's side of the certs module: generate a cluster's bundle into Istio's
//! layout, load one, and run the checks on in-memory PEMs.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::config::{CertsSection, KeyType};
use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("certificate generation: {0}")]
    Generate(String),
}

pub struct LoadedBundle {
    pub ca_key: Secret,
    pub ca_cert: String,
    pub cert_chain: String,
    pub root_cert: String,
}

fn io(path: &Path, e: std::io::Error) -> BundleError {
    BundleError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn gen_err(e: rcgen::Error) -> BundleError {
    BundleError::Generate(e.to_string())
}

pub fn load_cluster_dir(dir: &Path) -> Result<LoadedBundle, BundleError> {
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).map_err(|e| io(&dir.join(n), e));
    Ok(LoadedBundle {
        ca_key: Secret::new(read("ca-key.pem")?),
        ca_cert: read("ca-cert.pem")?,
        cert_chain: read("cert-chain.pem")?,
        root_cert: read("root-cert.pem")?,
    })
}

fn new_key(kt: KeyType) -> Result<KeyPair, BundleError> {
    match kt {
        KeyType::Rsa4096 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)
        }
        KeyType::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
        KeyType::EcP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::EcP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
    }
    .map_err(gen_err)
}

fn ca_params(
    org: &str,
    cn: &str,
    locality: Option<&str>,
    days: u32,
    pathlen: Option<u8>,
) -> Result<CertificateParams, BundleError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, cn);
    if let Some(l) = locality {
        dn.push(DnType::LocalityName, l);
    }
    p.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::minutes(5);
    p.not_after = now + Duration::days(i64::from(days));
    p.is_ca = IsCa::Ca(match pathlen {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::ContentCommitment,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyCertSign,
    ];
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

fn write_key(path: &Path, pem: &str) -> Result<(), BundleError> {
    crate::fsutil::write_private(path, pem.as_bytes()).map_err(|e| io(path, e))
}

fn write_pub(path: &Path, pem: &str) -> Result<(), BundleError> {
    std::fs::write(path, pem).map_err(|e| io(path, e))
}

/// Generates `out/root-{cert,key}.pem` once, then `out/<cluster>/` as Istio's Makefile does.
pub fn generate_into(out: &Path, cluster: &str, s: &CertsSection) -> Result<(), BundleError> {
    crate::fsutil::create_private_dir(out).map_err(|e| io(out, e))?;
    let root_dir = s.root_dir.clone().unwrap_or_else(|| out.to_path_buf());
    let root_cert_path = root_dir.join("root-cert.pem");
    let root_key_path = root_dir.join("root-key.pem");
    let (root_pem, root_key) = if root_cert_path.exists() && root_key_path.exists() {
        let key_pem = std::fs::read_to_string(&root_key_path).map_err(|e| io(&root_key_path, e))?;
        let key = KeyPair::from_pem(&key_pem).map_err(gen_err)?;
        (
            std::fs::read_to_string(&root_cert_path).map_err(|e| io(&root_cert_path, e))?,
            key,
        )
    } else {
        let key = new_key(s.key_type)?;
        let params = ca_params("Istio", "Root CA", None, s.root_days, None)?;
        let cert = params.self_signed(&key).map_err(gen_err)?;
        write_key(&out.join("root-key.pem"), &key.serialize_pem())?;
        write_pub(&out.join("root-cert.pem"), &cert.pem())?;
        (cert.pem(), key)
    };
    let issuer = Issuer::from_ca_cert_pem(&root_pem, &root_key).map_err(gen_err)?;
    let dir = out.join(cluster);
    crate::fsutil::create_private_dir(&dir).map_err(|e| io(&dir, e))?;
    let key = new_key(s.key_type)?;
    let mut params = ca_params(
        "Istio",
        "Intermediate CA",
        Some(cluster),
        s.intermediate_days,
        Some(0),
    )?;
    params.subject_alt_names = vec![SanType::DnsName(
        "istiod.istio-system.svc".try_into().map_err(gen_err)?,
    )];
    let cert = params.signed_by(&key, &issuer).map_err(gen_err)?;
    write_key(&dir.join("ca-key.pem"), &key.serialize_pem())?;
    write_pub(&dir.join("ca-cert.pem"), &cert.pem())?;
    write_pub(
        &dir.join("cert-chain.pem"),
        &format!("{}{}", cert.pem(), root_pem),
    )?;
    write_pub(&dir.join("root-cert.pem"), &root_pem)?;
    Ok(())
}

/// One finding of a bundle check.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BundleFinding {
    pub error: bool,
    pub code: &'static str,
    pub message: String,
}

impl BundleFinding {
    pub fn is_error(&self) -> bool {
        self.error
    }
}

impl std::fmt::Display for BundleFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} [{}]: {}",
            if self.error { "error" } else { "warning" },
            self.code,
            self.message
        )
    }
}

fn ders(pem_text: &str) -> Result<Vec<Vec<u8>>, String> {
    let parsed = pem::parse_many(pem_text.as_bytes()).map_err(|e| e.to_string())?;
    let certs: Vec<Vec<u8>> = parsed
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.into_contents())
        .collect();
    if certs.is_empty() {
        Err("no CERTIFICATE block".into())
    } else {
        Ok(certs)
    }
}

/// Checks the four PEMs as istiod will use them: present, parseable, the CA is a CA that
/// may sign, the key belongs to it, the chain verifies signature by signature up to the
/// root, and nothing is expired (warning within 30 days).
pub fn check_bundle_pems(
    ca_key: Option<&str>,
    ca_cert: Option<&str>,
    cert_chain: Option<&str>,
    root_cert: Option<&str>,
) -> Vec<BundleFinding> {
    use x509_parser::prelude::*;
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let mut err = |code: &'static str, message: String| {
        out.push(BundleFinding {
            error: true,
            code,
            message,
        })
    };
    let (Some(ca_key), Some(ca_cert), Some(cert_chain), Some(root_cert)) =
        (ca_key, ca_cert, cert_chain, root_cert)
    else {
        err(
            "missing-file",
            "one of ca_key, ca_cert, cert_chain, root_cert is missing".into(),
        );
        return out;
    };
    let ca_der = match ders(ca_cert) {
        Ok(d) => d[0].clone(),
        Err(e) => {
            err("pem-unreadable", format!("ca_cert: {e}"));
            return out;
        }
    };
    let chain = match ders(cert_chain) {
        Ok(d) => d,
        Err(e) => {
            err("pem-unreadable", format!("cert_chain: {e}"));
            return out;
        }
    };
    let root_der = match ders(root_cert) {
        Ok(d) => d[0].clone(),
        Err(e) => {
            err("pem-unreadable", format!("root_cert: {e}"));
            return out;
        }
    };
    let Ok((_, ca)) = X509Certificate::from_der(&ca_der) else {
        err(
            "pem-unreadable",
            "ca_cert is not an X.509 certificate".into(),
        );
        return out;
    };
    if !ca.is_ca() {
        err("not-a-ca", "ca_cert is not a CA (basicConstraints CA:FALSE): istiod cannot sign workload certificates with it".into());
    }
    if let Ok(Some(ku)) = ca.key_usage()
        && !ku.value.key_cert_sign()
    {
        err(
            "no-keycertsign",
            "ca_cert lacks keyUsage keyCertSign".into(),
        );
    }
    match rcgen::KeyPair::from_pem(ca_key) {
        Ok(k) => {
            if k.public_key_raw() != &*ca.public_key().subject_public_key.data {
                err("key-mismatch", "ca_key does not belong to ca_cert".into());
            }
        }
        Err(e) => err(
            "pem-unreadable",
            format!("ca_key is not a readable private key: {e}"),
        ),
    }
    if chain.first() != Some(&ca_der) {
        err(
            "chain-does-not-start-with-ca-cert",
            "cert_chain does not start with ca_cert".into(),
        );
    }
    if chain.last() != Some(&root_der) {
        err(
            "root-cert-mismatch",
            "cert_chain does not end with root_cert".into(),
        );
    }
    let parsed: Vec<_> = chain
        .iter()
        .filter_map(|d| X509Certificate::from_der(d).ok().map(|(_, c)| c))
        .collect();
    for pair in parsed.windows(2) {
        if pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .is_err()
        {
            err(
                "chain-signature-invalid",
                format!(
                    "{} is not signed by {}",
                    pair[0].subject(),
                    pair[1].subject()
                ),
            );
        }
    }
    if let Ok((_, root)) = X509Certificate::from_der(&root_der)
        && root.verify_signature(None).is_err()
    {
        err(
            "root-not-self-signed",
            "root_cert is not self-signed".into(),
        );
    }
    let now = ::time::OffsetDateTime::now_utc().unix_timestamp();
    for (name, c) in [("ca_cert", Some(&ca)), ("root_cert", None)] {
        let holder;
        let c = match c {
            Some(c) => c,
            None => match X509Certificate::from_der(&root_der) {
                Ok((_, r)) => {
                    holder = r;
                    &holder
                }
                Err(_) => continue,
            },
        };
        let nb = c.validity().not_before.timestamp();
        let na = c.validity().not_after.timestamp();
        if na < now {
            err(
                "expired",
                format!("{name} expired on {}", c.validity().not_after),
            );
        } else if nb > now {
            err(
                "not-yet-valid",
                format!("{name} is not valid before {}", c.validity().not_before),
            );
        } else if na - now < 30 * 86400 {
            warnings.push(BundleFinding {
                error: false,
                code: "expires-soon",
                message: format!("{name} expires on {}", c.validity().not_after),
            });
        }
    }
    out.extend(warnings);
    out
}
