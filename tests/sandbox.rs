//! Issue 2 acceptance: the sandbox runs real servers, the real TokenReview login path works,
//! and no process outlives `down` or a dead test process.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{BIN, rt, sandbox_or_skip, unique};
use istio_vault_wizard::kube::token_of;

/// Every pid recorded in a sandbox.json.
fn recorded_pids(dir: &Path) -> Vec<u32> {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("sandbox.json")).expect("state"))
            .expect("json");
    let mut pids = vec![
        state["vault"]["pid"].as_u64(),
        state["watchdog_pid"].as_u64(),
    ];
    for c in state["clusters"].as_array().expect("clusters") {
        for k in ["etcd_pid", "apiserver_pid", "kcm_pid"] {
            pids.push(c[k].as_u64());
        }
    }
    pids.into_iter().flatten().map(|p| p as u32).collect()
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next()),
            Some("Z") | Some("X")
        ),
        Err(_) => false,
    }
}

#[test]
fn service_account_jwt_logs_in_through_real_token_review_and_foreign_cluster_token_is_refused() {
    let Some(sb) = sandbox_or_skip("tokenreview login") else {
        return;
    };
    rt().block_on(async {
        let vault = sb.vault();
        let k1 = sb.kube(0).await;
        let k2 = sb.kube(1).await;
        let ns = unique("istio-system");
        let crb = unique("role-tokenreview-binding");
        for k in [&k1, &k2] {
            k.create_namespace(&ns, BTreeMap::new())
                .await
                .expect("namespace");
            k.create_service_account(&ns, "istiod", BTreeMap::new(), BTreeMap::new())
                .await
                .expect("sa");
            k.create_token_secret(&ns, "istiod", "istiod")
                .await
                .expect("token secret");
            k.create_cluster_role_binding(&crb, "system:auth-delegator", &ns, "istiod")
                .await
                .expect("crb");
        }
        let jwt1 = k1
            .wait_for_token(&ns, "istiod", Duration::from_secs(30), &|_| {})
            .await
            .expect("token 1");
        let jwt2 = k2
            .wait_for_token(&ns, "istiod", Duration::from_secs(30), &|_| {})
            .await
            .expect("token 2");
        assert_ne!(jwt1.expose(), jwt2.expose());

        let mount = unique("kubernetes-cluster1");
        vault
            .enable_auth(&mount, "kubernetes")
            .await
            .expect("enable auth");
        let ca = k1.ca_pem.clone().expect("ca in kubeconfig");
        vault
            .write_kubernetes_config(&mount, &k1.api_url, &ca, &jwt1)
            .await
            .expect("auth config");
        let role = serde_json::json!({
            "bound_service_account_names": ["istiod"],
            "bound_service_account_namespaces": [ns],
            "token_policies": ["istiod-certs-cluster1"],
            "token_ttl": "24h",
        });
        vault
            .write_role(&mount, "istiod", &role)
            .await
            .expect("role");

        let login = vault
            .kubernetes_login(&mount, "istiod", &jwt1)
            .await
            .expect("login with cluster1 JWT");
        assert!(!login.token.is_empty());
        assert!(
            login
                .policies
                .contains(&"istiod-certs-cluster1".to_string()),
            "{:?}",
            login.policies
        );

        let refused = vault.kubernetes_login(&mount, "istiod", &jwt2).await;
        let err = refused.expect_err("cluster2's JWT must be refused at cluster1's auth path");
        assert!(
            err.is_permission_denied() || err.status() == Some(400) || err.status() == Some(500),
            "{err}"
        );

        // The secret's token really is the one the controller signed for our SA.
        let secret = k1
            .get_secret(&ns, "istiod")
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(token_of(&secret).expect("token").expose(), jwt1.expose());

        vault.disable_auth(&mount).await.expect("cleanup auth");
        for k in [&k1, &k2] {
            k.delete_cluster_role_binding(&crb)
                .await
                .expect("cleanup crb");
            k.delete_namespace(&ns).await.expect("cleanup ns");
        }
    });
}

fn up(dir: &Path, watch: Option<u32>) -> std::process::Output {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["sandbox", "up", "--state-dir"]).arg(dir);
    if let Some(pid) = watch {
        cmd.args(["--watch-pid", &pid.to_string()]);
    }
    cmd.output().expect("sandbox up")
}

#[test]
fn down_stops_every_process_and_a_second_up_reports_the_running_one() {
    if sandbox_or_skip("sandbox down").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("own");
    let first = up(&dir, None);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let pids = recorded_pids(&dir);
    assert_eq!(pids.len(), 7, "vault + 3 per cluster: {pids:?}");
    assert!(pids.iter().all(|p| alive(*p)));
    // The written config loads as the wizard reads it and names the helm built beside the
    // servers (when the build made one), so the Istio phase finds it without PATH.
    let config = istio_vault_wizard::config::load(&dir.join("wizard.toml")).expect("wizard.toml");
    assert_eq!(config.clusters.len(), 2);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("sandbox.json")).expect("state"))
            .expect("state json");
    match state["binaries"]["helm"].as_str() {
        Some(helm) => assert_eq!(config.istio.helm, helm),
        None => assert_eq!(config.istio.helm, "helm"),
    }

    let second = up(&dir, None);
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("already running"));
    assert_eq!(recorded_pids(&dir), pids, "no duplicate servers started");

    let down = std::process::Command::new(BIN)
        .args(["sandbox", "down", "--state-dir"])
        .arg(&dir)
        .output()
        .expect("down");
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    for pid in &pids {
        assert!(!alive(*pid), "pid {pid} survived sandbox down");
    }
    assert!(!dir.exists(), "state dir removed");
}

#[test]
fn sandbox_goes_down_when_the_watched_process_dies() {
    if sandbox_or_skip("watchdog").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("watched");
    // Stands in for a test process that panics or is killed.
    let mut victim = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("sleep");
    let out = up(&dir, Some(victim.id()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pids = recorded_pids(&dir);
    assert_eq!(pids.len(), 8, "servers plus the watchdog: {pids:?}");
    victim.kill().expect("kill");
    let _ = victim.wait();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && pids.iter().any(|p| alive(*p)) {
        std::thread::sleep(Duration::from_millis(200));
    }
    for pid in &pids {
        assert!(
            !alive(*pid),
            "pid {pid} survived the death of the watched process"
        );
    }
}

#[test]
fn stopped_vault_starts_again_unsealed_with_its_data() {
    // Its own sandbox: stopping Vault must not disturb the tests sharing the common one.
    if sandbox_or_skip("stop/start vault").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("faults");
    let out = up(&dir, Some(std::process::id()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = std::fs::read_to_string(dir.join("root-token")).expect("token");
    let addr = std::fs::read_to_string(dir.join("env"))
        .expect("env")
        .lines()
        .find_map(|l| l.strip_prefix("export VAULT_ADDR=").map(str::to_string))
        .expect("addr");
    let vault =
        istio_vault_wizard::vault::VaultTarget::connect(istio_vault_wizard::vault::VaultSettings {
            address: addr,
            token: istio_vault_wizard::secret::Secret::new(token.trim()),
            token_source: "test".into(),
            ca_cert: None,
            namespace: None,
            skip_verify: false,
        })
        .expect("client");
    let sandbox_cmd = |verb: &str, component: &str| {
        std::process::Command::new(BIN)
            .args(["sandbox", verb, component, "--state-dir"])
            .arg(&dir)
            .output()
            .expect("sandbox command")
    };
    rt().block_on(async {
        let mount = unique("persist");
        vault.enable_kv(&mount, 1).await.expect("kv");
        let data = BTreeMap::from([("k".to_string(), "v".to_string())]);
        vault
            .kv_write(&mount, "x", 1, &data, None)
            .await
            .expect("write");

        assert!(sandbox_cmd("stop", "vault").status.success());
        assert!(vault.seal_status().await.is_err(), "vault is down");
        let start = sandbox_cmd("start", "vault");
        assert!(
            start.status.success(),
            "{}",
            String::from_utf8_lossy(&start.stderr)
        );
        let status = vault.seal_status().await.expect("reachable");
        assert!(!status.sealed);
        let back = vault
            .kv_read(&mount, "x", 1, None)
            .await
            .expect("read")
            .expect("data kept");
        assert_eq!(back.data, data);

        // A cluster stops and starts with its objects kept.
        assert!(sandbox_cmd("stop", "cluster2").status.success());
        let start = sandbox_cmd("start", "cluster2");
        assert!(
            start.status.success(),
            "{}",
            String::from_utf8_lossy(&start.stderr)
        );
    });
    let down = std::process::Command::new(BIN)
        .args(["sandbox", "down", "--state-dir"])
        .arg(&dir)
        .output()
        .expect("down");
    assert!(down.status.success());
}
