//! The local sandbox: one OpenBao server (file storage, initialised and unsealed by us) and
//! N Kubernetes control planes (etcd + kube-apiserver + kube-controller-manager), all on
//! 127.0.0.1 with free ports. It replaces the article's docker-compose (Vault + two k3s).
//!
//! Everything lives in one state directory: data, credentials (0600), logs, generated
//! kubeconfigs and `wizard.toml`, and `sandbox.json` with ports and pids, so `down`,
//! `status`, `stop` and `start` work from any later process.

mod pki;
mod process;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::fsutil;

const VERSIONS_ENV: &str = include_str!("../../tests/servers/versions.env");
const STATE_FILE: &str = "sandbox.json";
const CLUSTERS: [&str; 2] = ["cluster1", "cluster2"];
const READY_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("server binaries missing: {missing}")]
    BinariesMissing { missing: String, root: PathBuf },
    #[error("no sandbox in {0}")]
    NotRunning(PathBuf),
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("cannot start {exe}: {reason}")]
    Spawn { exe: String, reason: String },
    #[error(
        "{component} did not become ready within {secs}s: {reason}\n--- last lines of {log} ---\n{tail}"
    )]
    NotReady {
        component: String,
        secs: u64,
        reason: String,
        log: String,
        tail: String,
    },
    #[error("vault: {0}")]
    Vault(String),
    #[error("sandbox PKI: {0}")]
    Pki(String),
    #[error("sandbox state {path} is unreadable: {reason}")]
    BadState { path: String, reason: String },
    #[error("unknown component {0:?}: expected vault, cluster1 or cluster2")]
    UnknownComponent(String),
}

impl SandboxError {
    fn io(path: &Path, e: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            SandboxError::BinariesMissing { .. } => Some(
                "build them once with `tests/servers/build.sh` (cold: several minutes), or pass --servers-dir".into(),
            ),
            SandboxError::NotRunning(dir) => {
                Some(format!("start one with `istio-vault-wizard sandbox up --state-dir {}`", dir.display()))
            }
            SandboxError::NotReady { .. } => Some("see the log named above; `sandbox down` cleans up".into()),
            _ => None,
        }
    }
}

/// A part of the sandbox that can be stopped and started on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Component {
    Vault,
    Cluster(String),
}

impl FromStr for Component {
    type Err = SandboxError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "vault" | "openbao" | "bao" => Ok(Component::Vault),
            c if CLUSTERS.contains(&c) => Ok(Component::Cluster(c.to_string())),
            other => Err(SandboxError::UnknownComponent(other.to_string())),
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Component::Vault => f.write_str("vault"),
            Component::Cluster(name) => f.write_str(name),
        }
    }
}

/// Pinned versions, read from `tests/servers/versions.env` at compile time so the sandbox
/// looks in the same cache directories the build script fills.
fn pinned(key: &str) -> &'static str {
    VERSIONS_ENV
        .lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
        .unwrap_or("unknown")
}

/// Where `tests/servers/build.sh` caches the binaries.
pub fn default_servers_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("IVW_SERVERS_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("istio-vault-wizard").join("servers")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerBinaries {
    pub bao: PathBuf,
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub helm: Option<PathBuf>,
}

impl ServerBinaries {
    /// Finds the binaries in `root` (versioned sub-directories as the build script makes
    /// them, or all of them directly in `root`).
    pub fn locate(root: Option<&Path>) -> Result<Self, SandboxError> {
        let root = root
            .map(Path::to_path_buf)
            .unwrap_or_else(default_servers_root);
        let find = |component: &str, version_key: &str, name: &str| -> Option<PathBuf> {
            let versioned = root
                .join(format!(
                    "{component}-{}-{}",
                    pinned(version_key),
                    pinned("BUILD_REV")
                ))
                .join(name);
            let flat = root.join(name);
            [versioned, flat].into_iter().find(|p| p.is_file())
        };
        let bao = find("openbao", "OPENBAO_VERSION", "bao");
        let etcd = find("etcd", "ETCD_VERSION", "etcd");
        let apiserver = find("kube", "KUBE_VERSION", "kube-apiserver");
        let kcm = find("kube", "KUBE_VERSION", "kube-controller-manager");
        let helm = find("helm", "HELM_VERSION", "helm");
        match (bao, etcd, apiserver, kcm) {
            (Some(bao), Some(etcd), Some(kube_apiserver), Some(kube_controller_manager)) => {
                Ok(Self {
                    bao,
                    etcd,
                    kube_apiserver,
                    kube_controller_manager,
                    helm,
                })
            }
            (bao, etcd, api, kcm) => {
                let missing: Vec<&str> = [
                    (bao.is_none(), "bao"),
                    (etcd.is_none(), "etcd"),
                    (api.is_none(), "kube-apiserver"),
                    (kcm.is_none(), "kube-controller-manager"),
                ]
                .into_iter()
                .filter(|(m, _)| *m)
                .map(|(_, n)| n)
                .collect();
                Err(SandboxError::BinariesMissing {
                    missing: format!("{} (looked in {})", missing.join(", "), root.display()),
                    root,
                })
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VaultProc {
    pub port: u16,
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterProc {
    pub name: String,
    pub etcd_port: u16,
    pub etcd_peer_port: u16,
    pub apiserver_port: u16,
    pub kcm_port: u16,
    pub etcd_pid: Option<u32>,
    pub apiserver_pid: Option<u32>,
    pub kcm_pid: Option<u32>,
}

/// `sandbox.json`: everything a later process needs to manage this sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxState {
    pub binaries: ServerBinaries,
    pub vault: VaultProc,
    pub clusters: Vec<ClusterProc>,
    pub watchdog_pid: Option<u32>,
}

/// What `up` reports.
#[derive(Debug, Serialize)]
pub struct UpOutcome {
    pub already_running: bool,
    pub state_dir: PathBuf,
    pub vault_addr: String,
    pub clusters: Vec<ClusterEndpoint>,
    pub wizard_config: PathBuf,
    pub env_file: PathBuf,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct ClusterEndpoint {
    pub name: String,
    pub api_server: String,
    pub kubeconfig: PathBuf,
}

impl UpOutcome {
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if self.already_running {
            out.push_str(&format!(
                "sandbox already running in {}\n",
                self.state_dir.display()
            ));
        } else {
            out.push_str(&format!(
                "sandbox up in {:.1}s ({})\n",
                self.seconds,
                self.state_dir.display()
            ));
        }
        out.push_str(&format!("  vault     {}\n", self.vault_addr));
        for c in &self.clusters {
            out.push_str(&format!(
                "  {:<9} {}  kubeconfig {}\n",
                c.name,
                c.api_server,
                c.kubeconfig.display()
            ));
        }
        out.push_str("next:\n");
        out.push_str(&format!(
            "  source {}                      # VAULT_ADDR, VAULT_TOKEN\n",
            self.env_file.display()
        ));
        out.push_str(&format!(
            "  istio-vault-wizard --config {}\n",
            self.wizard_config.display()
        ));
        out.push_str(&format!(
            "  istio-vault-wizard plan --config {}\n",
            self.wizard_config.display()
        ));
        out
    }
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

pub fn load_state(dir: &Path) -> Result<SandboxState, SandboxError> {
    let path = state_path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SandboxError::NotRunning(dir.to_path_buf()));
        }
        Err(e) => return Err(SandboxError::io(&path, e)),
    };
    serde_json::from_str(&text).map_err(|e| SandboxError::BadState {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn save_state(dir: &Path, state: &SandboxState) -> Result<(), SandboxError> {
    let path = state_path(dir);
    let text = serde_json::to_vec_pretty(state).map_err(|e| SandboxError::BadState {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    fsutil::write_atomic(&path, &text).map_err(|e| SandboxError::io(&path, e))
}

fn write_file(path: &Path, contents: &str) -> Result<(), SandboxError> {
    fsutil::write_private(path, contents.as_bytes()).map_err(|e| SandboxError::io(path, e))
}

fn vault_addr(state: &SandboxState) -> String {
    format!("http://127.0.0.1:{}", state.vault.port)
}

fn api_url(c: &ClusterProc) -> String {
    format!("https://127.0.0.1:{}", c.apiserver_port)
}

fn any_alive(state: &SandboxState) -> bool {
    let b = &state.binaries;
    state
        .vault
        .pid
        .is_some_and(|p| process::is_alive(p, &b.bao))
        || state.clusters.iter().any(|c| {
            c.etcd_pid.is_some_and(|p| process::is_alive(p, &b.etcd))
                || c.apiserver_pid
                    .is_some_and(|p| process::is_alive(p, &b.kube_apiserver))
                || c.kcm_pid
                    .is_some_and(|p| process::is_alive(p, &b.kube_controller_manager))
        })
}

fn absolute(dir: &Path) -> Result<PathBuf, SandboxError> {
    fsutil::create_private_dir(dir).map_err(|e| SandboxError::io(dir, e))?;
    dir.canonicalize().map_err(|e| SandboxError::io(dir, e))
}

/// Starts the sandbox (or reports the running one). A stopped sandbox whose state directory
/// still exists is started again with its data: that is the warm start.
pub async fn up(
    dir: &Path,
    bins: &ServerBinaries,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<UpOutcome, SandboxError> {
    let started = Instant::now();
    let dir = absolute(dir)?;
    let existing = match load_state(&dir) {
        Ok(s) => Some(s),
        Err(SandboxError::NotRunning(_)) => None,
        Err(e) => return Err(e),
    };
    let (mut state, already_running) = match existing {
        Some(state) if any_alive(&state) => (state, true),
        Some(mut state) => {
            progress("sandbox state found, starting its servers again (data kept)");
            state.binaries = bins.clone();
            (state, false)
        }
        None => {
            progress(&format!("creating sandbox in {}", dir.display()));
            (create(&dir, bins)?, false)
        }
    };
    if !already_running {
        save_state(&dir, &state)?;
        let vault_fut = start_vault(&dir, &state, progress);
        let cluster_futs = state
            .clusters
            .iter()
            .map(|c| start_cluster(&dir, &state.binaries, c, progress));
        let (vault_pid, clusters) =
            tokio::join!(vault_fut, futures::future::join_all(cluster_futs));
        // Record every pid that started before reporting any failure, so `down` can stop them.
        let mut first_err = None;
        match vault_pid {
            Ok(pid) => state.vault.pid = Some(pid),
            Err((pid, e)) => {
                state.vault.pid = pid;
                first_err.get_or_insert(e);
            }
        }
        for (slot, result) in state.clusters.iter_mut().zip(clusters) {
            let (pids, err) = match result {
                Ok(pids) => (pids, None),
                Err((pids, e)) => (pids, Some(e)),
            };
            slot.etcd_pid = pids.0;
            slot.apiserver_pid = pids.1;
            slot.kcm_pid = pids.2;
            if let Some(e) = err {
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            // Leave nothing half-running; the state dir stays for its logs.
            stop_all(&state);
            state.vault.pid = None;
            for c in &mut state.clusters {
                (c.etcd_pid, c.apiserver_pid, c.kcm_pid) = (None, None, None);
            }
            save_state(&dir, &state)?;
            return Err(e);
        }
        save_state(&dir, &state)?;
        write_outputs(&dir, &state)?;
    }
    Ok(UpOutcome {
        already_running,
        vault_addr: vault_addr(&state),
        clusters: state
            .clusters
            .iter()
            .enumerate()
            .map(|(i, c)| ClusterEndpoint {
                name: c.name.clone(),
                api_server: api_url(c),
                kubeconfig: dir.join(format!("kubecfg{}.yml", i + 1)),
            })
            .collect(),
        wizard_config: dir.join("wizard.toml"),
        env_file: dir.join("env"),
        state_dir: dir,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Fresh sandbox: ports, PKI per cluster, config files.
fn create(dir: &Path, bins: &ServerBinaries) -> Result<SandboxState, SandboxError> {
    let vault_dir = dir.join("vault");
    fsutil::create_private_dir(&vault_dir.join("data"))
        .map_err(|e| SandboxError::io(&vault_dir, e))?;
    fsutil::create_private_dir(&dir.join("logs")).map_err(|e| SandboxError::io(dir, e))?;
    let vault = VaultProc {
        port: process::free_port()?,
        pid: None,
    };
    let hcl = format!(
        "storage \"file\" {{\n  path = \"{data}\"\n}}\n\nlistener \"tcp\" {{\n  address     = \"127.0.0.1:{port}\"\n  tls_disable = true\n}}\n\napi_addr      = \"http://127.0.0.1:{port}\"\ndisable_mlock = true\nlog_level     = \"info\"\n",
        data = vault_dir.join("data").display(),
        port = vault.port
    );
    write_file(&vault_dir.join("config.hcl"), &hcl)?;

    let mut clusters = Vec::new();
    for name in CLUSTERS {
        let cdir = dir.join(name);
        fsutil::create_private_dir(&cdir.join("etcd")).map_err(|e| SandboxError::io(&cdir, e))?;
        let pki = pki::generate(name)?;
        write_file(&cdir.join("ca.crt"), &pki.ca_cert_pem)?;
        write_file(&cdir.join("apiserver.crt"), &pki.serving_cert_pem)?;
        write_file(&cdir.join("apiserver.key"), &pki.serving_key_pem)?;
        write_file(&cdir.join("admin.crt"), &pki.admin_cert_pem)?;
        write_file(&cdir.join("admin.key"), &pki.admin_key_pem)?;
        write_file(&cdir.join("kubelet.crt"), &pki.kubelet_cert_pem)?;
        write_file(&cdir.join("kubelet.key"), &pki.kubelet_key_pem)?;
        write_file(&cdir.join("sa.key"), &pki.sa_key_pem)?;
        write_file(&cdir.join("sa.pub"), &pki.sa_pub_pem)?;
        let c = ClusterProc {
            name: name.to_string(),
            etcd_port: process::free_port()?,
            etcd_peer_port: process::free_port()?,
            apiserver_port: process::free_port()?,
            kcm_port: process::free_port()?,
            etcd_pid: None,
            apiserver_pid: None,
            kcm_pid: None,
        };
        let kubeconfig = kubeconfig_yaml(
            &c,
            &pki.ca_cert_pem,
            &pki.admin_cert_pem,
            &pki.admin_key_pem,
        );
        write_file(&cdir.join("admin.kubeconfig"), &kubeconfig)?;
        clusters.push(c);
    }
    Ok(SandboxState {
        binaries: bins.clone(),
        vault,
        clusters,
        watchdog_pid: None,
    })
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn kubeconfig_yaml(c: &ClusterProc, ca: &str, cert: &str, key: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {n}\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: {n}-admin\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: {n}\n  context:\n    cluster: {n}\n    user: {n}-admin\ncurrent-context: {n}\n",
        n = c.name,
        url = api_url(c),
        ca = b64(ca),
        cert = b64(cert),
        key = b64(key),
    )
}

fn write_outputs(dir: &Path, state: &SandboxState) -> Result<(), SandboxError> {
    let init = read_vault_init(dir)?;
    let addr = vault_addr(state);
    write_file(&dir.join("root-token"), &init.root_token)?;
    write_file(
        &dir.join("env"),
        &format!(
            "export VAULT_ADDR={addr}\nexport VAULT_TOKEN={}\nexport KUBECONFIG={}\n",
            init.root_token,
            dir.join("kubecfg1.yml").display()
        ),
    )?;
    let mut toml = format!(
        "# Written by `istio-vault-wizard sandbox up`: the article's two clusters on this sandbox.\n[vault]\naddress = \"{addr}\"\ntoken_file = \"root-token\"\nkv_version = 1\n"
    );
    for (i, c) in state.clusters.iter().enumerate() {
        let src = dir.join(&c.name).join("admin.kubeconfig");
        let dst = dir.join(format!("kubecfg{}.yml", i + 1));
        let text = std::fs::read_to_string(&src).map_err(|e| SandboxError::io(&src, e))?;
        write_file(&dst, &text)?;
        toml.push_str(&format!(
            "\n[[cluster]]\nname = \"{n}\"\nkubeconfig = \"kubecfg{i}.yml\"\ncontext = \"{n}\"\n",
            n = c.name,
            i = i + 1
        ));
    }
    // The helm built beside the servers, so the Istio phase on the sandbox finds one even
    // when the operator has none on PATH.
    if let Some(helm) = &state.binaries.helm {
        let path = toml::Value::String(helm.display().to_string());
        toml.push_str(&format!("\n[istio]\nhelm = {path}\n"));
    }
    write_file(&dir.join("wizard.toml"), &toml)
}

fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("logs").join(format!("{name}.log"))
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn not_ready(dir: &Path, component: &str, log_name: &str, reason: String) -> SandboxError {
    let log = log_path(dir, log_name);
    SandboxError::NotReady {
        component: component.to_string(),
        secs: READY_TIMEOUT.as_secs(),
        reason,
        tail: log_tail(&log),
        log: log.display().to_string(),
    }
}

/// Polls `probe` until it returns Ok(true), the process dies, or the timeout passes.
async fn wait_ready<F, Fut>(
    dir: &Path,
    component: &str,
    log_name: &str,
    pid: u32,
    exe: &Path,
    mut probe: F,
) -> Result<(), SandboxError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, String>>,
{
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last = String::from("no answer yet");
    loop {
        match probe().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = e,
        }
        // pid_exists, not is_alive: right after spawn the child may still be inside exec
        // (old comm, empty cmdline), which the executable check would call dead.
        if !process::pid_exists(pid) {
            return Err(not_ready(
                dir,
                component,
                log_name,
                format!(
                    "process {pid} ({}) exited ({last}; {})",
                    exe.display(),
                    process::liveness_detail(pid)
                ),
            ));
        }
        if Instant::now() > deadline {
            return Err(not_ready(dir, component, log_name, last));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .unwrap_or_default()
}

#[derive(Serialize, Deserialize)]
struct VaultInit {
    unseal_key: String,
    root_token: String,
}

fn read_vault_init(dir: &Path) -> Result<VaultInit, SandboxError> {
    let path = dir.join("vault").join("init.json");
    let text = std::fs::read_to_string(&path).map_err(|e| SandboxError::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| SandboxError::BadState {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

type StartErr<T> = (T, SandboxError);

async fn start_vault(
    dir: &Path,
    state: &SandboxState,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<u32, StartErr<Option<u32>>> {
    let bao = &state.binaries.bao;
    let config = dir.join("vault").join("config.hcl");
    let pid = process::spawn(
        bao,
        &["server".into(), format!("-config={}", config.display())],
        &log_path(dir, "vault"),
    )
    .map_err(|e| (None, e))?;
    let addr = vault_addr(state);
    let client = http();
    let health = format!("{addr}/v1/sys/health?uninitcode=200&sealedcode=200&standbyok=true");
    let probe = || {
        let client = client.clone();
        let health = health.clone();
        async move {
            let r = client
                .get(&health)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            Ok(r.status().is_success())
        }
    };
    wait_ready(dir, "vault", "vault", pid, bao, probe)
        .await
        .map_err(|e| (Some(pid), e))?;
    unseal_vault(dir, &addr, &client, progress)
        .await
        .map_err(|e| (Some(pid), e))?;
    progress(&format!("vault ready at {addr}"));
    Ok(pid)
}

async fn unseal_vault(
    dir: &Path,
    addr: &str,
    client: &reqwest::Client,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), SandboxError> {
    let verr = |e: reqwest::Error| SandboxError::Vault(e.to_string());
    let status: serde_json::Value = client
        .get(format!("{addr}/v1/sys/seal-status"))
        .send()
        .await
        .map_err(verr)?
        .json()
        .await
        .map_err(verr)?;
    if status["initialized"] == false {
        progress("vault: initialising (1 unseal key, kept 0600 in the state dir)");
        let init: serde_json::Value = client
            .put(format!("{addr}/v1/sys/init"))
            .json(&serde_json::json!({"secret_shares": 1, "secret_threshold": 1}))
            .send()
            .await
            .map_err(verr)?
            .json()
            .await
            .map_err(verr)?;
        let key = init["keys_base64"][0]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let token = init["root_token"].as_str().unwrap_or_default().to_string();
        if key.is_empty() || token.is_empty() {
            return Err(SandboxError::Vault(
                "sys/init returned no key or token".into(),
            ));
        }
        let path = dir.join("vault").join("init.json");
        let text = serde_json::to_string(&VaultInit {
            unseal_key: key,
            root_token: token,
        })
        .unwrap_or_default();
        write_file(&path, &text)?;
    }
    let init = read_vault_init(dir)?;
    let resp: serde_json::Value = client
        .put(format!("{addr}/v1/sys/unseal"))
        .json(&serde_json::json!({"key": init.unseal_key}))
        .send()
        .await
        .map_err(verr)?
        .json()
        .await
        .map_err(verr)?;
    if resp["sealed"] != false {
        return Err(SandboxError::Vault(format!(
            "still sealed after unseal: {resp}"
        )));
    }
    // Wait until it serves requests as the active node.
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let ok = client
            .get(format!("{addr}/v1/sys/health"))
            .send()
            .await
            .map(|r| r.status().as_u16() == 200)
            .unwrap_or(false);
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(SandboxError::Vault("unsealed but not active".into()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type ClusterPids = (Option<u32>, Option<u32>, Option<u32>);

fn admin_client(dir: &Path, c: &ClusterProc) -> Result<reqwest::Client, SandboxError> {
    let cdir = dir.join(&c.name);
    let read =
        |n: &str| std::fs::read(cdir.join(n)).map_err(|e| SandboxError::io(&cdir.join(n), e));
    let ca = reqwest::Certificate::from_pem(&read("ca.crt")?)
        .map_err(|e| SandboxError::Pki(e.to_string()))?;
    let mut identity = read("admin.crt")?;
    identity.extend(read("admin.key")?);
    let identity =
        reqwest::Identity::from_pem(&identity).map_err(|e| SandboxError::Pki(e.to_string()))?;
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .identity(identity)
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .map_err(|e| SandboxError::Pki(e.to_string()))
}

async fn start_cluster(
    dir: &Path,
    bins: &ServerBinaries,
    c: &ClusterProc,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<ClusterPids, StartErr<ClusterPids>> {
    let mut pids: ClusterPids = (None, None, None);
    let cdir = dir.join(&c.name);
    let name = &c.name;
    let p = |f: &str| cdir.join(f).display().to_string();

    // etcd
    let etcd_args = vec![
        format!("--name={name}"),
        format!("--data-dir={}", p("etcd")),
        format!("--listen-client-urls=http://127.0.0.1:{}", c.etcd_port),
        format!("--advertise-client-urls=http://127.0.0.1:{}", c.etcd_port),
        format!("--listen-peer-urls=http://127.0.0.1:{}", c.etcd_peer_port),
        format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{}",
            c.etcd_peer_port
        ),
        format!(
            "--initial-cluster={name}=http://127.0.0.1:{}",
            c.etcd_peer_port
        ),
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ];
    let etcd_log = format!("{name}-etcd");
    let pid =
        process::spawn(&bins.etcd, &etcd_args, &log_path(dir, &etcd_log)).map_err(|e| (pids, e))?;
    pids.0 = Some(pid);
    let client = http();
    let url = format!("http://127.0.0.1:{}/health", c.etcd_port);
    let probe = || {
        let client = client.clone();
        let url = url.clone();
        async move {
            let r = client.get(&url).send().await.map_err(|e| e.to_string())?;
            let v: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
            Ok(v["health"] == "true")
        }
    };
    wait_ready(
        dir,
        &format!("{name} etcd"),
        &etcd_log,
        pid,
        &bins.etcd,
        probe,
    )
    .await
    .map_err(|e| (pids, e))?;

    // kube-apiserver
    let api_args = vec![
        format!("--etcd-servers=http://127.0.0.1:{}", c.etcd_port),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={}", c.apiserver_port),
        format!("--cert-dir={}", p("certs")),
        format!("--tls-cert-file={}", p("apiserver.crt")),
        format!("--tls-private-key-file={}", p("apiserver.key")),
        format!("--client-ca-file={}", p("ca.crt")),
        // Pod logs, exec and port-forward go to the node's kubelet: https to the first
        // node.status.addresses entry of the preferred types (kubeadm's order, so a
        // node's Hostname is not resolved), port daemonEndpoints.kubeletEndpoint.Port.
        // Without a CA the API server would not verify the kubelet's certificate;
        // `kubelet.crt` (127.0.0.1) is signed by this CA.
        format!("--kubelet-certificate-authority={}", p("ca.crt")),
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname".into(),
        format!("--service-account-issuer=https://{name}.sandbox.local"),
        format!("--service-account-key-file={}", p("sa.pub")),
        format!("--service-account-signing-key-file={}", p("sa.key")),
        "--authorization-mode=RBAC".into(),
        "--service-cluster-ip-range=10.96.0.0/24".into(),
        "--endpoint-reconciler-type=none".into(),
        "--enable-priority-and-fairness=false".into(),
        "--profiling=false".into(),
        "--v=0".into(),
    ];
    let api_log = format!("{name}-apiserver");
    let pid = process::spawn(&bins.kube_apiserver, &api_args, &log_path(dir, &api_log))
        .map_err(|e| (pids, e))?;
    pids.1 = Some(pid);
    let admin = admin_client(dir, c).map_err(|e| (pids, e))?;
    let readyz = format!("{}/readyz", api_url(c));
    let probe = || {
        let admin = admin.clone();
        let readyz = readyz.clone();
        async move {
            let r = admin.get(&readyz).send().await.map_err(|e| e.to_string())?;
            Ok(r.status().is_success())
        }
    };
    wait_ready(
        dir,
        &format!("{name} kube-apiserver"),
        &api_log,
        pid,
        &bins.kube_apiserver,
        probe,
    )
    .await
    .map_err(|e| (pids, e))?;

    // kube-controller-manager
    let kcm_args = vec![
        format!("--kubeconfig={}", p("admin.kubeconfig")),
        "--controllers=serviceaccount,serviceaccount-token,namespace,garbagecollector,deployment,replicaset".into(),
        format!("--service-account-private-key-file={}", p("sa.key")),
        format!("--root-ca-file={}", p("ca.crt")),
        "--use-service-account-credentials=false".into(),
        "--leader-elect=false".into(),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={}", c.kcm_port),
        format!("--cert-dir={}", p("certs")),
        "--concurrent-namespace-syncs=2".into(),
        "--v=0".into(),
    ];
    let kcm_log = format!("{name}-controller-manager");
    let pid = process::spawn(
        &bins.kube_controller_manager,
        &kcm_args,
        &log_path(dir, &kcm_log),
    )
    .map_err(|e| (pids, e))?;
    pids.2 = Some(pid);
    // Ready when the serviceaccount controller has made `default/default`.
    let sa_url = format!(
        "{}/api/v1/namespaces/default/serviceaccounts/default",
        api_url(c)
    );
    let probe = || {
        let admin = admin.clone();
        let sa_url = sa_url.clone();
        async move {
            let r = admin.get(&sa_url).send().await.map_err(|e| e.to_string())?;
            Ok(r.status().is_success())
        }
    };
    wait_ready(
        dir,
        &format!("{name} kube-controller-manager"),
        &kcm_log,
        pid,
        &bins.kube_controller_manager,
        probe,
    )
    .await
    .map_err(|e| (pids, e))?;
    progress(&format!("{name} ready at {}", api_url(c)));
    Ok(pids)
}

/// Stops every process of the sandbox (by recorded pid) and removes its state directory.
pub fn down(dir: &Path) -> Result<Vec<u32>, SandboxError> {
    let state = match load_state(dir) {
        Ok(s) => s,
        Err(SandboxError::NotRunning(_)) => {
            // Nothing recorded: remove a half-made directory if there is one.
            if dir.exists() {
                std::fs::remove_dir_all(dir).map_err(|e| SandboxError::io(dir, e))?;
            }
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let mut stopped = Vec::new();
    if let Some(pid) = state.watchdog_pid
        && pid != std::process::id()
        && let Ok(me) = own_exe()
        && process::terminate(pid, &me, Duration::from_secs(2))
    {
        stopped.push(pid);
    }
    stopped.extend(stop_all(&state));
    std::fs::remove_dir_all(dir).map_err(|e| SandboxError::io(dir, e))?;
    Ok(stopped)
}

fn stop_all(state: &SandboxState) -> Vec<u32> {
    let mut stopped = Vec::new();
    let b = &state.binaries;
    if let Some(pid) = state.vault.pid
        && process::terminate(pid, &b.bao, Duration::from_secs(10))
    {
        stopped.push(pid);
    }
    for c in &state.clusters {
        stopped.extend(stop_cluster(b, c));
    }
    stopped
}

fn stop_cluster(b: &ServerBinaries, c: &ClusterProc) -> Vec<u32> {
    let mut stopped = Vec::new();
    for (pid, exe) in [
        (c.kcm_pid, &b.kube_controller_manager),
        (c.apiserver_pid, &b.kube_apiserver),
        (c.etcd_pid, &b.etcd),
    ] {
        if let Some(pid) = pid
            && process::terminate(pid, exe, Duration::from_secs(10))
        {
            stopped.push(pid);
        }
    }
    stopped
}

/// Stops one component, keeping its data.
pub fn stop_component(dir: &Path, component: &Component) -> Result<(), SandboxError> {
    let mut state = load_state(dir)?;
    match component {
        Component::Vault => {
            if let Some(pid) = state.vault.pid.take() {
                process::terminate(pid, &state.binaries.bao, Duration::from_secs(10));
            }
        }
        Component::Cluster(name) => {
            let bins = state.binaries.clone();
            let c = state
                .clusters
                .iter_mut()
                .find(|c| &c.name == name)
                .ok_or_else(|| SandboxError::UnknownComponent(name.clone()))?;
            stop_cluster(&bins, c);
            c.etcd_pid = None;
            c.apiserver_pid = None;
            c.kcm_pid = None;
        }
    }
    save_state(dir, &state)
}

/// Starts one component again on its old ports and data; Vault is unsealed again.
pub async fn start_component(
    dir: &Path,
    component: &Component,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), SandboxError> {
    let dir = dir.canonicalize().map_err(|e| SandboxError::io(dir, e))?;
    let mut state = load_state(&dir)?;
    match component {
        Component::Vault => {
            if state
                .vault
                .pid
                .is_some_and(|p| process::is_alive(p, &state.binaries.bao))
            {
                return Ok(());
            }
            let result = start_vault(&dir, &state, progress).await;
            state.vault.pid = match &result {
                Ok(pid) => Some(*pid),
                Err((pid, _)) => *pid,
            };
            save_state(&dir, &state)?;
            result.map(|_| ()).map_err(|(_, e)| e)
        }
        Component::Cluster(name) => {
            let idx = state
                .clusters
                .iter()
                .position(|c| &c.name == name)
                .ok_or_else(|| SandboxError::UnknownComponent(name.clone()))?;
            let c = state.clusters[idx].clone();
            stop_cluster(&state.binaries, &c);
            let result = start_cluster(&dir, &state.binaries, &c, progress).await;
            let pids = match &result {
                Ok(p) => *p,
                Err((p, _)) => *p,
            };
            let slot = &mut state.clusters[idx];
            slot.etcd_pid = pids.0;
            slot.apiserver_pid = pids.1;
            slot.kcm_pid = pids.2;
            save_state(&dir, &state)?;
            result.map(|_| ()).map_err(|(_, e)| e)
        }
    }
}

/// Starts a detached watchdog that takes the sandbox down once `pid` exits: a test binary
/// that panics or is killed still leaves no server running.
pub fn spawn_watchdog(dir: &Path, pid: u32) -> Result<(), SandboxError> {
    let dir = dir.canonicalize().map_err(|e| SandboxError::io(dir, e))?;
    let me = own_exe().map_err(|e| SandboxError::io(Path::new("current_exe"), e))?;
    let args = vec![
        "sandbox".to_string(),
        "watchdog".into(),
        "--state-dir".into(),
        dir.display().to_string(),
        "--pid".into(),
        pid.to_string(),
    ];
    let wpid = process::spawn(&me, &args, &log_path(&dir, "watchdog"))?;
    let mut state = load_state(&dir)?;
    state.watchdog_pid = Some(wpid);
    save_state(&dir, &state)
}

/// This binary's path. When it was rebuilt while running, Linux reports the old inode as
/// "<path> (deleted)": the path itself then names the new build, which is what we want.
fn own_exe() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(p) => PathBuf::from(p),
        None => exe,
    })
}

/// Body of the watchdog process.
pub fn watchdog(dir: &Path, pid: u32) {
    while process::pid_exists(pid) && state_path(dir).exists() {
        std::thread::sleep(Duration::from_millis(250));
    }
    if state_path(dir).exists() {
        let _ = down(dir);
    }
}

#[derive(Debug, Serialize)]
pub struct ComponentStatus {
    pub name: String,
    pub endpoint: String,
    pub pids: Vec<u32>,
    pub running: bool,
    pub healthy: bool,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct SandboxStatus {
    pub state_dir: PathBuf,
    pub components: Vec<ComponentStatus>,
}

impl SandboxStatus {
    pub fn all_healthy(&self) -> bool {
        self.components.iter().all(|c| c.healthy)
    }

    pub fn describe(&self) -> String {
        let mut out = format!("sandbox {}\n", self.state_dir.display());
        for c in &self.components {
            let state = match (c.running, c.healthy) {
                (true, true) => "healthy",
                (true, false) => "running, not healthy",
                _ => "stopped",
            };
            let pids: Vec<String> = c.pids.iter().map(u32::to_string).collect();
            out.push_str(&format!(
                "  {:<9} {:<24} {:<20} pids [{}] {}\n",
                c.name,
                c.endpoint,
                state,
                pids.join(" "),
                c.detail
            ));
        }
        out
    }
}

/// What runs and whether it answers.
pub async fn status(dir: &Path) -> Result<SandboxStatus, SandboxError> {
    let state = load_state(dir)?;
    let b = &state.binaries;
    let mut components = Vec::new();
    let client = http();
    let vault_running = state
        .vault
        .pid
        .is_some_and(|p| process::is_alive(p, &b.bao));
    let (healthy, detail) = if vault_running {
        match client
            .get(format!("{}/v1/sys/seal-status", vault_addr(&state)))
            .send()
            .await
        {
            Ok(r) => match r.json::<serde_json::Value>().await {
                Ok(v) => (
                    v["sealed"] == false,
                    format!(
                        "sealed={} version={}",
                        v["sealed"],
                        v["version"].as_str().unwrap_or("?")
                    ),
                ),
                Err(e) => (false, e.to_string()),
            },
            Err(e) => (false, e.to_string()),
        }
    } else {
        (false, String::new())
    };
    components.push(ComponentStatus {
        name: "vault".into(),
        endpoint: vault_addr(&state),
        pids: state.vault.pid.into_iter().collect(),
        running: vault_running,
        healthy,
        detail,
    });
    for c in &state.clusters {
        let procs = [
            (c.etcd_pid, &b.etcd),
            (c.apiserver_pid, &b.kube_apiserver),
            (c.kcm_pid, &b.kube_controller_manager),
        ];
        let running = procs
            .iter()
            .all(|(p, exe)| p.is_some_and(|p| process::is_alive(p, exe)));
        let (healthy, detail) = if running {
            match admin_client(dir, c) {
                Ok(admin) => match admin.get(format!("{}/readyz", api_url(c))).send().await {
                    Ok(r) => (
                        r.status().is_success(),
                        format!("readyz {}", r.status().as_u16()),
                    ),
                    Err(e) => (false, e.to_string()),
                },
                Err(e) => (false, e.to_string()),
            }
        } else {
            (false, String::new())
        };
        components.push(ComponentStatus {
            name: c.name.clone(),
            endpoint: api_url(c),
            pids: procs.iter().filter_map(|(p, _)| *p).collect(),
            running,
            healthy,
            detail,
        });
    }
    Ok(SandboxStatus {
        state_dir: dir.to_path_buf(),
        components,
    })
}
