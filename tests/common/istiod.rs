//! What the istiod tests share: a real `bao agent` rendering istiod's four PEMs from Vault
//! with the istiod ServiceAccount token (as the injector's init container would), and
//! where `tests/servers/build.sh` caches `pilot-discovery`.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::Command;

use super::{Sandbox, Setup, rt};

/// One run of `bao agent` (exit after auth) with the configuration the injector would build.
pub struct AgentRun {
    pub ok: bool,
    /// stdout then stderr of the agent (no token: the agent never prints it).
    pub log: String,
    /// The directory the templates render into (istiod's `ROOT_CA_DIR`).
    pub rendered: PathBuf,
}

/// Renders the templates of `annotations` into `<setup dir>/agent/vault-secrets` with the
/// token of the `istiod` ServiceAccount of cluster `cluster` (0 or 1) in the setup's namespace.
pub fn render_with_agent(
    sb: &Sandbox,
    s: &Setup,
    cluster: usize,
    annotations: &BTreeMap<String, String>,
) -> AgentRun {
    let jwt = rt().block_on(async {
        let k = sb.kube(cluster).await;
        let secret = k
            .get_secret(&s.ns(), "istiod")
            .await
            .expect("get the istiod token Secret")
            .expect("the istiod token Secret exists");
        istio_vault_wizard::kube::token_of(&secret).expect("the Secret holds a token")
    });
    let work = s.dir.path().join("agent");
    let rendered = work.join("vault-secrets");
    std::fs::create_dir_all(&rendered).expect("create the render dir");
    let token_file = work.join("sa-token");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&token_file)
        .and_then(|mut f| f.write_all(jwt.expose().as_bytes()))
        .expect("write the token file");
    let hcl = istio_vault_wizard::istio::agent_config_from_annotations(
        annotations,
        &sb.vault_addr,
        &token_file,
        &rendered,
    )
    .expect("agent config from the annotations");
    let cfg = work.join("agent.hcl");
    std::fs::write(&cfg, hcl).expect("write agent.hcl");
    let bins = istio_vault_wizard::sandbox::ServerBinaries::locate(None).expect("server binaries");
    let out = Command::new(&bins.bao)
        .args(["agent", "-config"])
        .arg(&cfg)
        .env_remove("VAULT_TOKEN")
        .env_remove("BAO_TOKEN")
        .output()
        .expect("run bao agent");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    AgentRun {
        ok: out.status.success(),
        log,
        rendered,
    }
}

const VERSIONS_ENV: &str = include_str!("../servers/versions.env");

fn pinned(key: &str) -> Option<&'static str> {
    VERSIONS_ENV
        .lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
}

/// `pilot-discovery` as `tests/servers/build.sh` caches it
/// (`<servers dir>/istiod-$ISTIO_VERSION-$BUILD_REV/pilot-discovery`), or None.
pub fn pilot_discovery() -> Option<PathBuf> {
    let dir = format!(
        "istiod-{}-{}",
        pinned("ISTIO_VERSION")?,
        pinned("BUILD_REV")?
    );
    let p = istio_vault_wizard::sandbox::default_servers_root()
        .join(dir)
        .join("pilot-discovery");
    p.is_file().then_some(p)
}
