//! Generation of Istio's root and per-cluster intermediates, and the on-disk layout.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use super::pemutil::{key_matches_spki, parse_private_key, split_pem};
use super::{CA_CERT, CA_KEY, CERT_CHAIN, CertsError, KeyType, ROOT_CERT, ROOT_KEY, io_err};
use crate::config::CertsSection;
use crate::secret::Secret;

/// Every value of the generated certificates; `Default` is Istio's `common.mk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateOptions {
    /// Key algorithm of the root and intermediates (`ROOTCA_KEYSZ`/`INTERMEDIATE_KEYSZ` = RSA 4096).
    pub key_type: KeyType,
    /// `ROOTCA_ORG` = `Istio`.
    pub root_org: String,
    /// `ROOTCA_CN` = `Root CA`.
    pub root_cn: String,
    /// `ROOTCA_DAYS` = 3650.
    pub root_days: u32,
    /// `INTERMEDIATE_ORG` = `Istio`.
    pub int_org: String,
    /// `INTERMEDIATE_CN` = `Intermediate CA`.
    pub int_cn: String,
    /// `INTERMEDIATE_DAYS` = 730.
    pub int_days: u32,
    /// DNS SANs of the intermediates (`INTERMEDIATE_SAN_DNS` = `istiod.istio-system.svc`).
    pub int_sans: Vec<String>,
    /// notBefore is set this long before "now", for clock skew between machines.
    pub backdate: Duration,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            key_type: KeyType::Rsa4096,
            root_org: "Istio".into(),
            root_cn: "Root CA".into(),
            root_days: 3650,
            int_org: "Istio".into(),
            int_cn: "Intermediate CA".into(),
            int_days: 730,
            int_sans: vec!["istiod.istio-system.svc".into()],
            backdate: Duration::minutes(1),
        }
    }
}

impl From<&CertsSection> for GenerateOptions {
    fn from(s: &CertsSection) -> Self {
        Self {
            key_type: s.key_type,
            root_days: s.root_days,
            int_days: s.intermediate_days,
            ..Self::default()
        }
    }
}

/// A CA certificate with its private key (the root).
#[derive(Debug, Clone, PartialEq)]
pub struct CaBundle {
    pub cert_pem: String,
    pub key_pem: Secret,
}

/// The four PEMs istiod reads for one cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterBundle {
    pub ca_key: Secret,
    pub ca_cert: String,
    /// Intermediate first, then the root.
    pub cert_chain: String,
    pub root_cert: String,
}

fn new_key(kt: KeyType) -> Result<KeyPair, CertsError> {
    Ok(match kt {
        KeyType::Rsa4096 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096)
        }
        KeyType::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
        KeyType::EcP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyType::EcP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
    }?)
}

fn random_serial() -> Result<SerialNumber, CertsError> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| CertsError::Generate("no randomness".into()))?;
    b[0] &= 0x7f;
    b[0] |= 0x01;
    Ok(SerialNumber::from_slice(&b))
}

fn check_days(what: &str, days: u32) -> Result<(), CertsError> {
    if days == 0 || days > 36500 {
        return Err(CertsError::InvalidOption(format!(
            "{what} must be between 1 and 36500 days, not {days}"
        )));
    }
    Ok(())
}

fn ca_params(
    dn: &[(DnType, &str)],
    days: u32,
    backdate: Duration,
    pathlen: Option<u8>,
) -> Result<CertificateParams, CertsError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    for (t, v) in dn {
        if v.is_empty() {
            return Err(CertsError::InvalidOption(format!(
                "empty subject field {t:?}"
            )));
        }
        name.push(t.clone(), *v);
    }
    p.distinguished_name = name;
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::now_utc());
    p.not_before = now - backdate;
    p.not_after = now + Duration::days(i64::from(days));
    p.serial_number = Some(random_serial()?);
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
    Ok(p)
}

/// A self-signed root: `O=<root_org>, CN=<root_cn>`, basicConstraints critical CA:TRUE,
/// keyUsage critical digitalSignature, nonRepudiation, keyEncipherment, keyCertSign, SKI.
pub fn generate_root(opts: &GenerateOptions) -> Result<CaBundle, CertsError> {
    check_days("root validity", opts.root_days)?;
    let key = new_key(opts.key_type)?;
    let params = ca_params(
        &[
            (DnType::OrganizationName, &opts.root_org),
            (DnType::CommonName, &opts.root_cn),
        ],
        opts.root_days,
        opts.backdate,
        None,
    )?;
    let cert = params.self_signed(&key)?;
    Ok(CaBundle {
        cert_pem: cert.pem(),
        key_pem: Secret::new(key.serialize_pem()),
    })
}

/// Checks a cluster name is usable as a directory name and as `L=`.
pub(crate) fn check_cluster_name(cluster: &str) -> Result<(), CertsError> {
    if cluster.is_empty()
        || cluster == "."
        || cluster == ".."
        || cluster.contains(['/', '\\', '\0'])
        || cluster.chars().any(char::is_control)
    {
        return Err(CertsError::InvalidOption(format!(
            "cluster name {cluster:?} cannot be a directory name"
        )));
    }
    Ok(())
}

/// One cluster's intermediate signed by `root`: `O=<int_org>, CN=<int_cn>, L=<cluster>`,
/// CA:TRUE pathlen:0 (critical), the root's key usages, SAN DNS, SKI and AKI.
/// The signature algorithm follows the root key (SHA-256 for RSA and P-256, SHA-384 for P-384).
pub fn generate_intermediate(
    root: &CaBundle,
    cluster: &str,
    opts: &GenerateOptions,
) -> Result<ClusterBundle, CertsError> {
    check_cluster_name(cluster)?;
    check_days("intermediate validity", opts.int_days)?;
    let (root_key, _) = parse_private_key(root.key_pem.expose(), ROOT_KEY)?;
    let root_der = first_cert_der(&root.cert_pem, ROOT_CERT)?;
    {
        let (_, rc) = x509_parser::parse_x509_certificate(&root_der).map_err(|e| {
            CertsError::BadCertificate {
                what: ROOT_CERT.into(),
                reason: e.to_string(),
            }
        })?;
        if !key_matches_spki(&root_key, rc.public_key()) {
            return Err(CertsError::KeyMismatch {
                key: ROOT_KEY.into(),
                cert: ROOT_CERT.into(),
            });
        }
    }
    let issuer = Issuer::from_ca_cert_der(&root_der.clone().into(), &root_key)?;
    let key = new_key(opts.key_type)?;
    let mut params = ca_params(
        &[
            (DnType::OrganizationName, &opts.int_org),
            (DnType::CommonName, &opts.int_cn),
            (DnType::LocalityName, cluster),
        ],
        opts.int_days,
        opts.backdate,
        Some(0),
    )?;
    params.subject_alt_names = opts
        .int_sans
        .iter()
        .map(|s| {
            s.clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|_| CertsError::InvalidOption(format!("SAN {s:?} is not a DNS name")))
        })
        .collect::<Result<_, _>>()?;
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer)?;
    let root_pem = pem::encode_config(
        &pem::Pem::new("CERTIFICATE", root_der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    Ok(ClusterBundle {
        ca_key: Secret::new(key.serialize_pem()),
        ca_cert: cert.pem(),
        cert_chain: format!("{}{}", cert.pem(), root_pem),
        root_cert: root_pem,
    })
}

fn first_cert_der(text: &str, what: &str) -> Result<Vec<u8>, CertsError> {
    let blocks = split_pem(text);
    let b = blocks
        .into_iter()
        .find(|b| b.is_certificate())
        .ok_or_else(|| CertsError::NoCertificate {
            what: what.into(),
            found: None,
        })?;
    b.der.map_err(|reason| CertsError::BadCertificate {
        what: what.into(),
        reason,
    })
}

fn read(path: &Path) -> Result<String, CertsError> {
    std::fs::read_to_string(path).map_err(io_err(path))
}

/// Reads `dir/root-cert.pem` and `dir/root-key.pem` and checks the key is the root's.
pub fn load_root_dir(dir: &Path) -> Result<CaBundle, CertsError> {
    let cert_pem = read(&dir.join(ROOT_CERT))?;
    let key_pem = Secret::new(read(&dir.join(ROOT_KEY))?);
    let matches = super::key_matches_cert(key_pem.expose(), &cert_pem)?;
    if !matches {
        return Err(CertsError::KeyMismatch {
            key: dir.join(ROOT_KEY).display().to_string(),
            cert: dir.join(ROOT_CERT).display().to_string(),
        });
    }
    Ok(CaBundle { cert_pem, key_pem })
}

/// Reads the four files of an Istio cluster directory (no checks: see `check_bundle`).
pub fn load_cluster_dir(dir: &Path) -> Result<ClusterBundle, CertsError> {
    Ok(ClusterBundle {
        ca_key: Secret::new(read(&dir.join(CA_KEY))?),
        ca_cert: read(&dir.join(CA_CERT))?,
        cert_chain: read(&dir.join(CERT_CHAIN))?,
        root_cert: read(&dir.join(ROOT_CERT))?,
    })
}

struct PlannedFile<'a> {
    path: PathBuf,
    contents: &'a str,
    private: bool,
}

fn plan_cluster<'a>(dir: &Path, b: &'a ClusterBundle, files: &mut Vec<PlannedFile<'a>>) {
    files.push(PlannedFile {
        path: dir.join(CA_KEY),
        contents: b.ca_key.expose(),
        private: true,
    });
    for (n, c) in [
        (CA_CERT, &b.ca_cert),
        (CERT_CHAIN, &b.cert_chain),
        (ROOT_CERT, &b.root_cert),
    ] {
        files.push(PlannedFile {
            path: dir.join(n),
            contents: c,
            private: false,
        });
    }
}

/// Writes every planned file, after checking none exists (unless `force`, or unless it
/// already holds exactly the same content). Private files are created 0600 at open time.
fn write_all(files: &[PlannedFile<'_>], force: bool) -> Result<Vec<PathBuf>, CertsError> {
    let mut todo = Vec::new();
    for f in files {
        match std::fs::symlink_metadata(&f.path) {
            Ok(_) => {
                let same = std::fs::read(&f.path).is_ok_and(|c| c == f.contents.as_bytes());
                if same && !f.private {
                    continue;
                }
                if same && f.private {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = std::fs::metadata(&f.path).map(|m| m.permissions().mode() & 0o777);
                    if mode.is_ok_and(|m| m & 0o077 == 0) {
                        continue;
                    }
                }
                if !force {
                    return Err(CertsError::Exists {
                        path: f.path.clone(),
                    });
                }
                todo.push((f, true));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => todo.push((f, false)),
            Err(e) => return Err(io_err(&f.path)(e)),
        }
    }
    let mut written = Vec::new();
    for (f, exists) in todo {
        if let Some(parent) = f.path.parent() {
            crate::fsutil::create_private_dir(parent).map_err(io_err(parent))?;
        }
        if exists {
            // Replace, never reuse the old inode (it may be 0644 or a symlink).
            std::fs::remove_file(&f.path).map_err(io_err(&f.path))?;
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if f.private { 0o600 } else { 0o644 })
            .open(&f.path)
            .map_err(io_err(&f.path))?;
        file.write_all(f.contents.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io_err(&f.path))?;
        written.push(f.path.clone());
    }
    Ok(written)
}

/// Writes Istio's layout: `out/root-cert.pem`, `out/root-key.pem` and, per cluster,
/// `out/<cluster>/{ca-key.pem, ca-cert.pem, cert-chain.pem, root-cert.pem}`.
/// Keys are created 0600. Existing files with other content are an error unless `force`
/// (then they are replaced by new files). Nothing is written if any check fails first.
/// Returns the paths written.
pub fn write_istio_layout(
    out: &Path,
    root: &CaBundle,
    clusters: &[(&str, &ClusterBundle)],
    force: bool,
) -> Result<Vec<PathBuf>, CertsError> {
    write_layout(out, root, true, clusters, force)
}

/// As [`write_istio_layout`], optionally without `root-key.pem` (when the root comes from
/// another directory, its key is not copied).
pub(crate) fn write_layout(
    out: &Path,
    root: &CaBundle,
    with_root_key: bool,
    clusters: &[(&str, &ClusterBundle)],
    force: bool,
) -> Result<Vec<PathBuf>, CertsError> {
    let mut files = vec![PlannedFile {
        path: out.join(ROOT_CERT),
        contents: &root.cert_pem,
        private: false,
    }];
    if with_root_key {
        files.push(PlannedFile {
            path: out.join(ROOT_KEY),
            contents: root.key_pem.expose(),
            private: true,
        });
    }
    for (name, b) in clusters {
        check_cluster_name(name)?;
        plan_cluster(&out.join(name), b, &mut files);
    }
    crate::fsutil::create_private_dir(out).map_err(io_err(out))?;
    write_all(&files, force)
}

/// Writes one cluster directory (the four files).
pub fn write_cluster_dir(
    dir: &Path,
    b: &ClusterBundle,
    force: bool,
) -> Result<Vec<PathBuf>, CertsError> {
    let mut files = Vec::new();
    plan_cluster(dir, b, &mut files);
    write_all(&files, force)
}

/// The engine's entry: uses the root in `s.root_dir`, or in `out` if present, or generates
/// it into `out`; then (re)generates `out/<cluster>/`.
pub fn generate_into(out: &Path, cluster: &str, s: &CertsSection) -> Result<(), CertsError> {
    let opts = GenerateOptions::from(s);
    let root_dir = s.root_dir.clone().unwrap_or_else(|| out.to_path_buf());
    let (root, own_root) = if root_dir.join(ROOT_CERT).exists() && root_dir.join(ROOT_KEY).exists()
    {
        (load_root_dir(&root_dir)?, root_dir == out)
    } else if s.root_dir.is_some() {
        return Err(CertsError::InvalidOption(format!(
            "{} has no root-cert.pem + root-key.pem",
            root_dir.display()
        )));
    } else {
        (generate_root(&opts)?, true)
    };
    let bundle = generate_intermediate(&root, cluster, &opts)?;
    crate::fsutil::create_private_dir(out).map_err(io_err(out))?;
    let mut files = vec![PlannedFile {
        path: out.join(ROOT_CERT),
        contents: &root.cert_pem,
        private: false,
    }];
    if own_root {
        files.push(PlannedFile {
            path: out.join(ROOT_KEY),
            contents: root.key_pem.expose(),
            private: true,
        });
    }
    write_all(&files, false)?;
    write_cluster_dir(&out.join(cluster), &bundle, true)?;
    Ok(())
}
