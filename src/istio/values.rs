//! How istiod is told to take its CA from Vault: the Vault agent injector annotations on
//! the istiod pod template, `ROOT_CA_DIR`, the Helm values that carry them, and the checks
//! that compare a live pod template (or a values file) with what Vault needs.
//!
//! Facts this module relies on (checked against the upstream sources):
//! - istiod chart up to Istio 1.23 reads `pilot.env` / `pilot.podAnnotations`; from 1.24 the
//!   values are flat (`env`, `podAnnotations`). 1.24+ still merges a `pilot:` block into the
//!   top level (`zzy_descope_legacy.yaml`), but a flat file given to a <= 1.23 chart is
//!   silently ignored, so the layout must follow the chart version.
//! - The chart names istiod's ServiceAccount `istiod`, or `istiod-<revision>` when
//!   `revision` is set; the Vault role must be bound to that name.
//! - vault-k8s reads `agent-inject`, `agent-init-first`, `role`, `auth-path` (default
//!   `auth/kubernetes`), and per secret `<name>`: `agent-inject-secret-<name>`,
//!   `agent-inject-template-<name>`, `agent-inject-file-<name>` (renames the file),
//!   `agent-inject-perms-<name>`, `error-on-missing-key-<name>`; files land in
//!   `secret-volume-path` (default `/vault/secrets`). Names are lower-cased unless
//!   `preserve-secret-case` is set. Booleans are Go `strconv.ParseBool` values.
//! - istiod reads `ca-key.pem`, `ca-cert.pem`, `root-cert.pem`, `cert-chain.pem` from
//!   `ROOT_CA_DIR` (default `./etc/cacerts`).

use std::collections::BTreeMap;

use serde_yaml::{Mapping, Value};

use super::IstioError;
use crate::config::{ClusterConfig, Config};
use crate::vault::kv_api_path;

const TEMPLATE_KV1: &str = include_str!("../../assets/istio/template.kv1.tmpl");
const TEMPLATE_KV2: &str = include_str!("../../assets/istio/template.kv2.tmpl");

/// Annotations or env, by name.
pub type StringMap = BTreeMap<String, String>;

pub const ANNOTATION_PREFIX: &str = "vault.hashicorp.com/";

/// Where the injector writes rendered secrets unless `secret-volume-path` says otherwise.
pub const DEFAULT_SECRET_DIR: &str = "/vault/secrets";

/// istiod's own default for `ROOT_CA_DIR` (the mounted `cacerts` Secret).
pub const ISTIOD_DEFAULT_CA_DIR: &str = "./etc/cacerts";

/// Rendered file mode: 0644. The injected agent runs as uid 100 / gid 1000 (injector
/// defaults) while istiod's `discovery` container runs as uid/gid 1337, so group bits do
/// not help and the files must be world-readable for istiod to open `ca-key.pem`. The
/// volume is a memory-backed emptyDir mounted only into this pod's containers. With 0600
/// istiod fails with a *filesystem* "permission denied", easily mistaken for Vault's.
pub const DEFAULT_FILE_PERMS: &str = "0644";

/// The four files istiod reads, and the KV field each comes from.
pub const FILES: [(&str, &str); 4] = [
    ("ca-key.pem", "ca_key"),
    ("ca-cert.pem", "ca_cert"),
    ("root-cert.pem", "root_cert"),
    ("cert-chain.pem", "cert_chain"),
];

/// What istiod's pod must carry for one cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct IstiodWiring {
    pub cluster: String,
    /// Mount path without `auth/`, e.g. `kubernetes-cluster1`.
    pub auth_path: String,
    pub role: String,
    /// API path of the secret (with `/data/` after the mount for KV v2), e.g.
    /// `kubernetes-cluster1-secrets/istiod-service/certs`.
    pub secret_path: String,
    pub kv_version: u8,
    /// Default `/vault/secrets`.
    pub root_ca_dir: String,
    pub error_on_missing_key: bool,
    /// `agent-inject-perms-<file>`; `None` leaves the agent's default (0644). See
    /// [`DEFAULT_FILE_PERMS`] for why it must stay world-readable.
    pub file_perms: Option<String>,
}

impl IstiodWiring {
    /// The article's defaults for one cluster (`cluster1` → `auth/kubernetes-cluster1`,
    /// role `istiod`, `kubernetes-cluster1-secrets/istiod-service/certs`).
    pub fn article_defaults(cluster: &str, kv_version: u8) -> IstiodWiring {
        IstiodWiring {
            cluster: cluster.to_string(),
            auth_path: format!("kubernetes-{cluster}"),
            role: "istiod".into(),
            secret_path: kv_api_path(
                &format!("kubernetes-{cluster}-secrets"),
                "istiod-service/certs",
                kv_version,
            ),
            kv_version,
            root_ca_dir: DEFAULT_SECRET_DIR.into(),
            error_on_missing_key: true,
            file_perms: Some(DEFAULT_FILE_PERMS.into()),
        }
    }
}

/// Chart value layout: up to Istio 1.23 `pilot.env`/`pilot.podAnnotations`, then flat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartStyle {
    Legacy,
    Flat,
}

impl ChartStyle {
    /// From an Istio version such as `1.23.2`, `v1.24.0` or `1.22-alpha.1`; anything
    /// unparseable → Flat (the current charts).
    pub fn for_version(version: &str) -> ChartStyle {
        let v = version.trim().trim_start_matches(['v', 'V']);
        let num = |s: Option<&str>| -> Option<u32> {
            let s = s?;
            let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        let mut it = v.split('.');
        match (num(it.next()), num(it.next())) {
            (Some(0), Some(_)) => ChartStyle::Legacy,
            (Some(1), Some(minor)) if minor <= 23 => ChartStyle::Legacy,
            _ => ChartStyle::Flat,
        }
    }
}

/// istiod's ServiceAccount as the chart names it: `istiod`, or `istiod-<rev>`.
pub fn istiod_service_account(revision: Option<&str>) -> String {
    match revision.map(str::trim) {
        Some(r) if !r.is_empty() && r != "default" => format!("istiod-{r}"),
        _ => "istiod".into(),
    }
}

pub fn wiring_for(cluster: &ClusterConfig, kv_version: u8) -> IstiodWiring {
    let n = &cluster.names;
    IstiodWiring {
        cluster: cluster.name.clone(),
        auth_path: n.auth_path.clone(),
        role: n.role.clone(),
        secret_path: kv_api_path(&n.kv_mount, &n.secret_path, kv_version),
        kv_version,
        root_ca_dir: DEFAULT_SECRET_DIR.into(),
        error_on_missing_key: true,
        file_perms: Some(DEFAULT_FILE_PERMS.into()),
    }
}

/// The injector template for one file (from `assets/istio/template.kv{1,2}.tmpl`).
pub fn template(w: &IstiodWiring, key: &str) -> String {
    template_for(w.kv_version, &w.secret_path, key)
}

fn template_for(kv_version: u8, secret_path: &str, key: &str) -> String {
    let t = if kv_version == 2 {
        TEMPLATE_KV2
    } else {
        TEMPLATE_KV1
    };
    t.replace("%PATH%", secret_path).replace("%KEY%", key)
}

/// What one injected pod reads from Vault: the login, and one file per KV field.
struct Injection<'a> {
    auth_path: &'a str,
    role: &'a str,
    secret_path: &'a str,
    kv_version: u8,
    files: &'a [(&'a str, &'a str)],
    perms: Option<&'a str>,
    error_on_missing_key: bool,
    /// istiod needs its CA before it starts; a gateway only needs the agent sidecar.
    init_first: bool,
    secret_dir: &'a str,
}

fn injection_annotations(i: &Injection) -> BTreeMap<String, String> {
    let a = |k: &str| format!("{ANNOTATION_PREFIX}{k}");
    let mut m = BTreeMap::new();
    m.insert(a("agent-inject"), "true".to_string());
    if i.init_first {
        m.insert(a("agent-init-first"), "true".to_string());
    }
    m.insert(a("role"), i.role.to_string());
    m.insert(a("auth-path"), format!("auth/{}", i.auth_path));
    if i.secret_dir.trim_end_matches('/') != DEFAULT_SECRET_DIR {
        m.insert(a("secret-volume-path"), i.secret_dir.to_string());
    }
    for (file, key) in i.files {
        m.insert(
            a(&format!("agent-inject-secret-{file}")),
            i.secret_path.to_string(),
        );
        m.insert(
            a(&format!("agent-inject-template-{file}")),
            template_for(i.kv_version, i.secret_path, key),
        );
        if let Some(p) = i.perms {
            m.insert(a(&format!("agent-inject-perms-{file}")), p.to_string());
        }
        if i.error_on_missing_key {
            m.insert(
                a(&format!("error-on-missing-key-{file}")),
                "true".to_string(),
            );
        }
    }
    m
}

pub fn pod_annotations(w: &IstiodWiring) -> BTreeMap<String, String> {
    injection_annotations(&Injection {
        auth_path: &w.auth_path,
        role: &w.role,
        secret_path: &w.secret_path,
        kv_version: w.kv_version,
        files: &FILES,
        perms: w.file_perms.as_deref(),
        error_on_missing_key: w.error_on_missing_key,
        init_first: true,
        secret_dir: &w.root_ca_dir,
    })
}

/// The files an Istio gateway's `Gateway` points at, and the KV field each comes from.
pub const GATEWAY_FILES: [(&str, &str); 3] = [
    ("tls.crt", "tls_crt"),
    ("tls.key", "tls_key"),
    ("ca.crt", "ca_crt"),
];

/// What an ingress or egress gateway's pod must carry to get its TLS files from Vault.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayWiring {
    pub gateway: String,
    pub auth_path: String,
    pub role: String,
    /// API path of the gateway's secret (with `/data/` for KV v2).
    pub secret_path: String,
    pub kv_version: u8,
}

/// Injector annotations for a gateway: the agent sidecar keeps `tls.crt`, `tls.key` and
/// `ca.crt` current in `/vault/secrets` (0600 would do: the gateway's proxy and the agent
/// share no uid either, so 0644 as for istiod), a key typo fails loudly.
pub fn gateway_annotations(g: &GatewayWiring) -> BTreeMap<String, String> {
    injection_annotations(&Injection {
        auth_path: &g.auth_path,
        role: &g.role,
        secret_path: &g.secret_path,
        kv_version: g.kv_version,
        files: &GATEWAY_FILES,
        perms: Some(DEFAULT_FILE_PERMS),
        error_on_missing_key: true,
        init_first: false,
        secret_dir: DEFAULT_SECRET_DIR,
    })
}

fn to_yaml(v: &Value) -> String {
    serde_yaml::to_string(v).unwrap_or_default()
}

/// Helm values for the istiod chart: `env.ROOT_CA_DIR` and `podAnnotations`, nested under
/// `pilot:` for the Legacy layout. Deterministic (annotations sorted by name).
pub fn values_yaml(w: &IstiodWiring, style: ChartStyle) -> String {
    let mut body = Mapping::new();
    let mut env = Mapping::new();
    env.insert("ROOT_CA_DIR".into(), w.root_ca_dir.clone().into());
    body.insert("env".into(), env.into());
    let mut ann = Mapping::new();
    for (k, v) in pod_annotations(w) {
        ann.insert(k.into(), v.into());
    }
    body.insert("podAnnotations".into(), ann.into());
    let root = match style {
        ChartStyle::Legacy => {
            let mut root = Mapping::new();
            root.insert("pilot".into(), body.into());
            root
        }
        ChartStyle::Flat => body,
    };
    let header = format!(
        "# istiod values for {} (Istio {} chart layout), generated by istio-vault-wizard.\n# istiod reads its plugged-in CA from {} rendered by the Vault agent init container.\n",
        w.cluster,
        match style {
            ChartStyle::Legacy => "<= 1.23",
            ChartStyle::Flat => ">= 1.24",
        },
        w.root_ca_dir
    );
    format!("{header}{}", to_yaml(&Value::Mapping(root)))
}

/// The values file `export` and the istiod step write (layout of `[istio] version`).
pub fn values_for_cluster(config: &Config, cluster: &ClusterConfig) -> String {
    values_yaml(
        &wiring_for(cluster, config.kv_version),
        ChartStyle::for_version(&config.istio.version),
    )
}

/// Values for the `hashicorp/vault` chart in injector-only mode. `global.externalVaultAddr`
/// (chart >= 0.21, replacing the deprecated `injector.externalVaultAddr` the article uses)
/// points the injector at the external Vault and disables the in-cluster server.
pub fn injector_values(external_vault_addr: &str) -> String {
    let mut global = Mapping::new();
    global.insert("externalVaultAddr".into(), external_vault_addr.into());
    let mut injector = Mapping::new();
    injector.insert("enabled".into(), true.into());
    let mut root = Mapping::new();
    root.insert("global".into(), global.into());
    root.insert("injector".into(), injector.into());
    to_yaml(&Value::Mapping(root))
}

pub use crate::shell::quote as shell_quote;

/// An Istio Gateway terminating TLS with files the Vault agent renders into the gateway
/// pod (`<dir>/tls.crt`, `<dir>/tls.key`, and `<dir>/ca.crt` for mutual TLS).
pub fn gateway_snippet(
    name: &str,
    namespace: &str,
    hosts: &[&str],
    dir: &str,
    mutual: bool,
) -> String {
    let dir = dir.trim_end_matches('/');
    let map = |pairs: Vec<(&str, Value)>| -> Value {
        let mut m = Mapping::new();
        for (k, v) in pairs {
            m.insert(k.into(), v);
        }
        Value::Mapping(m)
    };
    let mut tls = vec![
        (
            "mode",
            Value::from(if mutual { "MUTUAL" } else { "SIMPLE" }),
        ),
        ("serverCertificate", format!("{dir}/tls.crt").into()),
        ("privateKey", format!("{dir}/tls.key").into()),
    ];
    if mutual {
        tls.push(("caCertificates", format!("{dir}/ca.crt").into()));
    }
    let server = map(vec![
        (
            "port",
            map(vec![
                ("number", 443.into()),
                ("name", "https".into()),
                ("protocol", "HTTPS".into()),
            ]),
        ),
        (
            "hosts",
            Value::Sequence(hosts.iter().map(|h| Value::from(*h)).collect()),
        ),
        ("tls", map(tls)),
    ]);
    let doc = map(vec![
        ("apiVersion", "networking.istio.io/v1beta1".into()),
        ("kind", "Gateway".into()),
        (
            "metadata",
            map(vec![("name", name.into()), ("namespace", namespace.into())]),
        ),
        (
            "spec",
            map(vec![
                ("selector", map(vec![("istio", "ingressgateway".into())])),
                ("servers", Value::Sequence(vec![server])),
            ]),
        ),
    ]);
    to_yaml(&doc)
}

fn yaml_scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

fn string_map(v: Option<&Value>) -> StringMap {
    v.and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((yaml_scalar(k)?, yaml_scalar(v)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Annotations and env read back from a values file, either chart layout. With both a
/// `pilot:` block and flat keys present, flat keys win (as the 1.24+ chart merges them).
pub fn wiring_from_values_yaml(yaml: &str) -> Result<(StringMap, StringMap), IstioError> {
    let v: Value =
        serde_yaml::from_str(yaml).map_err(|e| IstioError::InvalidValues(e.to_string()))?;
    if !(v.is_mapping() || v.is_null()) {
        return Err(IstioError::InvalidValues(
            "the top level is not a mapping".into(),
        ));
    }
    let pilot = v.get("pilot");
    let mut ann = string_map(pilot.and_then(|p| p.get("podAnnotations")));
    let mut env = string_map(pilot.and_then(|p| p.get("env")));
    ann.extend(string_map(v.get("podAnnotations")));
    env.extend(string_map(v.get("env")));
    Ok((ann, env))
}

/// Go `strconv.ParseBool`, which vault-k8s uses for its boolean annotations.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A file mode annotation that istiod (another uid) can read: valid octal with o+r.
pub fn perms_readable_by_others(p: &str) -> Option<bool> {
    let p = p.trim();
    let digits = p.strip_prefix("0o").unwrap_or(p);
    if digits.is_empty() || digits.len() > 4 {
        return None;
    }
    let mode = u32::from_str_radix(digits, 8).ok()?;
    Some(mode & 0o004 != 0)
}

/// One difference between what the pod carries and what Vault needs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WiringFinding {
    /// Stable code: `inject-off`, `init-not-first`, `wrong-auth-path`, `wrong-role`,
    /// `wrong-secret-path`, `wrong-template`, `no-error-on-missing-key`, `file-renamed`,
    /// `unreadable-perms`, `volume-path`, `root-ca-dir`.
    pub code: &'static str,
    pub message: String,
    /// A concrete command or value that repairs it.
    pub fix: String,
}

/// Compares a pod template's annotations and env with what Vault's setup requires.
pub fn check_wiring(
    annotations: &BTreeMap<String, String>,
    env: &BTreeMap<String, String>,
    expected: &IstiodWiring,
) -> Vec<WiringFinding> {
    let mut out = Vec::new();
    let get = |k: &str| {
        annotations
            .get(&format!("{ANNOTATION_PREFIX}{k}"))
            .map(String::as_str)
    };
    let is_true = |k: &str| get(k).and_then(parse_go_bool) == Some(true);
    let set = |k: &str, v: &str| {
        let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {
            format!("{ANNOTATION_PREFIX}{k}"): v
        }}}}});
        format!(
            "kubectl -n istio-system patch deployment istiod --type merge -p {}",
            shell_quote(&patch.to_string())
        )
    };
    if !is_true("agent-inject") {
        out.push(WiringFinding {
            code: "inject-off",
            message: format!(
                "vault.hashicorp.com/agent-inject is {:?}, not \"true\": no Vault agent is injected",
                get("agent-inject").unwrap_or("<unset>")
            ),
            fix: set("agent-inject", "true"),
        });
    }
    if !is_true("agent-init-first") {
        out.push(WiringFinding {
            code: "init-not-first",
            message: "agent-init-first is not \"true\": istiod may start before its CA files exist"
                .into(),
            fix: set("agent-init-first", "true"),
        });
    }
    let want_auth = format!("auth/{}", expected.auth_path.trim_matches('/'));
    match get("auth-path") {
        Some(p) if p.trim().trim_matches('/') == want_auth => {}
        other => out.push(WiringFinding {
            code: "wrong-auth-path",
            message: format!(
                "auth-path is {:?}, Vault's kubernetes mount for this cluster is {want_auth:?}",
                other.unwrap_or("<unset: auth/kubernetes>")
            ),
            fix: set("auth-path", &want_auth),
        }),
    }
    match get("role") {
        Some(r) if r.trim() == expected.role => {}
        other => out.push(WiringFinding {
            code: "wrong-role",
            message: format!(
                "role is {:?}, Vault's role is {:?}",
                other.unwrap_or("<unset>"),
                expected.role
            ),
            fix: set("role", &expected.role),
        }),
    }
    for (file, key) in FILES {
        match get(&format!("agent-inject-secret-{file}")) {
            Some(p) if p.trim().trim_matches('/') == expected.secret_path.trim_matches('/') => {}
            other => out.push(WiringFinding {
                code: "wrong-secret-path",
                message: format!(
                    "agent-inject-secret-{file} is {:?}, the secret is at {:?}",
                    other.unwrap_or("<unset>"),
                    expected.secret_path
                ),
                fix: set(
                    &format!("agent-inject-secret-{file}"),
                    &expected.secret_path,
                ),
            }),
        }
        let tmpl = get(&format!("agent-inject-template-{file}")).unwrap_or("");
        let refs = template_data_refs(tmpl);
        let (want_ref, other_ref) = if expected.kv_version == 2 {
            (format!(".Data.data.{key}"), format!(".Data.{key}"))
        } else {
            (format!(".Data.{key}"), format!(".Data.data.{key}"))
        };
        let quoted_path = format!("\"{}\"", expected.secret_path);
        if !refs.contains(&want_ref) || refs.contains(&other_ref) || !tmpl.contains(&quoted_path) {
            out.push(WiringFinding {
                code: "wrong-template",
                message: format!(
                    "template for {file} does not read {want_ref} from {:?} (KV v{} needs {}){}",
                    expected.secret_path,
                    expected.kv_version,
                    if expected.kv_version == 2 {
                        ".Data.data.<key>"
                    } else {
                        ".Data.<key>"
                    },
                    if refs.is_empty() {
                        String::new()
                    } else {
                        format!("; it reads {}", refs.join(", "))
                    }
                ),
                fix: format!(
                    "set vault.hashicorp.com/agent-inject-template-{file} to:\n{}",
                    template(expected, key)
                ),
            });
        }
        if expected.error_on_missing_key && !is_true(&format!("error-on-missing-key-{file}")) {
            out.push(WiringFinding {
                code: "no-error-on-missing-key",
                message: format!("error-on-missing-key-{file} is not \"true\": a key typo renders \"<no value>\" into the PEM instead of failing"),
                fix: set(&format!("error-on-missing-key-{file}"), "true"),
            });
        }
        if let Some(f) = get(&format!("agent-inject-file-{file}"))
            && f.trim().trim_start_matches('/') != file
        {
            out.push(WiringFinding {
                code: "file-renamed",
                message: format!(
                    "agent-inject-file-{file} is {f:?}: the agent writes it there and istiod never finds {file}"
                ),
                fix: format!(
                    "kubectl -n istio-system annotate deployment istiod vault.hashicorp.com/agent-inject-file-{file}- (and remove it from spec.template.metadata.annotations)"
                ),
            });
        }
        if let Some(p) = get(&format!("agent-inject-perms-{file}"))
            && perms_readable_by_others(p) != Some(true)
        {
            out.push(WiringFinding {
                code: "unreadable-perms",
                message: format!(
                    "agent-inject-perms-{file} is {p:?}: istiod (uid 1337) cannot read a file the agent (uid 100) writes without o+r; istiod fails with a filesystem \"permission denied\""
                ),
                fix: set(&format!("agent-inject-perms-{file}"), DEFAULT_FILE_PERMS),
            });
        }
    }
    let want_dir = expected.root_ca_dir.trim_end_matches('/');
    let volume = get("secret-volume-path")
        .map(|s| s.trim().trim_end_matches('/'))
        .unwrap_or(DEFAULT_SECRET_DIR);
    if volume != want_dir {
        out.push(WiringFinding {
            code: "volume-path",
            message: format!(
                "the agent writes into {volume:?} (secret-volume-path) but istiod is meant to read {want_dir:?}"
            ),
            fix: set("secret-volume-path", want_dir),
        });
    }
    match env.get("ROOT_CA_DIR") {
        Some(d) if d.trim().trim_end_matches('/') == want_dir => {}
        other => out.push(WiringFinding {
            code: "root-ca-dir",
            message: format!(
                "ROOT_CA_DIR is {:?}: istiod reads its CA from {} by default",
                other.map(String::as_str).unwrap_or("<unset>"),
                "/etc/cacerts"
            ),
            fix: format!(
                "kubectl -n istio-system set env deployment/istiod -c discovery ROOT_CA_DIR={}",
                shell_quote(&expected.root_ca_dir)
            ),
        }),
    }
    out
}

/// The `.Data...` references a Go template makes, e.g. `.Data.ca_key`, `.Data.data.ca_key`.
pub fn template_data_refs(tmpl: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = tmpl;
    while let Some(i) = rest.find(".Data") {
        let tail = &rest[i..];
        let end = tail
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '.' || *c == '-'))
            .map(|(j, _)| j)
            .unwrap_or(tail.len());
        let r = tail[..end].trim_end_matches('.').to_string();
        if !out.contains(&r) {
            out.push(r);
        }
        rest = &tail[end.max(1)..];
    }
    out
}

/// Checks a values file (either layout) for one cluster, plus the layout itself when the
/// chart version is known: a flat file on a <= 1.23 chart is silently ignored.
pub fn check_values_yaml(
    yaml: &str,
    expected: &IstiodWiring,
    style: Option<ChartStyle>,
) -> Result<Vec<WiringFinding>, IstioError> {
    let (ann, env) = wiring_from_values_yaml(yaml)?;
    let mut out = check_wiring(&ann, &env, expected);
    if style == Some(ChartStyle::Legacy) {
        let v: Value =
            serde_yaml::from_str(yaml).map_err(|e| IstioError::InvalidValues(e.to_string()))?;
        if v.get("podAnnotations").is_some() || v.get("env").is_some() {
            out.push(WiringFinding {
                code: "chart-layout",
                message: "flat podAnnotations/env are ignored by the istiod chart up to Istio 1.23, which reads pilot.podAnnotations and pilot.env".into(),
                fix: "nest podAnnotations and env under pilot: (regenerate with the Legacy chart layout)".into(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wiring(kv: u8) -> IstiodWiring {
        IstiodWiring::article_defaults("cluster1", kv)
    }

    #[test]
    fn generated_values_pass_their_own_check_in_both_layouts() {
        for kv in [1, 2] {
            for style in [ChartStyle::Legacy, ChartStyle::Flat] {
                let y = values_yaml(&wiring(kv), style);
                let (a, e) = wiring_from_values_yaml(&y).expect("yaml");
                assert!(check_wiring(&a, &e, &wiring(kv)).is_empty(), "{y}");
                assert!(
                    check_values_yaml(&y, &wiring(kv), Some(style))
                        .expect("yaml")
                        .is_empty()
                );
            }
        }
    }

    #[test]
    fn flat_values_on_a_legacy_chart_are_flagged() {
        let y = values_yaml(&wiring(1), ChartStyle::Flat);
        let f = check_values_yaml(&y, &wiring(1), Some(ChartStyle::Legacy)).expect("yaml");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].code, "chart-layout");
    }

    #[test]
    fn kv_version_shapes_paths_and_templates() {
        let a1 = pod_annotations(&wiring(1));
        assert_eq!(
            a1["vault.hashicorp.com/agent-inject-secret-ca-key.pem"],
            "kubernetes-cluster1-secrets/istiod-service/certs"
        );
        assert!(
            a1["vault.hashicorp.com/agent-inject-template-ca-key.pem"]
                .contains("{{ .Data.ca_key }}")
        );
        let a2 = pod_annotations(&wiring(2));
        assert_eq!(
            a2["vault.hashicorp.com/agent-inject-secret-ca-key.pem"],
            "kubernetes-cluster1-secrets/data/istiod-service/certs"
        );
        assert!(
            a2["vault.hashicorp.com/agent-inject-template-ca-key.pem"]
                .contains("{{ .Data.data.ca_key }}")
        );
        // v1 templates against a v2 mount are caught.
        let findings = check_wiring(
            &a1,
            &BTreeMap::from([("ROOT_CA_DIR".into(), "/vault/secrets".into())]),
            &wiring(2),
        );
        assert!(findings.iter().any(|f| f.code == "wrong-template"));
        assert!(findings.iter().any(|f| f.code == "wrong-secret-path"));
        // ...and v2 templates against a v1 mount.
        let findings = check_wiring(
            &a2,
            &BTreeMap::from([("ROOT_CA_DIR".into(), "/vault/secrets".into())]),
            &wiring(1),
        );
        assert!(findings.iter().any(|f| f.code == "wrong-template"));
    }

    #[test]
    fn chart_style_by_version() {
        assert_eq!(ChartStyle::for_version("1.23.2"), ChartStyle::Legacy);
        assert_eq!(ChartStyle::for_version("1.16"), ChartStyle::Legacy);
        assert_eq!(ChartStyle::for_version("1.23-alpha.1"), ChartStyle::Legacy);
        assert_eq!(ChartStyle::for_version("v1.24.0"), ChartStyle::Flat);
        assert_eq!(ChartStyle::for_version("1.26.1"), ChartStyle::Flat);
        assert_eq!(ChartStyle::for_version("2.0.0"), ChartStyle::Flat);
        assert_eq!(ChartStyle::for_version("garbage"), ChartStyle::Flat);
        assert_eq!(ChartStyle::for_version(""), ChartStyle::Flat);
    }

    #[test]
    fn service_account_follows_revision() {
        assert_eq!(istiod_service_account(None), "istiod");
        assert_eq!(istiod_service_account(Some("")), "istiod");
        assert_eq!(istiod_service_account(Some("1-24-0")), "istiod-1-24-0");
    }

    #[test]
    fn go_bools_and_perms() {
        assert_eq!(parse_go_bool("True"), Some(true));
        assert_eq!(parse_go_bool("1"), Some(true));
        assert_eq!(parse_go_bool("yes"), None);
        assert_eq!(perms_readable_by_others("0644"), Some(true));
        assert_eq!(perms_readable_by_others("0600"), Some(false));
        assert_eq!(perms_readable_by_others("0640"), Some(false));
        assert_eq!(perms_readable_by_others("rw"), None);
    }

    #[test]
    fn template_refs_are_extracted() {
        let t = "{{- with secret \"a/b\" -}}\n{{ .Data.data.ca_key }}{{ .Data.x }}.\n{{ end -}}";
        assert_eq!(template_data_refs(t), vec![".Data.data.ca_key", ".Data.x"]);
        assert!(template_data_refs("no refs").is_empty());
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("http://v:8200"), "http://v:8200");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
