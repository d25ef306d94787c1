//! Issue 7: the generated annotations, turned into a real `bao agent` configuration as the
//! injector would, render the four PEMs from Vault with the real istiod ServiceAccount
//! token, for KV v1 and v2; a broken template key makes the agent fail loudly.

mod common;

use std::process::Command;

use common::{sandbox_or_skip, write_config};
use istio_vault_wizard::istio::{pod_annotations, wiring_for};

fn run_agent(kv: u8, break_key: bool) -> (bool, String, std::path::PathBuf, common::Setup) {
    let sb = sandbox_or_skip("bao agent").expect("checked by caller");
    let s = write_config(sb, kv, "ec-p256");
    let out = s.run(&["apply", "--yes", "--cluster", "cluster1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = istio_vault_wizard::config::load(&s.config).expect("config");
    let mut annotations = pod_annotations(&wiring_for(&config.clusters[0], kv));
    if break_key {
        let k = "vault.hashicorp.com/agent-inject-template-ca-key.pem".to_string();
        let t = annotations[&k].replace("ca_key", "ca_kee");
        annotations.insert(k, t);
    }
    let run = common::istiod::render_with_agent(sb, &s, 0, &annotations);
    (run.ok, run.log, run.rendered, s)
}

/// Keeps a copy of a real agent log when IVW_AGENT_LOG_DIR is set (fixture capture).
fn dump(name: &str, log: &str) {
    if let Some(dir) = std::env::var_os("IVW_AGENT_LOG_DIR") {
        let _ = std::fs::write(std::path::Path::new(&dir).join(name), log);
    }
}

fn renders_the_bundle(kv: u8) {
    if sandbox_or_skip("bao agent").is_none() {
        return;
    }
    let (ok, log, rendered, s) = run_agent(kv, false);
    assert!(ok, "bao agent failed: {log}");
    dump(&format!("bao-agent-kv{kv}-success.log"), &log);
    // The log recogniser reads the real agent's output as a success.
    let sum =
        istio_vault_wizard::istio::summarise_for(log.lines(), &rendered.display().to_string());
    assert!(
        sum.agent_authenticated && sum.status == istio_vault_wizard::istio::LogStatus::Success,
        "{sum:?}\n{log}"
    );
    let certs = s.state().join("certs/cluster1");
    for f in [
        "ca-key.pem",
        "ca-cert.pem",
        "root-cert.pem",
        "cert-chain.pem",
    ] {
        let got = std::fs::read_to_string(rendered.join(f))
            .unwrap_or_else(|e| panic!("{f} not rendered ({e}): {log}"));
        let want = std::fs::read_to_string(certs.join(f)).expect("generated");
        assert_eq!(
            got.trim_end(),
            want.trim_end(),
            "{f} equals the PEM in Vault"
        );
    }
    let check = Command::new(common::BIN)
        .args(["certs", "check"])
        .arg(&rendered)
        .output()
        .expect("check");
    assert!(
        check.status.success(),
        "rendered bundle passes certs check: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    let rb = s.run(&["rollback", "--yes"]);
    assert!(rb.status.success());
}

#[test]
fn agent_renders_the_four_pems_from_kv1() {
    renders_the_bundle(1);
}

#[test]
fn agent_renders_the_four_pems_from_kv2() {
    renders_the_bundle(2);
}

#[test]
fn broken_template_key_fails_loudly_because_of_error_on_missing_key() {
    if sandbox_or_skip("bao agent").is_none() {
        return;
    }
    let (ok, log, rendered, s) = run_agent(2, true);
    assert!(!ok, "the agent must fail on a missing key: {log}");
    dump("bao-agent-kv2-missing-key.log", &log);
    let sum = istio_vault_wizard::istio::summarise(log.lines());
    match &sum.status {
        istio_vault_wizard::istio::LogStatus::Failure { event, .. } => assert_eq!(
            event,
            &istio_vault_wizard::istio::LogEvent::MissingKey {
                key: Some("ca_kee".into())
            },
            "{log}"
        ),
        other => panic!("{other:?}\n{log}"),
    }
    assert!(
        log.contains("ca_kee") || log.contains("missing key") || log.contains("no entry"),
        "{log}"
    );
    let key = std::fs::read_to_string(rendered.join("ca-key.pem")).unwrap_or_default();
    assert!(
        !key.contains("<no value>"),
        "nothing rendered with <no value>"
    );
    let rb = s.run(&["rollback", "--yes"]);
    assert!(rb.status.success());
}
