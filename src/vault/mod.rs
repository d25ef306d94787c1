//! Vault / OpenBao access. Writes, logins and mounts go through vaultrs; reads whose
//! fields differ between Vault and OpenBao versions (role, auth config, policy) and the
//! endpoints vaultrs lacks (`sys/capabilities-self`, `sys/seal-status`, KV v2 `cas`) go
//! through one raw JSON client that honours the same address, CA, namespace and token.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("invalid Vault address {0:?}: expected http(s)://host:port")]
    BadAddress(String),
    #[error("cannot read Vault CA file {path}: {reason}")]
    BadCa { path: String, reason: String },
    #[error(
        "no Vault token: set VAULT_TOKEN, write ~/.vault-token, or set token_file in the config"
    )]
    NoToken,
    #[error("cannot reach Vault at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error(
        "Vault at {0} is sealed: unseal it first (`bao operator unseal` / `vault operator unseal`)"
    )]
    Sealed(String),
    #[error("Vault at {0} is not initialised")]
    NotInitialised(String),
    #[error("{action}: Vault answered {status}: {message}")]
    Api {
        action: String,
        status: u16,
        message: String,
    },
    #[error("{action}: {reason}")]
    Other { action: String, reason: String },
}

impl VaultError {
    pub fn status(&self) -> Option<u16> {
        match self {
            VaultError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
    pub fn is_permission_denied(&self) -> bool {
        self.status() == Some(403)
    }

    fn from_client(action: impl Into<String>, err: ClientError) -> Self {
        let action = action.into();
        match err {
            ClientError::APIError { code, errors } => VaultError::Api {
                action,
                status: code,
                message: errors.join("; "),
            },
            other => VaultError::Other {
                action,
                reason: crate::kube::error_chain(&other),
            },
        }
    }
}

/// How to reach Vault, resolved from the config and the vault CLI's environment.
#[derive(Debug, Clone)]
pub struct VaultSettings {
    pub address: String,
    pub token: Secret,
    /// Where the token came from, for status lines ("VAULT_TOKEN", "~/.vault-token", a file).
    pub token_source: String,
    pub ca_cert: Option<PathBuf>,
    pub namespace: Option<String>,
    pub skip_verify: bool,
}

impl VaultSettings {
    /// VAULT_ADDR, VAULT_TOKEN then ~/.vault-token, VAULT_CACERT, VAULT_NAMESPACE,
    /// VAULT_SKIP_VERIFY, as the vault CLI reads them.
    pub fn from_env() -> Result<Self, VaultError> {
        let address =
            std::env::var("VAULT_ADDR").unwrap_or_else(|_| "https://127.0.0.1:8200".into());
        let (token, token_source) = token_from_env().ok_or(VaultError::NoToken)?;
        Ok(Self {
            address,
            token,
            token_source,
            ca_cert: std::env::var_os("VAULT_CACERT").map(PathBuf::from),
            namespace: std::env::var("VAULT_NAMESPACE")
                .ok()
                .filter(|s| !s.is_empty()),
            skip_verify: env_truthy("VAULT_SKIP_VERIFY"),
        })
    }
}

pub fn env_truthy(name: &str) -> bool {
    std::env::var(name)
        .map(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes"))
        .unwrap_or(false)
}

/// VAULT_TOKEN, else ~/.vault-token.
pub fn token_from_env() -> Option<(Secret, String)> {
    if let Ok(t) = std::env::var("VAULT_TOKEN")
        && !t.trim().is_empty()
    {
        return Some((Secret::new(t.trim()), "VAULT_TOKEN".into()));
    }
    let home = std::env::var_os("HOME")?;
    let path = Path::new(&home).join(".vault-token");
    let t = std::fs::read_to_string(path).ok()?;
    (!t.trim().is_empty()).then(|| (Secret::new(t.trim()), "~/.vault-token".into()))
}

/// A connected Vault: one vaultrs client and one raw client sharing settings.
#[derive(Clone)]
pub struct VaultTarget {
    pub settings: VaultSettings,
    client: std::sync::Arc<VaultClient>,
    http: reqwest::Client,
    base: url::Url,
}

impl std::fmt::Debug for VaultTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultTarget")
            .field("address", &self.settings.address)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SealStatus {
    pub initialized: bool,
    pub sealed: bool,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TokenInfo {
    pub display_name: String,
    pub policies: Vec<String>,
    pub ttl: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Mount {
    /// Without the trailing slash.
    pub path: String,
    pub kind: String,
    pub accessor: String,
    pub description: String,
    pub options: BTreeMap<String, String>,
}

impl Mount {
    /// KV version from the mount options (`version`), 1 when absent.
    pub fn kv_version(&self) -> u8 {
        match self.options.get("version").map(String::as_str) {
            Some("2") => 2,
            _ => 1,
        }
    }
}

/// A successful Kubernetes login: the client token and its policies.
#[derive(Debug, Clone)]
pub struct Login {
    pub token: Secret,
    pub policies: Vec<String>,
    pub token_policies: Vec<String>,
    pub ttl: u64,
}

/// The fields of a KV secret, plus the version for KV v2.
#[derive(Debug, Clone, PartialEq)]
pub struct KvSecret {
    pub data: BTreeMap<String, String>,
    pub version: Option<u64>,
}

impl VaultTarget {
    pub fn connect(settings: VaultSettings) -> Result<Self, VaultError> {
        let base = url::Url::parse(&settings.address)
            .map_err(|_| VaultError::BadAddress(settings.address.clone()))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(VaultError::BadAddress(settings.address.clone()));
        }
        let mut builder = VaultClientSettingsBuilder::default();
        builder
            .address(settings.address.as_str())
            .token(settings.token.expose())
            .verify(!settings.skip_verify)
            .timeout(Some(Duration::from_secs(15)));
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .no_proxy();
        if let Some(ca) = &settings.ca_cert {
            let pem = std::fs::read(ca).map_err(|e| VaultError::BadCa {
                path: ca.display().to_string(),
                reason: e.to_string(),
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| VaultError::BadCa {
                path: ca.display().to_string(),
                reason: e.to_string(),
            })?;
            http = http.add_root_certificate(cert);
            builder.ca_certs(vec![ca.display().to_string()]);
        }
        if settings.skip_verify {
            http = http.danger_accept_invalid_certs(true);
        }
        if let Some(ns) = &settings.namespace {
            builder.namespace(Some(ns.clone()));
        }
        let vs = builder.build().map_err(|e| VaultError::Other {
            action: "vault client settings".into(),
            reason: e.to_string(),
        })?;
        let client = VaultClient::new(vs).map_err(|e| VaultError::Other {
            action: "vault client".into(),
            reason: crate::kube::error_chain(&e),
        })?;
        let http = http.build().map_err(|e| VaultError::Other {
            action: "http client".into(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            settings,
            client: std::sync::Arc::new(client),
            http,
            base,
        })
    }

    pub fn address(&self) -> &str {
        &self.settings.address
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/v1/{}",
            self.base.as_str().trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&Secret>,
    ) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, self.url(path));
        let token = token.unwrap_or(&self.settings.token);
        if !token.is_empty() {
            req = req.header("X-Vault-Token", token.expose());
        }
        if let Some(ns) = &self.settings.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        req
    }

    /// One raw call; returns the JSON body (Null for 204). Vault's own error text is kept.
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&Secret>,
        action: &str,
    ) -> Result<Value, VaultError> {
        let mut req = self.request(method, path, token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| VaultError::Unreachable {
            addr: self.settings.address.clone(),
            reason: crate::kube::error_chain(&e),
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let json: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        if status >= 400 {
            let message = json["errors"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| text.chars().take(300).collect());
            let message = if message.is_empty() && status == 404 {
                "not found".to_string()
            } else {
                message
            };
            return Err(VaultError::Api {
                action: action.to_string(),
                status,
                message,
            });
        }
        Ok(json)
    }

    /// `sys/seal-status` (unauthenticated): proves reachability and tells sealed/version.
    pub async fn seal_status(&self) -> Result<SealStatus, VaultError> {
        let v = self
            .raw(
                reqwest::Method::GET,
                "sys/seal-status",
                None,
                Some(&Secret::default()),
                "read seal status",
            )
            .await?;
        Ok(SealStatus {
            initialized: v["initialized"].as_bool().unwrap_or(false),
            sealed: v["sealed"].as_bool().unwrap_or(true),
            version: v["version"].as_str().unwrap_or("").to_string(),
        })
    }

    /// Fails with a specific error when Vault is unreachable, uninitialised or sealed, or
    /// when the token is not valid.
    pub async fn ensure_usable(&self) -> Result<TokenInfo, VaultError> {
        let s = self.seal_status().await?;
        if !s.initialized {
            return Err(VaultError::NotInitialised(self.settings.address.clone()));
        }
        if s.sealed {
            return Err(VaultError::Sealed(self.settings.address.clone()));
        }
        self.lookup_self().await
    }

    pub async fn lookup_self(&self) -> Result<TokenInfo, VaultError> {
        let v = self
            .raw(
                reqwest::Method::GET,
                "auth/token/lookup-self",
                None,
                None,
                "look up the Vault token",
            )
            .await?;
        let d = &v["data"];
        Ok(TokenInfo {
            display_name: d["display_name"].as_str().unwrap_or("").to_string(),
            policies: string_list(&d["policies"]),
            ttl: d["ttl"].as_u64().unwrap_or(0),
        })
    }

    pub async fn list_auth_mounts(&self) -> Result<Vec<Mount>, VaultError> {
        let map = vaultrs::sys::auth::list(&*self.client)
            .await
            .map_err(|e| VaultError::from_client("list auth methods", e))?;
        let mut mounts: Vec<Mount> = map
            .into_iter()
            .map(|(path, m)| Mount {
                path: path.trim_end_matches('/').to_string(),
                kind: m.mount_type,
                accessor: m.accessor,
                description: m.description,
                options: m.options.unwrap_or_default().into_iter().collect(),
            })
            .collect();
        mounts.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(mounts)
    }

    pub async fn list_secret_mounts(&self) -> Result<Vec<Mount>, VaultError> {
        // Raw: vaultrs' typed struct rejects fields newer servers add or omit.
        let v = self
            .raw(
                reqwest::Method::GET,
                "sys/mounts",
                None,
                None,
                "list secret engines",
            )
            .await?;
        let obj = v["data"]
            .as_object()
            .or_else(|| v.as_object())
            .cloned()
            .unwrap_or_default();
        let mut mounts: Vec<Mount> = obj
            .into_iter()
            .filter(|(_, m)| m.get("type").is_some())
            .map(|(path, m)| Mount {
                path: path.trim_end_matches('/').to_string(),
                kind: m["type"].as_str().unwrap_or("").to_string(),
                accessor: m["accessor"].as_str().unwrap_or("").to_string(),
                description: m["description"].as_str().unwrap_or("").to_string(),
                options: m["options"]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        mounts.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(mounts)
    }

    pub async fn auth_mount(&self, path: &str) -> Result<Option<Mount>, VaultError> {
        Ok(self
            .list_auth_mounts()
            .await?
            .into_iter()
            .find(|m| m.path == path))
    }

    pub async fn secret_mount(&self, path: &str) -> Result<Option<Mount>, VaultError> {
        Ok(self
            .list_secret_mounts()
            .await?
            .into_iter()
            .find(|m| m.path == path))
    }

    pub async fn enable_auth(&self, path: &str, kind: &str) -> Result<(), VaultError> {
        vaultrs::sys::auth::enable(&*self.client, path, kind, None)
            .await
            .map_err(|e| VaultError::from_client(format!("enable {kind} auth at auth/{path}"), e))
    }

    pub async fn disable_auth(&self, path: &str) -> Result<(), VaultError> {
        vaultrs::sys::auth::disable(&*self.client, path)
            .await
            .map_err(|e| VaultError::from_client(format!("disable auth/{path}"), e))
    }

    pub async fn enable_kv(&self, path: &str, version: u8) -> Result<(), VaultError> {
        let body = serde_json::json!({"type": "kv", "options": {"version": version.to_string()}});
        self.raw(
            reqwest::Method::POST,
            &format!("sys/mounts/{path}"),
            Some(&body),
            None,
            &format!("enable kv v{version} at {path}"),
        )
        .await
        .map(|_| ())
    }

    pub async fn disable_mount(&self, path: &str) -> Result<(), VaultError> {
        vaultrs::sys::mount::disable(&*self.client, path)
            .await
            .map_err(|e| VaultError::from_client(format!("disable secrets engine {path}"), e))
    }

    /// `auth/<mount>/config` as returned by the server (no reviewer JWT is ever returned).
    pub async fn read_kubernetes_config(&self, mount: &str) -> Result<Option<Value>, VaultError> {
        match self
            .raw(
                reqwest::Method::GET,
                &format!("auth/{mount}/config"),
                None,
                None,
                &format!("read auth/{mount}/config"),
            )
            .await
        {
            Ok(v) => Ok(Some(v["data"].clone())),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn write_kubernetes_config(
        &self,
        mount: &str,
        host: &str,
        ca_pem: &str,
        reviewer_jwt: &Secret,
    ) -> Result<(), VaultError> {
        let body = serde_json::json!({
            "kubernetes_host": host,
            "kubernetes_ca_cert": ca_pem,
            "token_reviewer_jwt": reviewer_jwt.expose(),
            "disable_local_ca_jwt": true,
        });
        self.raw(
            reqwest::Method::POST,
            &format!("auth/{mount}/config"),
            Some(&body),
            None,
            &format!("write auth/{mount}/config"),
        )
        .await
        .map(|_| ())
    }

    pub async fn read_role(&self, mount: &str, role: &str) -> Result<Option<Value>, VaultError> {
        let path = format!("auth/{mount}/role/{role}");
        match self
            .raw(
                reqwest::Method::GET,
                &path,
                None,
                None,
                &format!("read {path}"),
            )
            .await
        {
            Ok(v) => Ok(Some(v["data"].clone())),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn write_role(
        &self,
        mount: &str,
        role: &str,
        body: &Value,
    ) -> Result<(), VaultError> {
        let path = format!("auth/{mount}/role/{role}");
        self.raw(
            reqwest::Method::POST,
            &path,
            Some(body),
            None,
            &format!("write {path}"),
        )
        .await
        .map(|_| ())
    }

    pub async fn delete_role(&self, mount: &str, role: &str) -> Result<(), VaultError> {
        vaultrs::auth::kubernetes::role::delete(&*self.client, mount, role)
            .await
            .map_err(|e| VaultError::from_client(format!("delete auth/{mount}/role/{role}"), e))
    }

    pub async fn list_roles(&self, mount: &str) -> Result<Vec<String>, VaultError> {
        match vaultrs::auth::kubernetes::role::list(&*self.client, mount).await {
            Ok(r) => Ok(r.keys),
            Err(ClientError::APIError { code: 404, .. }) => Ok(Vec::new()),
            Err(e) => Err(VaultError::from_client(
                format!("list auth/{mount}/role"),
                e,
            )),
        }
    }

    /// `POST auth/<mount>/login` with a ServiceAccount JWT: the call istiod's agent makes.
    pub async fn kubernetes_login(
        &self,
        mount: &str,
        role: &str,
        jwt: &Secret,
    ) -> Result<Login, VaultError> {
        let info = vaultrs::auth::kubernetes::login(&*self.client, mount, role, jwt.expose())
            .await
            .map_err(|e| {
                VaultError::from_client(format!("login at auth/{mount} with role {role}"), e)
            })?;
        Ok(Login {
            token: Secret::new(info.client_token),
            policies: info.policies,
            token_policies: info.token_policies,
            ttl: info.lease_duration,
        })
    }

    pub async fn read_policy(&self, name: &str) -> Result<Option<String>, VaultError> {
        match self
            .raw(
                reqwest::Method::GET,
                &format!("sys/policy/{name}"),
                None,
                None,
                &format!("read policy {name}"),
            )
            .await
        {
            Ok(v) => Ok(v["rules"]
                .as_str()
                .or_else(|| v["data"]["rules"].as_str())
                .map(str::to_string)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn list_policies(&self) -> Result<Vec<String>, VaultError> {
        let v = self
            .raw(
                reqwest::Method::GET,
                "sys/policy",
                None,
                None,
                "list policies",
            )
            .await?;
        Ok(string_list(&v["policies"]))
    }

    pub async fn write_policy(&self, name: &str, rules: &str) -> Result<(), VaultError> {
        vaultrs::sys::policy::set(&*self.client, name, rules)
            .await
            .map_err(|e| VaultError::from_client(format!("write policy {name}"), e))
    }

    pub async fn delete_policy(&self, name: &str) -> Result<(), VaultError> {
        vaultrs::sys::policy::delete(&*self.client, name)
            .await
            .map_err(|e| VaultError::from_client(format!("delete policy {name}"), e))
    }

    /// Reads a KV secret. `token` None uses the operator's token.
    pub async fn kv_read(
        &self,
        mount: &str,
        path: &str,
        version: u8,
        token: Option<&Secret>,
    ) -> Result<Option<KvSecret>, VaultError> {
        let full = kv_api_path(mount, path, version);
        match self
            .raw(
                reqwest::Method::GET,
                &full,
                None,
                token,
                &format!("read {full}"),
            )
            .await
        {
            Ok(v) => {
                let (data, ver) = if version == 2 {
                    // A deleted latest version answers with data null.
                    if v["data"]["data"].is_null() {
                        return Ok(None);
                    }
                    (
                        &v["data"]["data"],
                        v["data"]["metadata"]["version"].as_u64(),
                    )
                } else {
                    (&v["data"], None)
                };
                let data = data
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| {
                                (
                                    k.clone(),
                                    v.as_str()
                                        .map(str::to_string)
                                        .unwrap_or_else(|| v.to_string()),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(Some(KvSecret { data, version: ver }))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a KV secret. For v2, `cas` makes the write conditional on the current version
    /// (0 = must not exist). Returns the new v2 version.
    pub async fn kv_write(
        &self,
        mount: &str,
        path: &str,
        version: u8,
        data: &BTreeMap<String, String>,
        cas: Option<u64>,
    ) -> Result<Option<u64>, VaultError> {
        let full = kv_api_path(mount, path, version);
        let body = if version == 2 {
            let mut b = serde_json::json!({ "data": data });
            if let Some(cas) = cas {
                b["options"] = serde_json::json!({ "cas": cas });
            }
            b
        } else {
            serde_json::to_value(data).unwrap_or(Value::Null)
        };
        let v = self
            .raw(
                reqwest::Method::POST,
                &full,
                Some(&body),
                None,
                &format!("write {full}"),
            )
            .await?;
        Ok(v["data"]["version"].as_u64())
    }

    /// KV v1: delete the secret. KV v2: delete all versions and metadata.
    pub async fn kv_delete(&self, mount: &str, path: &str, version: u8) -> Result<(), VaultError> {
        let full = if version == 2 {
            format!("{mount}/metadata/{path}")
        } else {
            format!("{mount}/{path}")
        };
        match self
            .raw(
                reqwest::Method::DELETE,
                &full,
                None,
                None,
                &format!("delete {full}"),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// KV v2: one version's data (for restoring a previous version on rollback).
    pub async fn kv2_read_version(
        &self,
        mount: &str,
        path: &str,
        ver: u64,
    ) -> Result<Option<BTreeMap<String, String>>, VaultError> {
        let full = format!("{mount}/data/{path}?version={ver}");
        match self
            .raw(
                reqwest::Method::GET,
                &full,
                None,
                None,
                &format!("read {full}"),
            )
            .await
        {
            Ok(v) => Ok(v["data"]["data"].as_object().map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `sys/capabilities-self` of `token` on `path`.
    pub async fn capabilities_self(
        &self,
        token: &Secret,
        path: &str,
    ) -> Result<Vec<String>, VaultError> {
        let body = serde_json::json!({ "paths": [path] });
        let v = self
            .raw(
                reqwest::Method::POST,
                "sys/capabilities-self",
                Some(&body),
                Some(token),
                &format!("capabilities on {path}"),
            )
            .await?;
        let caps = if v[path].is_array() {
            &v[path]
        } else {
            &v["capabilities"]
        };
        Ok(string_list(caps))
    }
}

/// The HTTP API path of a KV secret: `/data/` after the mount for v2.
pub fn kv_api_path(mount: &str, path: &str, version: u8) -> String {
    if version == 2 {
        format!("{mount}/data/{path}")
    } else {
        format!("{mount}/{path}")
    }
}

/// A Vault list field, whether the server answers with an array or a comma string.
pub fn string_list(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Value::String(s) => s
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect(),
        _ => vec![],
    }
}
