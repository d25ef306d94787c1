//! Shared test support: one real sandbox (OpenBao + two kube control planes) per test
//! binary, or the one named by IVW_SANDBOX_DIR. Servers missing: the test fails when
//! IVW_REQUIRE_SERVERS=1 (the README test command and CI set it), else it says it skipped.
#![allow(dead_code)]

pub mod istiod;
pub mod kubelet;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use istio_vault_wizard::kube::KubeTarget;
use istio_vault_wizard::secret::Secret;
use istio_vault_wizard::vault::{VaultSettings, VaultTarget};

pub const BIN: &str = env!("CARGO_BIN_EXE_istio-vault-wizard");

pub struct Sandbox {
    pub dir: PathBuf,
    pub vault_addr: String,
    pub root_token: Secret,
    pub kubeconfigs: Vec<PathBuf>,
    _tmp: Option<tempfile::TempDir>,
}

static SANDBOX: OnceLock<Option<Sandbox>> = OnceLock::new();

/// The sandbox for this test binary, or None (after printing SKIPPED) when servers are
/// missing and not required.
pub fn sandbox() -> Option<&'static Sandbox> {
    SANDBOX.get_or_init(start).as_ref()
}

/// Use at the top of an integration test: `let Some(sb) = common::sandbox_or_skip("name") else { return };`
pub fn sandbox_or_skip(test: &str) -> Option<&'static Sandbox> {
    let sb = sandbox();
    if sb.is_none() {
        eprintln!("SKIPPED {test}: sandbox servers are not built (run tests/servers/build.sh)");
    }
    sb
}

fn start() -> Option<Sandbox> {
    if let Some(dir) = std::env::var_os("IVW_SANDBOX_DIR") {
        let dir = PathBuf::from(dir);
        return Some(read_sandbox(&dir, None));
    }
    if let Err(e) = istio_vault_wizard::sandbox::ServerBinaries::locate(None) {
        if std::env::var("IVW_REQUIRE_SERVERS").as_deref() == Ok("1") {
            panic!("sandbox servers required but missing: {e}");
        }
        return None;
    }
    let tmp = tempfile::Builder::new()
        .prefix("ivw-sandbox-")
        .tempdir()
        .expect("tempdir");
    let dir = tmp.path().join("sb");
    let out = Command::new(BIN)
        .args(["sandbox", "up", "-q", "--state-dir"])
        .arg(&dir)
        .args(["--watch-pid", &std::process::id().to_string()])
        .output()
        .expect("run sandbox up");
    assert!(
        out.status.success(),
        "sandbox up failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(read_sandbox(&dir, Some(tmp)))
}

pub fn read_sandbox(dir: &Path, tmp: Option<tempfile::TempDir>) -> Sandbox {
    let token = std::fs::read_to_string(dir.join("root-token")).expect("root-token");
    let env = std::fs::read_to_string(dir.join("env")).expect("env file");
    let vault_addr = env
        .lines()
        .find_map(|l| l.strip_prefix("export VAULT_ADDR="))
        .expect("VAULT_ADDR in env")
        .to_string();
    Sandbox {
        dir: dir.to_path_buf(),
        vault_addr,
        root_token: Secret::new(token.trim()),
        kubeconfigs: vec![dir.join("kubecfg1.yml"), dir.join("kubecfg2.yml")],
        _tmp: tmp,
    }
}

impl Sandbox {
    pub fn vault(&self) -> VaultTarget {
        VaultTarget::connect(VaultSettings {
            address: self.vault_addr.clone(),
            token: self.root_token.clone(),
            token_source: "sandbox".into(),
            ca_cert: None,
            namespace: None,
            skip_verify: false,
        })
        .expect("vault client")
    }

    /// cluster index 0 or 1.
    pub async fn kube(&self, idx: usize) -> KubeTarget {
        istio_vault_wizard::kube::connect(Some(&self.kubeconfigs[idx]), None)
            .await
            .expect("kube client")
    }

    pub fn cli(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("VAULT_ADDR", &self.vault_addr)
            .env("VAULT_TOKEN", self.root_token.expose())
            .env_remove("VAULT_NAMESPACE")
            .env_remove("VAULT_CACERT");
        c
    }
}

/// A name unique to this process and call: tests never collide on mounts or namespaces.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id() % 100000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub tag: String,
    pub kv: u8,
}

pub fn write_config(sb: &Sandbox, kv: u8, key_type: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tmp");
    let tag = unique("t");
    let text = format!(
        "state_dir = \"state\"\n[vault]\naddress = \"{addr}\"\ntoken_file = \"{tok}\"\nkv_version = {kv}\n\n[names]\nnamespace = \"ns-{tag}\"\nreviewer_binding = \"rtb-{tag}\"\nauth_path = \"kubernetes-{{cluster}}-{tag}\"\nkv_mount = \"kubernetes-{{cluster}}-{tag}-secrets\"\npolicy = \"istiod-certs-{{cluster}}-{tag}\"\n\n[certs]\nkey_type = \"{key_type}\"\n\n[[cluster]]\nname = \"cluster1\"\nkubeconfig = \"{k1}\"\ncontext = \"cluster1\"\n\n[[cluster]]\nname = \"cluster2\"\nkubeconfig = \"{k2}\"\ncontext = \"cluster2\"\n",
        addr = sb.vault_addr,
        tok = sb.dir.join("root-token").display(),
        k1 = sb.kubeconfigs[0].display(),
        k2 = sb.kubeconfigs[1].display(),
    );
    let config = dir.path().join("wizard.toml");
    std::fs::write(&config, text).expect("write config");
    Setup {
        dir,
        config,
        tag,
        kv,
    }
}

impl Setup {
    /// The wizard with `args` on this test's config, Vault credentials from the config
    /// only; for a test that adds environment or spawns it.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .arg("--config")
            .arg(&self.config)
            .env_remove("VAULT_TOKEN")
            .env_remove("VAULT_ADDR");
        c
    }
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().expect("run wizard")
    }
    pub fn ns(&self) -> String {
        format!("ns-{}", self.tag)
    }
    pub fn auth(&self, cluster: &str) -> String {
        format!("kubernetes-{cluster}-{}", self.tag)
    }
    pub fn mount(&self, cluster: &str) -> String {
        format!("kubernetes-{cluster}-{}-secrets", self.tag)
    }
    pub fn policy(&self, cluster: &str) -> String {
        format!("istiod-certs-{cluster}-{}", self.tag)
    }
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
}

/// `certs generate --key-type ec-p256 --cluster <cluster> --out <out>` plus `extra`: a
/// fresh bundle in Istio's layout (EC: instant in debug builds).
pub fn generate_ec_bundle(out: &Path, cluster: &str, extra: &[&std::ffi::OsStr]) {
    let o = Command::new(BIN)
        .args([
            "certs",
            "generate",
            "--key-type",
            "ec-p256",
            "--cluster",
            cluster,
        ])
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("certs generate");
    assert!(
        o.status.success(),
        "certs generate: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
