//! Issue 4 acceptance on the sandbox: headless apply / plan / rollback / export against the
//! real OpenBao and kube-apiservers.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::{rt, sandbox_or_skip, unique, write_config};
use istio_vault_wizard::secret::Secret;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

fn read_file(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn apply_and_prove(kv: u8) {
    let Some(sb) = sandbox_or_skip("apply") else {
        return;
    };
    let s = write_config(sb, kv, "ec-p256");
    let out = s.run(&["apply", "--yes", "-o", "json"]);
    assert!(out.status.success(), "apply failed: {}", text(&out));
    let doc = json(&out);
    assert_eq!(doc["changed"], true);

    rt().block_on(async {
        let vault = sb.vault();
        let mut jwts = Vec::new();
        for (i, cluster) in ["cluster1", "cluster2"].iter().enumerate() {
            let k = sb.kube(i).await;
            let secret = k
                .get_secret(&s.ns(), "istiod")
                .await
                .expect("get")
                .expect("token secret");
            let jwt = istio_vault_wizard::kube::token_of(&secret).expect("token");
            let login = vault
                .kubernetes_login(&s.auth(cluster), "istiod", &jwt)
                .await
                .expect("login");
            let mut pols = login.policies.clone();
            pols.sort();
            assert_eq!(pols, vec!["default".to_string(), s.policy(cluster)]);
            let data = vault
                .kv_read(
                    &s.mount(cluster),
                    "istiod-service/certs",
                    kv,
                    Some(&login.token),
                )
                .await
                .expect("read")
                .expect("secret");
            let dir = s.state().join("certs").join(cluster);
            assert_eq!(data.data["ca_key"], read_file(&dir.join("ca-key.pem")));
            assert_eq!(data.data["ca_cert"], read_file(&dir.join("ca-cert.pem")));
            assert_eq!(
                data.data["cert_chain"],
                read_file(&dir.join("cert-chain.pem"))
            );
            assert_eq!(
                data.data["root_cert"],
                read_file(&dir.join("root-cert.pem"))
            );
            jwts.push(jwt);
        }
        let refused = vault
            .kubernetes_login(&s.auth("cluster2"), "istiod", &jwts[0])
            .await;
        assert!(
            refused.is_err(),
            "cluster1's JWT must be refused at cluster2's auth path"
        );
    });

    let again = s.run(&["apply", "--yes", "-o", "json"]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        json(&again)["changed"],
        false,
        "second apply changes nothing"
    );
    let again_text = s.run(&["apply", "--yes"]);
    assert!(
        text(&again_text).contains("nothing to do"),
        "{}",
        text(&again_text)
    );
    let plan = s.run(&["plan", "-o", "json"]);
    assert!(plan.status.success(), "{}", text(&plan));
    for row in json(&plan)["steps"].as_array().expect("steps") {
        assert_eq!(
            row["state"]["state"], "matches",
            "after apply every step matches: {row}"
        );
    }
    let rb = s.run(&["rollback", "--yes"]);
    assert!(rb.status.success(), "{}", text(&rb));
}

#[test]
fn apply_kv1_sets_up_both_clusters_and_login_reads_the_bundle() {
    apply_and_prove(1);
}

#[test]
fn apply_kv2_sets_up_both_clusters_and_login_reads_the_bundle() {
    apply_and_prove(2);
}

#[test]
fn rollback_removes_only_what_the_wizard_created() {
    let Some(sb) = sandbox_or_skip("rollback") else {
        return;
    };
    let s = write_config(sb, 1, "ec-p256");
    rt().block_on(async {
        let vault = sb.vault();
        let k1 = sb.kube(0).await;
        // Pre-existing: our own namespace (with a label), another KV mount with data, an
        // unrelated policy, a role at another auth path.
        k1.create_namespace(&s.ns(), BTreeMap::from([("owner".to_string(), "platform".to_string())])).await.expect("ns");
        let other_mount = format!("other-{}", s.tag);
        vault.enable_kv(&other_mount, 1).await.expect("mount");
        vault.kv_write(&other_mount, "keep", 1, &BTreeMap::from([("a".to_string(), "b".to_string())]), None).await.expect("kv");
        let other_policy = format!("unrelated-{}", s.tag);
        vault.write_policy(&other_policy, "path \"secret/x\" { capabilities = [\"read\"] }").await.expect("policy");
        let other_auth = format!("other-auth-{}", s.tag);
        vault.enable_auth(&other_auth, "kubernetes").await.expect("auth");
        vault.write_role(&other_auth, "r", &serde_json::json!({"bound_service_account_names": ["x"], "bound_service_account_namespaces": ["y"]})).await.expect("role");

        let before_ns = serde_json::to_value(k1.get_namespace(&s.ns()).await.expect("get").expect("ns")).expect("json");
        let before_kv = vault.kv_read(&other_mount, "keep", 1, None).await.expect("read");
        let before_policy = vault.read_policy(&other_policy).await.expect("read");
        let before_role = vault.read_role(&other_auth, "r").await.expect("read");

        let out = s.run(&["apply", "--yes"]);
        assert!(out.status.success(), "{}", text(&out));
        let status = s.run(&["status"]);
        assert!(text(&status).contains("found"), "journal records the pre-existing namespace: {}", text(&status));
        let rb = s.run(&["rollback", "--yes", "-o", "json"]);
        assert!(rb.status.success(), "{}", text(&rb));

        let after_ns = serde_json::to_value(k1.get_namespace(&s.ns()).await.expect("get").expect("namespace kept")).expect("json");
        assert_eq!(before_ns["metadata"]["uid"], after_ns["metadata"]["uid"]);
        assert_eq!(before_ns["metadata"]["labels"], after_ns["metadata"]["labels"]);
        assert_eq!(vault.kv_read(&other_mount, "keep", 1, None).await.expect("read"), before_kv);
        assert_eq!(vault.read_policy(&other_policy).await.expect("read"), before_policy);
        assert_eq!(vault.read_role(&other_auth, "r").await.expect("read"), before_role);

        // Everything the wizard created is gone.
        for cluster in ["cluster1", "cluster2"] {
            assert!(vault.auth_mount(&s.auth(cluster)).await.expect("list").is_none(), "auth mount removed");
            assert!(vault.secret_mount(&s.mount(cluster)).await.expect("list").is_none(), "kv mount removed");
            assert!(vault.read_policy(&s.policy(cluster)).await.expect("read").is_none(), "policy removed");
        }
        assert!(k1.get_service_account(&s.ns(), "istiod").await.expect("get").is_none());
        assert!(k1.get_secret(&s.ns(), "istiod").await.expect("get").is_none());
        assert!(k1.get_cluster_role_binding(&format!("rtb-{}", s.tag)).await.expect("get").is_none());
        let k2 = sb.kube(1).await;
        let ns2 = k2.get_namespace(&s.ns()).await.expect("get");
        assert!(ns2.is_none() || ns2.is_some_and(|n| n.metadata.deletion_timestamp.is_some()), "created namespace deleted");
        assert!(!s.state().join("certs").exists(), "generated certificates removed");
    });
}

#[test]
fn kv1_conflict_is_refused_with_exit_3_and_kv2_conflict_writes_a_new_version_restored_by_rollback()
{
    let Some(sb) = sandbox_or_skip("conflicts") else {
        return;
    };
    rt().block_on(async {
        let vault = sb.vault();
        // KV v1: a different secret already there.
        let s = write_config(sb, 1, "ec-p256");
        vault
            .enable_kv(&s.mount("cluster1"), 1)
            .await
            .expect("mount");
        let foreign = BTreeMap::from([("ca_cert".to_string(), "someone else's".to_string())]);
        vault
            .kv_write(
                &s.mount("cluster1"),
                "istiod-service/certs",
                1,
                &foreign,
                None,
            )
            .await
            .expect("write");
        let out = s.run(&["apply", "--yes", "--cluster", "cluster1"]);
        assert_eq!(
            out.status.code(),
            Some(3),
            "conflict needs a decision: {}",
            text(&out)
        );
        assert!(text(&out).contains("KV v1"), "{}", text(&out));
        let back = vault
            .kv_read(&s.mount("cluster1"), "istiod-service/certs", 1, None)
            .await
            .expect("read")
            .expect("kept");
        assert_eq!(back.data, foreign, "not overwritten");
        assert!(!text(&out).contains("panicked"));
        let rb = s.run(&["rollback", "--yes"]);
        assert!(rb.status.success(), "{}", text(&rb));
        assert_eq!(
            vault
                .kv_read(&s.mount("cluster1"), "istiod-service/certs", 1, None)
                .await
                .expect("read")
                .expect("kept")
                .data,
            foreign
        );
        vault
            .disable_mount(&s.mount("cluster1"))
            .await
            .expect("cleanup");
    });
}

#[test]
fn bad_input_gives_specific_errors_and_no_panic() {
    let Some(sb) = sandbox_or_skip("bad input") else {
        return;
    };
    let s = write_config(sb, 1, "ec-p256");
    let check = |args: &[&str], config: &str, code: i32, needle: &str| {
        let p = s.dir.path().join(format!("bad-{}.toml", unique("c")));
        std::fs::write(&p, config).expect("write");
        let out = std::process::Command::new(common::BIN)
            .args(args)
            .arg("--config")
            .arg(&p)
            .env_remove("VAULT_TOKEN")
            .env_remove("VAULT_ADDR")
            .env("HOME", s.dir.path())
            .output()
            .expect("run");
        let t = text(&out);
        assert_eq!(out.status.code(), Some(code), "{needle}: {t}");
        assert!(t.contains(needle), "expected {needle:?} in: {t}");
        assert!(!t.contains("panicked"), "{t}");
    };
    let good = read_file(&s.config);
    check(&["plan"], "[vault\naddress = 1\n", 2, ":1:");
    check(
        &["plan"],
        &good.replace("kv_version = 1", "kv_version = 1\nbogus = true"),
        2,
        "bogus",
    );
    check(
        &["plan"],
        &good.replace(
            &sb.kubeconfigs[0].display().to_string(),
            "/nonexistent/kubecfg.yml",
        ),
        1,
        "/nonexistent/kubecfg.yml",
    );
    check(
        &["plan"],
        &good.replace("context = \"cluster1\"", "context = \"nope\""),
        1,
        "context \"nope\" not found",
    );
    check(
        &["plan"],
        &good.replace(&sb.vault_addr, "http://127.0.0.1:9"),
        1,
        "cannot reach Vault",
    );
    let wrong_token = s.dir.path().join("wrong-token");
    std::fs::write(&wrong_token, "s.wrongtoken").expect("write");
    check(
        &["plan"],
        &good.replace(
            &sb.dir.join("root-token").display().to_string(),
            &wrong_token.display().to_string(),
        ),
        1,
        "403",
    );

    // A token without permission to manage auth methods.
    let limited = rt().block_on(async {
        let vault = sb.vault();
        let name = unique("limited");
        vault.write_policy(&name, "path \"sys/auth\" { capabilities = [\"read\"] }\npath \"sys/mounts\" { capabilities = [\"read\"] }\npath \"sys/policy/*\" { capabilities = [\"read\"] }\npath \"auth/*\" { capabilities = [\"read\"] }\npath \"kubernetes-*\" { capabilities = [\"read\"] }").await.expect("policy");
        let v = vault
            .raw(reqwest::Method::POST, "auth/token/create", Some(&serde_json::json!({"policies": [name], "ttl": "1h"})), None, "create token")
            .await
            .expect("token");
        Secret::new(v["auth"]["client_token"].as_str().expect("client token"))
    });
    let limited_file = s.dir.path().join("limited-token");
    std::fs::write(&limited_file, limited.expose()).expect("write");
    let cfg = good.replace(
        &sb.dir.join("root-token").display().to_string(),
        &limited_file.display().to_string(),
    );
    let p = s.dir.path().join("limited.toml");
    std::fs::write(&p, &cfg).expect("write");
    let out = std::process::Command::new(common::BIN)
        .args(["apply", "--yes", "--config"])
        .arg(&p)
        .output()
        .expect("run");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("auth-mount") && t.contains("403") && t.contains("permission"),
        "names the step and the denial: {t}"
    );
    assert!(!t.contains("panicked"));
    let rb = std::process::Command::new(common::BIN)
        .args(["rollback", "--yes", "--config"])
        .arg(&s.config)
        .output()
        .expect("run");
    assert!(rb.status.success(), "{}", text(&rb));
    let _ = std::fs::remove_dir_all(s.state());
    let _ = Duration::from_secs(0);
}

#[test]
fn no_token_or_private_key_appears_in_output_or_journal() {
    let Some(sb) = sandbox_or_skip("secrets scan") else {
        return;
    };
    let s = write_config(sb, 2, "ec-p256");
    let outs = [
        s.run(&["apply", "--yes"]),
        s.run(&["plan"]),
        s.run(&["plan", "-o", "json"]),
        s.run(&["status", "-o", "json"]),
    ];
    let jwt = rt().block_on(async {
        let k = sb.kube(0).await;
        let secret = k
            .get_secret(&s.ns(), "istiod")
            .await
            .expect("get")
            .expect("secret");
        istio_vault_wizard::kube::token_of(&secret).expect("token")
    });
    let key1 = read_file(&s.state().join("certs/cluster1/ca-key.pem"));
    let root_key = read_file(&s.state().join("certs/root-key.pem"));
    let mut haystacks: Vec<String> = outs.iter().map(text).collect();
    haystacks.push(read_file(&s.state().join("journal.json")));
    for h in &haystacks {
        for secret in [jwt.expose(), sb.root_token.expose()] {
            assert!(!h.contains(secret), "a token leaked into output/journal");
        }
        for key in [&key1, &root_key] {
            let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
            assert!(
                !h.contains(&body[..40.min(body.len())]),
                "private key material leaked"
            );
        }
        assert!(!h.contains("PRIVATE KEY"), "private key marker leaked");
    }
    use std::os::unix::fs::PermissionsExt;
    for p in [
        s.state().join("certs/cluster1/ca-key.pem"),
        s.state().join("certs/root-key.pem"),
        s.state().join("journal.json"),
    ] {
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", p.display());
    }
    let rb = s.run(&["rollback", "--yes"]);
    assert!(rb.status.success(), "{}", text(&rb));
}

#[test]
fn exported_runbook_reaches_the_same_end_state_with_bao_and_kubectl() {
    let Some(sb) = sandbox_or_skip("runbook") else {
        return;
    };
    let s = write_config(sb, s_kv(), "ec-p256");
    let out_dir = s.dir.path().join("export");
    let out = s.run(&["export", "--out", out_dir.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", text(&out));
    let runbook = out_dir.join("runbook.sh");
    let body = read_file(&runbook);
    assert!(
        !body.contains(sb.root_token.expose()),
        "no token in the runbook"
    );
    let bins = istio_vault_wizard::sandbox::ServerBinaries::locate(None).expect("bins");
    let run = std::process::Command::new("bash")
        .arg(&runbook)
        .env("VAULT_ADDR", &sb.vault_addr)
        .env("VAULT_TOKEN", sb.root_token.expose())
        .env("VAULT_CLI", &bins.bao)
        .env("WIZARD", common::BIN)
        .env("CERTS_DIR", s.state().join("certs"))
        .output()
        .expect("bash");
    assert!(run.status.success(), "runbook failed: {}", text(&run));
    // The wizard sees the runbook's end state as its own: every step present and matching.
    let plan = s.run(&["plan", "-o", "json"]);
    assert!(plan.status.success(), "{}", text(&plan));
    for row in json(&plan)["steps"].as_array().expect("steps") {
        assert_eq!(row["state"]["state"], "matches", "{row}");
    }
    let _ = s.kv;
    // Clean up what the runbook made (not journaled: the wizard did not create it).
    rt().block_on(async {
        let vault = sb.vault();
        for (i, c) in ["cluster1", "cluster2"].iter().enumerate() {
            vault.disable_auth(&s.auth(c)).await.expect("cleanup");
            vault.disable_mount(&s.mount(c)).await.expect("cleanup");
            vault.delete_policy(&s.policy(c)).await.expect("cleanup");
            let k = sb.kube(i).await;
            k.delete_namespace(&s.ns()).await.expect("cleanup");
            k.delete_cluster_role_binding(&format!("rtb-{}", s.tag))
                .await
                .expect("cleanup");
        }
    });
}

fn s_kv() -> u8 {
    2
}
