//! Throw-away PKI for one sandbox cluster: a cluster CA, the API server's serving cert, an
//! admin client cert (`system:masters`), a kubelet serving cert for 127.0.0.1 (the API
//! server verifies kubelets against the cluster CA, as `--kubelet-certificate-authority`
//! makes real clusters do) and the ServiceAccount signing key.
//! EC P-256 everywhere: generation is instant and kube-apiserver accepts it.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use super::SandboxError;

pub struct ClusterPki {
    pub ca_cert_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    pub kubelet_cert_pem: String,
    pub kubelet_key_pem: String,
    pub sa_key_pem: String,
    pub sa_pub_pem: String,
}

fn pki_err(e: rcgen::Error) -> SandboxError {
    SandboxError::Pki(e.to_string())
}

fn params(cn: &str, org: Option<&str>, days: i64) -> Result<CertificateParams, SandboxError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(pki_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    if let Some(org) = org {
        dn.push(DnType::OrganizationName, org);
    }
    p.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(days);
    Ok(p)
}

pub fn generate(cluster: &str) -> Result<ClusterPki, SandboxError> {
    let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
    let ca_key = KeyPair::generate_for(alg).map_err(pki_err)?;
    let mut ca_params = params(&format!("{cluster}-sandbox-ca"), None, 3650)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(pki_err)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let serving_key = KeyPair::generate_for(alg).map_err(pki_err)?;
    let mut serving = params("kube-apiserver", None, 3650)?;
    serving.subject_alt_names = vec![
        SanType::IpAddress(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
        SanType::DnsName("localhost".try_into().map_err(pki_err)?),
        SanType::DnsName("kubernetes.default.svc".try_into().map_err(pki_err)?),
    ];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    serving.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let serving_cert = serving.signed_by(&serving_key, &issuer).map_err(pki_err)?;

    let admin_key = KeyPair::generate_for(alg).map_err(pki_err)?;
    let mut admin = params("sandbox-admin", Some("system:masters"), 3650)?;
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    admin.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let admin_cert = admin.signed_by(&admin_key, &issuer).map_err(pki_err)?;

    // What a node's kubelet serves its API (`/containerLogs/...`) with: the API server
    // connects to the node's InternalIP, so the certificate names 127.0.0.1.
    let kubelet_key = KeyPair::generate_for(alg).map_err(pki_err)?;
    let mut kubelet = params("sandbox-kubelet", None, 3650)?;
    kubelet.subject_alt_names = vec![SanType::IpAddress(std::net::IpAddr::V4(
        std::net::Ipv4Addr::LOCALHOST,
    ))];
    kubelet.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    kubelet.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let kubelet_cert = kubelet.signed_by(&kubelet_key, &issuer).map_err(pki_err)?;

    let sa_key = KeyPair::generate_for(alg).map_err(pki_err)?;

    Ok(ClusterPki {
        ca_cert_pem: ca_cert.pem(),
        serving_cert_pem: serving_cert.pem(),
        serving_key_pem: serving_key.serialize_pem(),
        admin_cert_pem: admin_cert.pem(),
        admin_key_pem: admin_key.serialize_pem(),
        kubelet_cert_pem: kubelet_cert.pem(),
        kubelet_key_pem: kubelet_key.serialize_pem(),
        sa_pub_pem: sa_key.public_key_pem(),
        sa_key_pem: sa_key.serialize_pem(),
    })
}
