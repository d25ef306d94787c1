//! The real terminal: tmux runs the wizard against the sandbox; `send-keys` performs the
//! whole setup for both clusters, confirming each step in the dialog; `capture-pane`
//! checks the screen, the Vault and Kubernetes APIs check the end state. Then `U` rolls
//! back (confirmed) and the pre-existing namespace is untouched. Every captured screen is
//! scanned for the token and private key material.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    name: String,
    screens: Vec<String>,
}

impl Tmux {
    fn start(name: &str, cmd: &str) -> Tmux {
        let ok = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                name,
                "-x",
                "160",
                "-y",
                "48",
                cmd,
            ])
            .status()
            .expect("tmux");
        assert!(ok.success(), "tmux new-session failed");
        Tmux {
            name: name.into(),
            screens: Vec::new(),
        }
    }
    fn keys(&self, keys: &str) {
        let ok = Command::new("tmux")
            .args(["send-keys", "-t", &self.name, keys])
            .status()
            .expect("tmux send-keys");
        assert!(ok.success());
    }
    fn capture(&mut self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .expect("tmux capture-pane");
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        self.screens.push(s.clone());
        s
    }
    /// Waits for `needle`, answering nothing.
    fn wait_for(&mut self, needle: &str, secs: u64) -> String {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.capture();
            if s.contains(needle) {
                return s;
            }
            if Instant::now() > end {
                panic!("timed out waiting for {needle:?}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

fn tmux_available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn tmux_setup_both_clusters_confirming_each_step_then_roll_back() {
    let Some(sb) =
        common::sandbox_or_skip("tmux_setup_both_clusters_confirming_each_step_then_roll_back")
    else {
        return;
    };
    if !tmux_available() {
        eprintln!("SKIPPED: tmux is not installed");
        return;
    }
    let s = common::write_config(sb, 1, "ec-p256");
    let rt = common::rt();
    let vault = sb.vault();
    // A pre-existing namespace (the wizard finds it, and must leave it on rollback).
    rt.block_on(async {
        let k1 = sb.kube(0).await;
        k1.create_namespace(
            &s.ns(),
            BTreeMap::from([("owner".to_string(), "platform".to_string())]),
        )
        .await
        .expect("pre-existing namespace");
    });

    let log = s.dir.path().join("tui.log");
    let cmd = format!(
        "env -u VAULT_TOKEN -u VAULT_ADDR IVW_TUI_LOG={} IVW_KEYMAP=/nonexistent-keymap.toml NO_COLOR=1 {} --config {}",
        log.display(),
        common::BIN,
        s.config.display()
    );
    let name = common::unique("ivw-tui");
    let mut t = Tmux::start(&name, &cmd);

    // The plan for both clusters appears.
    let screen = t.wait_for("Plan · 30 step(s)", 60);
    assert!(
        screen.contains("cluster1") && screen.contains("cluster2"),
        "{screen}"
    );
    t.wait_for("absent", 30);
    let screen = t.capture();
    assert!(
        screen.contains("cluster1 ✓") && screen.contains("cluster2 ✓"),
        "{screen}"
    );

    // `a`: apply, confirming each step; the first dialog asks to start.
    t.keys("a");
    t.wait_for("confirming each?", 10);
    t.keys("y");
    let end = Instant::now() + Duration::from_secs(240);
    let mut confirmed = 0;
    loop {
        let screen = t.capture();
        if screen.contains("apply this step?") {
            t.keys("y");
            confirmed += 1;
            std::thread::sleep(Duration::from_millis(300));
            continue;
        }
        if screen.contains("apply finished") {
            break;
        }
        assert!(
            Instant::now() < end,
            "apply did not finish; screen:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let screen = t.capture();
    assert!(screen.contains("failed 0"), "{screen}");
    assert!(confirmed >= 20, "only {confirmed} steps were confirmed");
    assert!(!screen.contains("failed  "), "{screen}");

    // End state through the APIs.
    let kv_key = rt.block_on(async {
        for c in ["cluster1", "cluster2"] {
            assert!(
                vault.auth_mount(&s.auth(c)).await.unwrap().is_some(),
                "auth mount {c}"
            );
            assert!(
                vault.read_policy(&s.policy(c)).await.unwrap().is_some(),
                "policy {c}"
            );
        }
        let k2 = sb.kube(1).await;
        assert!(
            k2.get_service_account(&s.ns(), "istiod")
                .await
                .unwrap()
                .is_some()
        );
        let secret = vault
            .kv_read(&s.mount("cluster1"), "istiod-service/certs", 1, None)
            .await
            .unwrap()
            .expect("kv secret");
        secret.data.get("ca_key").cloned().expect("ca_key")
    });
    let sa_token = rt.block_on(async {
        let k1 = sb.kube(0).await;
        let sec = k1
            .get_secret(&s.ns(), "istiod")
            .await
            .unwrap()
            .expect("token secret");
        istio_vault_wizard::kube::token_of(&sec).map(|t| t.expose().to_string())
    });

    // The live panes show fingerprints, never the key.
    t.keys("3");
    t.wait_for("Intermediate CA", 30);
    t.keys("2");

    // `U`: roll back everything, confirmed.
    t.keys("U");
    t.wait_for("Roll back everything the wizard created?", 10);
    t.keys("y");
    let screen = t.wait_for("rollback finished", 120);
    assert!(screen.contains("failed 0"), "{screen}");
    rt.block_on(async {
        for c in ["cluster1", "cluster2"] {
            assert!(
                vault.auth_mount(&s.auth(c)).await.unwrap().is_none(),
                "auth mount {c} left"
            );
            assert!(
                vault.secret_mount(&s.mount(c)).await.unwrap().is_none(),
                "kv mount {c} left"
            );
            assert!(
                vault.read_policy(&s.policy(c)).await.unwrap().is_none(),
                "policy {c} left"
            );
        }
        let k1 = sb.kube(0).await;
        let ns = k1
            .get_namespace(&s.ns())
            .await
            .unwrap()
            .expect("pre-existing namespace kept");
        assert!(
            ns.metadata.deletion_timestamp.is_none(),
            "pre-existing namespace is being deleted"
        );
        assert_eq!(
            ns.metadata
                .labels
                .unwrap_or_default()
                .get("owner")
                .map(String::as_str),
            Some("platform")
        );
    });

    t.keys("q");
    std::thread::sleep(Duration::from_millis(500));

    // No secret anywhere on any screen.
    let token = sb.root_token.expose().to_string();
    let key_body: String = kv_key
        .lines()
        .find(|l| !l.starts_with("-----") && l.len() > 40)
        .unwrap_or_default()
        .chars()
        .take(40)
        .collect();
    assert!(!key_body.is_empty());
    for (i, scr) in t.screens.iter().enumerate() {
        assert!(!scr.contains(&token), "screen {i} shows the Vault token");
        assert!(
            !scr.contains("PRIVATE KEY"),
            "screen {i} shows a private key header"
        );
        assert!(!scr.contains(&key_body), "screen {i} shows the CA key");
        if let Some(tok) = &sa_token {
            assert!(
                !scr.contains(&tok[..40.min(tok.len())]),
                "screen {i} shows the SA token"
            );
        }
    }
    // Tracing went to the file, not the screen.
    assert!(
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("tui start")
    );
}
