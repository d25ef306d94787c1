//! Issue 4 fault injection, on a sandbox of its own (servers are stopped on purpose):
//! Vault, then a kube-apiserver, die between steps; the wizard itself is killed mid-step.
//! Apply fails naming the step, resumes after restart, and rollback keeps what pre-existed.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{BIN, Sandbox, rt, sandbox_or_skip, write_config};

fn own_sandbox(tmp: &Path) -> Sandbox {
    let dir = tmp.join("faults");
    let out = std::process::Command::new(BIN)
        .args(["sandbox", "up", "-q", "--state-dir"])
        .arg(&dir)
        .args(["--watch-pid", &std::process::id().to_string()])
        .output()
        .expect("up");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::read_sandbox(&dir, None)
}

fn sandbox_cmd(sb: &Sandbox, verb: &str, component: &str) {
    let out = std::process::Command::new(BIN)
        .args(["sandbox", verb, component, "--state-dir"])
        .arg(&sb.dir)
        .output()
        .expect("cmd");
    assert!(
        out.status.success(),
        "sandbox {verb} {component}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn apply_survives_dead_servers_and_a_killed_wizard() {
    if sandbox_or_skip("faults").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let sb = own_sandbox(tmp.path());
    let s = write_config(&sb, 1, "ec-p256");

    // Pre-existing objects that must survive everything below.
    let (other_mount, other_policy) = (format!("keep-{}", s.tag), format!("keep-{}", s.tag));
    rt().block_on(async {
        let v = sb.vault();
        v.enable_kv(&other_mount, 1).await.expect("mount");
        v.kv_write(
            &other_mount,
            "x",
            1,
            &BTreeMap::from([("k".to_string(), "v".to_string())]),
            None,
        )
        .await
        .expect("kv");
        v.write_policy(
            &other_policy,
            "path \"secret/*\" { capabilities = [\"read\"] }",
        )
        .await
        .expect("policy");
        sb.kube(0)
            .await
            .create_namespace(
                &s.ns(),
                BTreeMap::from([("pre".to_string(), "existing".to_string())]),
            )
            .await
            .expect("ns");
    });

    // 1. Kubernetes steps done, then Vault dies before the Vault steps.
    let k8s_steps = [
        "namespace",
        "service-account",
        "token-secret",
        "reviewer-binding",
        "read-credentials",
    ];
    let mut args = vec!["apply", "--yes"];
    for st in &k8s_steps {
        args.extend(["--step", st]);
    }
    let out = s.run(&args);
    assert!(out.status.success(), "{}", text(&out));
    sandbox_cmd(&sb, "stop", "vault");
    let out = s.run(&["apply", "--yes"]);
    assert_ne!(out.status.code(), Some(0));
    let t = text(&out);
    assert!(t.contains("cannot reach Vault"), "a clear message: {t}");
    assert!(!t.contains("panicked"), "{t}");
    sandbox_cmd(&sb, "start", "vault");

    // 2. Vault back; cluster2's kube-apiserver dies: cluster1 completes, cluster2 fails
    //    naming its step.
    sandbox_cmd(&sb, "stop", "cluster2");
    let out = s.run(&["apply", "--yes", "--cluster", "cluster1"]);
    assert!(out.status.success(), "cluster1 completes: {}", text(&out));
    let out = s.run(&["apply", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("cluster2"),
        "names the cluster: {}",
        text(&out)
    );
    sandbox_cmd(&sb, "start", "cluster2");

    // 3. The wizard is SIGKILLed while a step is in flight (journal says "started").
    let mut child = std::process::Command::new(BIN)
        .args(["apply", "--yes", "--cluster", "cluster2", "--config"])
        .arg(&s.config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let journal = s.state().join("journal.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut killed_mid_step = false;
    while Instant::now() < deadline {
        let j = std::fs::read_to_string(&journal).unwrap_or_default();
        if j.contains("\"cluster2\"") && j.contains("\"started\"") {
            let _ = child.kill();
            killed_mid_step = true;
            break;
        }
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.wait();
    assert!(
        killed_mid_step,
        "the wizard was killed while the journal recorded a started step"
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&journal).expect("journal"))
            .expect("journal is valid JSON after a kill");
    assert!(j["entries"].as_array().is_some_and(|e| !e.is_empty()));

    // Resume: apply completes everything, a second apply changes nothing.
    let out = s.run(&["apply", "--yes"]);
    assert!(out.status.success(), "resume: {}", text(&out));
    let out = s.run(&["apply", "--yes", "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["changed"], false, "{doc}");

    // Rollback from here keeps what pre-existed.
    let out = s.run(&["rollback", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    rt().block_on(async {
        let v = sb.vault();
        assert!(
            v.kv_read(&other_mount, "x", 1, None)
                .await
                .expect("read")
                .is_some()
        );
        assert!(v.read_policy(&other_policy).await.expect("read").is_some());
        let ns = sb
            .kube(0)
            .await
            .get_namespace(&s.ns())
            .await
            .expect("get")
            .expect("pre-existing namespace kept");
        assert_eq!(
            ns.metadata
                .labels
                .unwrap_or_default()
                .get("pre")
                .map(String::as_str),
            Some("existing")
        );
        for c in ["cluster1", "cluster2"] {
            assert!(v.auth_mount(&s.auth(c)).await.expect("list").is_none());
            assert!(v.secret_mount(&s.mount(c)).await.expect("list").is_none());
        }
    });
    let down = std::process::Command::new(BIN)
        .args(["sandbox", "down", "--state-dir"])
        .arg(&sb.dir)
        .output()
        .expect("down");
    assert!(down.status.success());
}
