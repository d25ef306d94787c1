//! `wizard.toml`: validated, paths resolved relative to the file, secrets wrapped.
//! Vault settings fall back to the vault CLI's environment (VAULT_ADDR, VAULT_TOKEN,
//! ~/.vault-token, VAULT_CACERT, VAULT_NAMESPACE, VAULT_SKIP_VERIFY); kubeconfigs to
//! KUBECONFIG as kubectl does.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::vault::VaultSettings;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}:{line}: {reason}")]
    Invalid {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Semantic { path: String, reason: String },
}

fn default_kv_version() -> u8 {
    1
}

/// The file as written. Every table rejects unknown keys.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub vault: VaultSection,
    #[serde(default, rename = "cluster")]
    pub clusters: Vec<ClusterSection>,
    #[serde(default)]
    pub names: NameTemplates,
    #[serde(default)]
    pub certs: CertsSection,
    #[serde(default)]
    pub istio: IstioSection,
    /// Journal, lock and generated certificates (default `.istio-vault-wizard/` beside the file).
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSection {
    /// Else VAULT_ADDR.
    pub address: Option<String>,
    /// A file holding the token (relative to this file). Else VAULT_TOKEN, else ~/.vault-token.
    pub token_file: Option<PathBuf>,
    /// CA bundle for Vault's TLS. Else VAULT_CACERT.
    pub ca_cert: Option<PathBuf>,
    /// Enterprise namespace. Else VAULT_NAMESPACE.
    pub namespace: Option<String>,
    /// Disable TLS verification (else VAULT_SKIP_VERIFY). Never the default.
    pub skip_verify: Option<bool>,
    #[serde(default = "default_kv_version")]
    pub kv_version: u8,
}

impl Default for VaultSection {
    fn default() -> Self {
        Self {
            address: None,
            token_file: None,
            ca_cert: None,
            namespace: None,
            skip_verify: None,
            kv_version: 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    pub name: String,
    /// Relative to this file. Else KUBECONFIG / ~/.kube/config.
    pub kubeconfig: Option<PathBuf>,
    /// Else the kubeconfig's current context.
    pub context: Option<String>,
    /// Import this Istio cluster directory (ca-cert.pem, ca-key.pem, cert-chain.pem,
    /// root-cert.pem) instead of generating.
    pub certs_dir: Option<PathBuf>,
}

/// Names, with `{cluster}` replaced by the cluster's name. Defaults are the article's.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NameTemplates {
    pub namespace: String,
    pub service_account: String,
    pub token_secret: String,
    pub reviewer_binding: String,
    pub auth_path: String,
    pub kv_mount: String,
    pub secret_path: String,
    pub policy: String,
    pub role: String,
    pub token_ttl: String,
}

impl Default for NameTemplates {
    fn default() -> Self {
        Self {
            namespace: "istio-system".into(),
            service_account: "istiod".into(),
            token_secret: "istiod".into(),
            reviewer_binding: "role-tokenreview-binding".into(),
            auth_path: "kubernetes-{cluster}".into(),
            kv_mount: "kubernetes-{cluster}-secrets".into(),
            secret_path: "istiod-service/certs".into(),
            policy: "istiod-certs-{cluster}".into(),
            role: "istiod".into(),
            token_ttl: "24h".into(),
        }
    }
}

/// Key algorithm of generated CAs; the same names in wizard.toml and on the command line.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    /// RSA 4096 bits (Istio's default).
    #[default]
    Rsa4096,
    /// RSA 2048 bits.
    Rsa2048,
    /// ECDSA on P-256, signed with SHA-256.
    EcP256,
    /// ECDSA on P-384, signed with SHA-384.
    EcP384,
}

impl KeyType {
    /// The `--key-type` value naming this algorithm.
    pub fn flag(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CertsSection {
    pub key_type: KeyType,
    /// Reuse an existing root (root-cert.pem + root-key.pem) for generated intermediates.
    pub root_dir: Option<PathBuf>,
    pub root_days: u32,
    pub intermediate_days: u32,
}

impl Default for CertsSection {
    fn default() -> Self {
        Self {
            key_type: KeyType::Rsa4096,
            root_dir: None,
            root_days: 3650,
            intermediate_days: 730,
        }
    }
}

/// How istiod and the injector are wired (the `wire` steps).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IstioSection {
    /// Istio version of the charts, for the values layout (<= 1.23 legacy `pilot.*`).
    pub version: String,
    /// istiod revision: its ServiceAccount is then `istiod-<revision>`, bound by the role.
    pub revision: Option<String>,
    /// How istiod gets the values: `patch` an existing Deployment, install with `helm`,
    /// or `auto` (patch when a Deployment exists, helm otherwise).
    pub mode: WireMode,
    /// The helm binary (a name on PATH or a path).
    pub helm: String,
    /// Chart of the Vault agent injector (a repo alias path or a local directory).
    pub injector_chart: String,
    pub injector_release: String,
    pub injector_namespace: String,
    /// Istio charts (a repo alias path or a local directory).
    pub base_chart: String,
    pub istiod_chart: String,
    /// How long `verify` waits for the istiod rollout and its log lines.
    pub verify_timeout_secs: u64,
    /// Gateway Deployments (in the istio namespace) that get their TLS files from Vault.
    pub gateways: Vec<String>,
    /// Where each gateway's `tls_crt`, `tls_key` and `ca_crt` live in the cluster's KV
    /// mount (`{gateway}` and `{cluster}` are replaced).
    pub gateway_secret_path: String,
    /// The gateways' own role and policy: they must not be able to read istiod's CA key.
    pub gateway_role: String,
    pub gateway_policy: String,
}

impl Default for IstioSection {
    fn default() -> Self {
        Self {
            version: "1.24".into(),
            revision: None,
            mode: WireMode::Auto,
            helm: "helm".into(),
            injector_chart: "hashicorp/vault".into(),
            injector_release: "vault-inject".into(),
            injector_namespace: "vault".into(),
            base_chart: "istio/base".into(),
            istiod_chart: "istio/istiod".into(),
            verify_timeout_secs: 300,
            gateways: vec![],
            gateway_secret_path: "istio-gateways/{gateway}".into(),
            gateway_role: "istio-gateway".into(),
            gateway_policy: "istio-gateway-tls-{cluster}".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum WireMode {
    /// Patch when an istiod Deployment exists, install with helm otherwise.
    #[default]
    Auto,
    /// Server-side apply to the existing istiod Deployment.
    Patch,
    /// `helm upgrade --install` of istio-base and istio-istiod with the values.
    Helm,
}

/// Names for one cluster: the templates with `{cluster}` replaced.
pub type ClusterNames = NameTemplates;

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub name: String,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub certs_dir: Option<PathBuf>,
    pub names: ClusterNames,
    /// The ServiceAccount istiod runs as (`istiod-<revision>` with a revision): the role
    /// binds this one.
    pub istiod_service_account: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub path: Option<PathBuf>,
    pub vault: VaultSettings,
    pub kv_version: u8,
    pub clusters: Vec<ClusterConfig>,
    pub certs: CertsSection,
    pub istio: IstioSection,
    pub state_dir: PathBuf,
}

impl NameTemplates {
    pub fn resolve(&self, cluster: &str) -> ClusterNames {
        let r = |t: &str| t.replace("{cluster}", cluster);
        NameTemplates {
            namespace: r(&self.namespace),
            service_account: r(&self.service_account),
            token_secret: r(&self.token_secret),
            reviewer_binding: r(&self.reviewer_binding),
            auth_path: r(&self.auth_path),
            kv_mount: r(&self.kv_mount),
            secret_path: r(&self.secret_path),
            policy: r(&self.policy),
            role: r(&self.role),
            token_ttl: r(&self.token_ttl),
        }
    }
}

/// Line (1-based) of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    parse(&text, Some(path))
}

/// Parses and validates a config; `path` anchors relative paths (else the current dir).
pub fn parse(text: &str, path: Option<&Path>) -> Result<Config, ConfigError> {
    let shown = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "<config>".into());
    let file: ConfigFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
        ConfigError::Invalid {
            path: shown.clone(),
            line,
            reason: e.message().to_string(),
        }
    })?;
    let base = path
        .and_then(|p| p.parent())
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or_else(|| Path::new("."))
        .to_path_buf();
    resolve(file, &base, path, &shown, text)
}

fn find_line(text: &str, needle: &str) -> usize {
    text.find(needle).map(|o| line_of(text, o)).unwrap_or(0)
}

fn resolve(
    file: ConfigFile,
    base: &Path,
    path: Option<&Path>,
    shown: &str,
    text: &str,
) -> Result<Config, ConfigError> {
    let invalid = |needle: &str, reason: String| ConfigError::Invalid {
        path: shown.to_string(),
        line: find_line(text, needle),
        reason,
    };
    let rel = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };

    if !matches!(file.vault.kv_version, 1 | 2) {
        return Err(invalid(
            "kv_version",
            format!("kv_version must be 1 or 2, not {}", file.vault.kv_version),
        ));
    }
    if let Some(r) = &file.istio.revision
        && !r.is_empty()
        && !valid_name(r)
    {
        return Err(invalid(
            "revision",
            format!("revision {r:?} must be lowercase letters, digits and '-'"),
        ));
    }
    for g in &file.istio.gateways {
        if !valid_name(g) {
            return Err(invalid(
                g,
                format!("gateway {g:?} must be a Deployment name (lowercase letters, digits, '-')"),
            ));
        }
    }
    if file.istio.verify_timeout_secs == 0 {
        return Err(invalid(
            "verify_timeout_secs",
            "verify_timeout_secs must be at least 1".into(),
        ));
    }
    if file.clusters.is_empty() {
        return Err(ConfigError::Semantic {
            path: shown.into(),
            reason: "no [[cluster]] defined".into(),
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for c in &file.clusters {
        if !valid_name(&c.name) {
            return Err(invalid(
                &c.name,
                format!(
                    "cluster name {:?} must be lowercase letters, digits and '-'",
                    c.name
                ),
            ));
        }
        if !seen.insert(c.name.clone()) {
            return Err(invalid(
                &c.name,
                format!("cluster {:?} is defined twice", c.name),
            ));
        }
    }
    let address = file
        .vault
        .address
        .clone()
        .or_else(|| std::env::var("VAULT_ADDR").ok())
        .ok_or_else(|| ConfigError::Semantic {
            path: shown.into(),
            reason: "no Vault address: set [vault] address or VAULT_ADDR".into(),
        })?;
    match url::Url::parse(&address) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
        _ => {
            return Err(invalid(
                "address",
                format!("Vault address {address:?} is not an http(s) URL"),
            ));
        }
    }
    let (token, token_source) = match &file.vault.token_file {
        Some(f) => {
            let p = rel(f);
            let t = std::fs::read_to_string(&p)
                .map_err(|e| invalid("token_file", format!("token_file {}: {e}", p.display())))?;
            (Secret::new(t.trim()), p.display().to_string())
        }
        None => {
            crate::vault::token_from_env().unwrap_or_else(|| (Secret::default(), "none".into()))
        }
    };
    let vault = VaultSettings {
        address,
        token,
        token_source,
        ca_cert: file
            .vault
            .ca_cert
            .as_deref()
            .map(rel)
            .or_else(|| std::env::var_os("VAULT_CACERT").map(PathBuf::from)),
        namespace: file.vault.namespace.clone().or_else(|| {
            std::env::var("VAULT_NAMESPACE")
                .ok()
                .filter(|s| !s.is_empty())
        }),
        skip_verify: file
            .vault
            .skip_verify
            .unwrap_or_else(|| crate::vault::env_truthy("VAULT_SKIP_VERIFY")),
    };
    let clusters = file
        .clusters
        .iter()
        .map(|c| ClusterConfig {
            name: c.name.clone(),
            kubeconfig: c.kubeconfig.as_deref().map(rel),
            context: c.context.clone(),
            certs_dir: c.certs_dir.as_deref().map(rel),
            names: file.names.resolve(&c.name),
            istiod_service_account: match file.istio.revision.as_deref() {
                Some(r) if !r.trim().is_empty() && r.trim() != "default" => {
                    crate::istio::istiod_service_account(Some(r))
                }
                _ => file.names.resolve(&c.name).service_account,
            },
        })
        .collect();
    let mut certs = file.certs.clone();
    certs.root_dir = certs.root_dir.as_deref().map(rel);
    let state_dir = file
        .state_dir
        .as_deref()
        .map(rel)
        .unwrap_or_else(|| base.join(".istio-vault-wizard"));
    Ok(Config {
        path: path.map(Path::to_path_buf),
        vault,
        kv_version: file.vault.kv_version,
        clusters,
        certs,
        istio: file.istio.clone(),
        state_dir,
    })
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_reproduce_the_article() {
        let c = parse(
            "[vault]\naddress = \"http://127.0.0.1:8200\"\n[[cluster]]\nname = \"cluster1\"\n[[cluster]]\nname = \"cluster2\"\n",
            None,
        )
        .expect("valid");
        let n = &c.clusters[0].names;
        assert_eq!(n.auth_path, "kubernetes-cluster1");
        assert_eq!(n.kv_mount, "kubernetes-cluster1-secrets");
        assert_eq!(n.secret_path, "istiod-service/certs");
        assert_eq!(n.policy, "istiod-certs-cluster1");
        assert_eq!(n.role, "istiod");
        assert_eq!(n.token_ttl, "24h");
        assert_eq!(c.kv_version, 1);
        assert_eq!(c.clusters[1].names.policy, "istiod-certs-cluster2");
    }

    #[test]
    fn key_type_names_agree_between_toml_and_command_line() {
        for (k, name) in [
            (KeyType::Rsa4096, "rsa4096"),
            (KeyType::Rsa2048, "rsa2048"),
            (KeyType::EcP256, "ec-p256"),
            (KeyType::EcP384, "ec-p384"),
        ] {
            assert_eq!(k.flag(), name);
            assert_eq!(
                serde_json::to_value(k).expect("json"),
                serde_json::json!(name)
            );
        }
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let err = parse(
            "[vault]\naddress = \"http://x:1\"\nkv_versoin = 2\n",
            Some(Path::new("w.toml")),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("w.toml:3:"), "{text}");
        assert!(text.contains("kv_versoin"), "{text}");
    }

    #[test]
    fn bad_values_are_rejected() {
        let e = parse(
            "[vault]\naddress = \"http://x:1\"\nkv_version = 3\n[[cluster]]\nname=\"a\"\n",
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains(":3:"), "{e}");
        let e = parse(
            "[vault]\naddress = \"not a url\"\n[[cluster]]\nname=\"a\"\n",
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not an http(s) URL"), "{e}");
        let e = parse("[vault\n", None).unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { line: 1, .. }), "{e}");
        let e = parse(
            "[vault]\naddress = \"http://x:1\"\n[[cluster]]\nname=\"Bad_Name\"\n",
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("Bad_Name"), "{e}");
    }
}
