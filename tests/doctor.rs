//! Issue 6 acceptance: from a correct apply, break one thing through the real APIs; the
//! doctor names that link first; the fix, applied by the test, makes it pass again.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Sandbox, Setup, rt, sandbox_or_skip, write_config};
use istio_vault_wizard::secret::Secret;
use serde_json::{Value, json};

fn doctor(s: &Setup) -> (i32, Value) {
    let out = s.run(&["doctor", "--cluster", "cluster1", "-o", "json"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor output is not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), doc)
}

fn first_failure(doc: &Value) -> Option<(String, String)> {
    doc["clusters"][0]["links"]
        .as_array()?
        .iter()
        .find(|l| l["status"] == "FAIL")
        .map(|l| {
            (
                l["id"].as_str().unwrap_or_default().to_string(),
                l["fix"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// A healthy cluster1 setup.
fn healthy(sb: &Sandbox, kv: u8) -> Setup {
    let s = write_config(sb, kv, "ec-p256");
    let out = s.run(&["apply", "--yes", "--cluster", "cluster1"]);
    assert!(
        out.status.success(),
        "apply: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, doc) = doctor(&s);
    assert_eq!(code, 0, "healthy setup: {doc:#}");
    s
}

fn assert_broken(s: &Setup, link: &str, fix_contains: &str) {
    let (code, doc) = doctor(s);
    assert_eq!(code, 1, "{doc:#}");
    let (id, fix) = first_failure(&doc).unwrap_or_else(|| panic!("no failing link: {doc:#}"));
    assert_eq!(id, link, "first failing link: {doc:#}");
    assert!(
        fix.contains(fix_contains),
        "fix {fix:?} should mention {fix_contains:?}"
    );
}

fn assert_healed(s: &Setup) {
    let (code, doc) = doctor(s);
    assert_eq!(code, 0, "after the fix every link is OK: {doc:#}");
}

fn cleanup(s: &Setup) {
    let out = s.run(&["rollback", "--yes"]);
    assert!(
        out.status.success(),
        "rollback: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn jwt(sb: &Sandbox, s: &Setup) -> Secret {
    let k = sb.kube(0).await;
    k.wait_for_token(&s.ns(), "istiod", Duration::from_secs(30), &|_| {})
        .await
        .expect("token")
}

fn role_body(s: &Setup, sa: &str, ns: &str) -> Value {
    json!({
        "bound_service_account_names": [sa],
        "bound_service_account_namespaces": [ns],
        "token_policies": [s.policy("cluster1")],
        "token_ttl": "24h",
    })
}

#[test]
fn all_links_ok_on_a_healthy_setup_with_the_chain_in_order() {
    let Some(sb) = sandbox_or_skip("doctor healthy") else {
        return;
    };
    let s = healthy(sb, 1);
    let (_, doc) = doctor(&s);
    let ids: Vec<&str> = doc["clusters"][0]["links"]
        .as_array()
        .expect("links")
        .iter()
        .filter_map(|l| l["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "kubernetes-identity",
            "token-review",
            "auth-mount",
            "role",
            "login",
            "capabilities",
            "read",
            "wiring"
        ]
    );
    let text = s.run(&["doctor", "--cluster", "cluster1"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("all links OK"));
    cleanup(&s);
}

#[test]
fn deleted_cluster_role_binding_is_pinned_to_kubernetes_identity() {
    let Some(sb) = sandbox_or_skip("crb") else {
        return;
    };
    let s = healthy(sb, 1);
    let crb = format!("rtb-{}", s.tag);
    rt().block_on(async {
        sb.kube(0)
            .await
            .delete_cluster_role_binding(&crb)
            .await
            .expect("delete")
    });
    assert_broken(&s, "kubernetes-identity", "system:auth-delegator");
    rt().block_on(async {
        sb.kube(0)
            .await
            .create_cluster_role_binding(&crb, "system:auth-delegator", &s.ns(), "istiod")
            .await
            .expect("fix")
    });
    assert_healed(&s);
    cleanup(&s);
}

#[test]
fn role_bound_to_a_wrong_service_account_name_is_pinned_to_the_role() {
    let Some(sb) = sandbox_or_skip("role name") else {
        return;
    };
    let s = healthy(sb, 1);
    let vault = sb.vault();
    rt().block_on(async {
        vault
            .write_role(
                &s.auth("cluster1"),
                "istiod",
                &role_body(&s, "istio-pilot", &s.ns()),
            )
            .await
            .expect("break")
    });
    assert_broken(&s, "role", "bound_service_account_names=istiod");
    rt().block_on(async {
        vault
            .write_role(
                &s.auth("cluster1"),
                "istiod",
                &role_body(&s, "istiod", &s.ns()),
            )
            .await
            .expect("fix")
    });
    assert_healed(&s);
    cleanup(&s);
}

#[test]
fn role_bound_to_a_wrong_namespace_is_pinned_to_the_role() {
    let Some(sb) = sandbox_or_skip("role ns") else {
        return;
    };
    let s = healthy(sb, 1);
    let vault = sb.vault();
    rt().block_on(async {
        vault
            .write_role(
                &s.auth("cluster1"),
                "istiod",
                &role_body(&s, "istiod", "istio-system-typo"),
            )
            .await
            .expect("break")
    });
    assert_broken(
        &s,
        "role",
        &format!("bound_service_account_namespaces={}", s.ns()),
    );
    rt().block_on(async {
        vault
            .write_role(
                &s.auth("cluster1"),
                "istiod",
                &role_body(&s, "istiod", &s.ns()),
            )
            .await
            .expect("fix")
    });
    assert_healed(&s);
    cleanup(&s);
}

#[test]
fn kv2_mount_with_a_v1_style_policy_is_pinned_to_capabilities() {
    let Some(sb) = sandbox_or_skip("kv2 policy") else {
        return;
    };
    let s = healthy(sb, 2);
    let vault = sb.vault();
    let v1_path = format!("{}/istiod-service/certs", s.mount("cluster1"));
    rt().block_on(async {
        vault
            .write_policy(
                &s.policy("cluster1"),
                &format!("path \"{v1_path}\" {{\n  capabilities = [\"read\"]\n}}\n"),
            )
            .await
            .expect("break")
    });
    assert_broken(&s, "capabilities", "/data/istiod-service/certs");
    let good = istio_vault_wizard::plan::steps::policy_text(
        2,
        "cluster1",
        &format!("{}/data/istiod-service/certs", s.mount("cluster1")),
    );
    rt().block_on(async {
        vault
            .write_policy(&s.policy("cluster1"), &good)
            .await
            .expect("fix")
    });
    assert_healed(&s);
    cleanup(&s);
}

#[test]
fn auth_config_with_another_clusters_ca_is_pinned_to_the_auth_mount() {
    let Some(sb) = sandbox_or_skip("foreign ca") else {
        return;
    };
    let s = healthy(sb, 1);
    let vault = sb.vault();
    rt().block_on(async {
        let k1 = sb.kube(0).await;
        let k2 = sb.kube(1).await;
        let token = jwt(sb, &s).await;
        let wrong_ca = k2.ca_pem.clone().expect("ca2");
        vault
            .write_kubernetes_config(&s.auth("cluster1"), &k1.api_url, &wrong_ca, &token)
            .await
            .expect("break");
    });
    assert_broken(&s, "auth-mount", "kubernetes_ca_cert");
    rt().block_on(async {
        let k1 = sb.kube(0).await;
        let token = jwt(sb, &s).await;
        vault
            .write_kubernetes_config(
                &s.auth("cluster1"),
                &k1.api_url,
                &k1.ca_pem.clone().expect("ca"),
                &token,
            )
            .await
            .expect("fix");
    });
    assert_healed(&s);
    cleanup(&s);
}

#[test]
fn deleted_token_secret_is_pinned_to_kubernetes_identity() {
    let Some(sb) = sandbox_or_skip("token secret") else {
        return;
    };
    let s = healthy(sb, 1);
    rt().block_on(async {
        sb.kube(0)
            .await
            .delete_secret(&s.ns(), "istiod")
            .await
            .expect("break")
    });
    assert_broken(&s, "kubernetes-identity", "token_reviewer_jwt");
    // The fix: a new token Secret, and Vault given the new reviewer token.
    rt().block_on(async {
        let k1 = sb.kube(0).await;
        k1.create_token_secret(&s.ns(), "istiod", "istiod")
            .await
            .expect("secret");
        let token = jwt(sb, &s).await;
        sb.vault()
            .write_kubernetes_config(
                &s.auth("cluster1"),
                &k1.api_url,
                &k1.ca_pem.clone().expect("ca"),
                &token,
            )
            .await
            .expect("config");
    });
    assert_healed(&s);
    cleanup(&s);
}

fn stored(sb: &Sandbox, s: &Setup) -> BTreeMap<String, String> {
    rt().block_on(async {
        sb.vault()
            .kv_read(&s.mount("cluster1"), "istiod-service/certs", s.kv, None)
            .await
            .expect("read")
            .expect("secret")
            .data
    })
}

fn store(sb: &Sandbox, s: &Setup, data: &BTreeMap<String, String>) {
    rt().block_on(async {
        sb.vault()
            .kv_write(
                &s.mount("cluster1"),
                "istiod-service/certs",
                s.kv,
                data,
                None,
            )
            .await
            .expect("write");
    });
}

#[test]
fn secret_without_ca_key_is_pinned_to_read() {
    let Some(sb) = sandbox_or_skip("missing key") else {
        return;
    };
    let s = healthy(sb, 1);
    let good = stored(sb, &s);
    let mut broken = good.clone();
    broken.remove("ca_key");
    store(sb, &s, &broken);
    assert_broken(&s, "read", "ca_key=@");
    store(sb, &s, &good);
    assert_healed(&s);
    cleanup(&s);
}

#[test]
fn expired_intermediate_in_vault_is_pinned_to_read() {
    let Some(sb) = sandbox_or_skip("expired") else {
        return;
    };
    let s = healthy(sb, 1);
    let good = stored(sb, &s);
    // An intermediate that expired yesterday, signed by the same root.
    let root_key = std::fs::read_to_string(s.state().join("certs/root-key.pem")).expect("root key");
    let root_pem = good["root_cert"].clone();
    let root_kp = rcgen::KeyPair::from_pem(&root_key).expect("key");
    let issuer = rcgen::Issuer::from_ca_cert_pem(&root_pem, &root_kp).expect("issuer");
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "Intermediate CA");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(60);
    p.not_after = now - time::Duration::days(1);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = p.signed_by(&key, &issuer).expect("sign");
    let mut expired = good.clone();
    expired.insert("ca_key".into(), key.serialize_pem());
    expired.insert("ca_cert".into(), cert.pem());
    expired.insert("cert_chain".into(), format!("{}{}", cert.pem(), root_pem));
    store(sb, &s, &expired);
    assert_broken(&s, "read", "certs generate");
    let (_, doc) = doctor(&s);
    assert!(
        doc.to_string().contains("expired"),
        "evidence names the expiry: {doc:#}"
    );
    store(sb, &s, &good);
    assert_healed(&s);
    cleanup(&s);
}

#[test]
fn istiod_deployment_with_a_wrong_auth_path_is_pinned_to_wiring() {
    let Some(sb) = sandbox_or_skip("wiring") else {
        return;
    };
    let s = healthy(sb, 1);
    let wiring = istio_vault_wizard::istio::wiring_for(
        &istio_vault_wizard::config::load(&s.config)
            .expect("config")
            .clusters[0],
        1,
    );
    let mut annotations = istio_vault_wizard::istio::pod_annotations(&wiring);
    annotations.insert(
        "vault.hashicorp.com/auth-path".into(),
        "auth/kubernetes".into(),
    );
    let dep = |annotations: &BTreeMap<String, String>| {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "istiod", "namespace": s.ns(), "labels": {"app": "istiod"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "istiod"}},
                "template": {
                    "metadata": {"labels": {"app": "istiod"}, "annotations": annotations},
                    "spec": {"serviceAccountName": "istiod", "containers": [{
                        "name": "discovery", "image": "docker.io/istio/pilot:1.24.0",
                        "env": [{"name": "ROOT_CA_DIR", "value": "/vault/secrets"}]
                    }]}
                }
            }
        })
    };
    let webhook = format!("vault-agent-injector-cfg-{}", s.tag);
    rt().block_on(async {
        use kube::api::{Api, PostParams};
        let k = sb.kube(0).await;
        let api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(k.client.clone(), &s.ns());
        api.create(&PostParams::default(), &serde_json::from_value(dep(&annotations)).expect("dep")).await.expect("create");
        let hooks: Api<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration> = Api::all(k.client.clone());
        let hook = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": webhook}, "webhooks": []});
        hooks.create(&PostParams::default(), &serde_json::from_value(hook).expect("hook")).await.expect("webhook");
    });
    // A webhook with nothing behind it is a broken injector, whatever the annotations say.
    assert_broken(&s, "wiring", "upgrade --install vault-inject");
    rt().block_on(async {
        use kube::api::{Api, PostParams};
        let k = sb.kube(0).await;
        let api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(k.client.clone(), &s.ns());
        // The injector's Deployment, as the vault chart labels it (no pods run here).
        let injector = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "vault-agent-injector", "namespace": s.ns(),
                "labels": {"app.kubernetes.io/name": "vault-agent-injector", "component": "webhook"}},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app.kubernetes.io/name": "vault-agent-injector"}},
                "template": {"metadata": {"labels": {"app.kubernetes.io/name": "vault-agent-injector"}},
                    "spec": {"containers": [{"name": "sidecar-injector", "image": "hashicorp/vault-k8s:1.4.2"}]}}}});
        api.create(&PostParams::default(), &serde_json::from_value(injector).expect("injector")).await.expect("injector");
    });
    assert_broken(&s, "wiring", &format!("auth/{}", s.auth("cluster1")));
    rt().block_on(async {
        use kube::api::{Api, Patch, PatchParams};
        let k = sb.kube(0).await;
        let api: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(k.client.clone(), &s.ns());
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {"vault.hashicorp.com/auth-path": format!("auth/{}", s.auth("cluster1"))}}}}});
        api.patch("istiod", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("fix");
    });
    assert_healed(&s);
    rt().block_on(async {
        use kube::api::{Api, DeleteParams};
        let k = sb.kube(0).await;
        let hooks: Api<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration> =
            Api::all(k.client.clone());
        hooks
            .delete(&webhook, &DeleteParams::default())
            .await
            .expect("cleanup");
    });
    cleanup(&s);
}

#[test]
fn a_least_privilege_operator_token_gets_skipped_links_that_say_why_not_guesses() {
    let Some(sb) = sandbox_or_skip("least privilege") else {
        return;
    };
    let s = healthy(sb, 1);
    // A token that may look up itself (default policy) but not read sys/auth or roles.
    let token = rt().block_on(async {
        let v = sb
            .vault()
            .raw(
                reqwest::Method::POST,
                "auth/token/create",
                Some(&json!({"policies": ["default"], "ttl": "10m"})),
                None,
                "create token",
            )
            .await
            .expect("token");
        v["auth"]["client_token"]
            .as_str()
            .expect("client token")
            .to_string()
    });
    let token_file = s.dir.path().join("limited-token");
    std::fs::write(&token_file, &token).expect("write");
    let cfg = std::fs::read_to_string(&s.config).expect("config").replace(
        &sb.dir.join("root-token").display().to_string(),
        &token_file.display().to_string(),
    );
    let limited = s.dir.path().join("limited.toml");
    std::fs::write(&limited, cfg).expect("write");
    let out = std::process::Command::new(common::BIN)
        .args(["doctor", "--cluster", "cluster1", "-o", "json", "--config"])
        .arg(&limited)
        .output()
        .expect("doctor");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    let links = doc["clusters"][0]["links"].as_array().expect("links");
    let mount = links
        .iter()
        .find(|l| l["id"] == "auth-mount")
        .expect("auth-mount link");
    assert_eq!(mount["status"], "SKIPPED", "{doc:#}");
    assert!(
        mount["evidence"].to_string().contains("no permission"),
        "{doc:#}"
    );
    let login = links
        .iter()
        .find(|l| l["id"] == "login")
        .expect("login link");
    assert_eq!(
        login["status"], "OK",
        "the login itself needs no operator permission: {doc:#}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&token),
        "the operator token is never printed"
    );
    cleanup(&s);
}
