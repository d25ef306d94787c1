//! Issue 7, the Istio phase (`wire`) on the sandbox, journaled like `apply`:
//! - helm mode with the built helm and small local charts: the injector release and istiod
//!   installed with the right release, namespace and values (read back from helm and from
//!   the API server), a second run changes nothing, verify waits for the rollout and names
//!   what is missing, `wire --rollback` removes exactly what was installed;
//! - patch mode: an existing istiod gets exactly our fields, conflicts need --force,
//!   rollback restores the pod template byte-identical;
//! - no helm: the step stops and prints the exact command to run.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{rt, sandbox_or_skip, write_config};
use istio_vault_wizard::istio::{IstiodWiring, pod_annotations};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// The injector is cluster-wide: tests that install one on cluster2, or expect none there,
/// take turns.
static CLUSTER2_INJECTOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn chart(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/charts")
        .join(name)
}

fn helm_bin() -> PathBuf {
    istio_vault_wizard::sandbox::ServerBinaries::locate(None)
        .ok()
        .and_then(|b| b.helm)
        .expect("helm is built by tests/servers/build.sh")
}

/// Appends an `[istio]` table to the test's config.
fn add_istio(s: &common::Setup, helm: &Path, mode: &str, extra: &str) -> String {
    let inj_ns = format!("vault-{}", s.tag);
    let text = format!(
        "\n[istio]\nhelm = \"{}\"\nmode = \"{mode}\"\ninjector_chart = \"{}\"\ninjector_namespace = \"{inj_ns}\"\nbase_chart = \"{}\"\nistiod_chart = \"{}\"\nverify_timeout_secs = 3\n{extra}",
        helm.display(),
        chart("vault").display(),
        chart("istio-base").display(),
        chart("istiod").display(),
    );
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&s.config)
        .expect("config");
    f.write_all(text.as_bytes()).expect("append");
    inj_ns
}

fn wire(s: &common::Setup, cluster: &str, extra: &[&str]) -> (i32, Value, String) {
    let mut args = vec!["wire", "--cluster", cluster, "-o", "json"];
    args.extend_from_slice(extra);
    let out = s.run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.code().unwrap_or(-1), doc, stderr)
}

fn helm_json(sb: &common::Sandbox, idx: usize, args: &[&str]) -> Value {
    let out = Command::new(helm_bin())
        .args(args)
        .arg("--kubeconfig")
        .arg(&sb.kubeconfigs[idx])
        .args(["--output", "json"])
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("helm json")
}

fn steps_in(doc: &Value, list: &str) -> Vec<String> {
    doc["report"][list]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| p[1].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn progress(doc: &Value) -> Vec<String> {
    doc["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["event"] == "progress")
                .filter_map(|e| e["message"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn wiring(s: &common::Setup, cluster: &str) -> IstiodWiring {
    let mut w = IstiodWiring::article_defaults(cluster, s.kv);
    w.auth_path = s.auth(cluster);
    w.secret_path =
        istio_vault_wizard::vault::kv_api_path(&s.mount(cluster), "istiod-service/certs", s.kv);
    w
}

fn template_of(d: &Deployment) -> (Value, Value) {
    let t = &d.spec.as_ref().expect("spec").template;
    let ann = serde_json::to_value(&t.metadata.as_ref().expect("meta").annotations).expect("a");
    let env = serde_json::to_value(
        t.spec.as_ref().expect("pod spec").containers[0]
            .env
            .clone()
            .unwrap_or_default(),
    )
    .expect("env");
    (ann, env)
}

#[test]
fn helm_mode_installs_injector_and_istiod_verifies_and_rolls_back() {
    let Some(sb) = sandbox_or_skip("helm mode") else {
        return;
    };
    let s = write_config(sb, 2, "ec-p256");
    // The config says 1.24 (flat values); the chart says 1.22.3: the chart decides.
    let inj_ns = add_istio(&s, &helm_bin(), "helm", "version = \"1.24\"\n");
    let out = s.run(&["apply", "--yes", "--cluster", "cluster1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Plan first: changes nothing, shows the helm lines that will run.
    let (code, plan, _) = wire(&s, "cluster1", &["--plan"]);
    assert_eq!(code, 0, "{plan:#}");
    let text = plan.to_string();
    assert!(
        text.contains("upgrade --install vault-inject") && text.contains(&inj_ns),
        "{plan:#}"
    );
    assert!(text.contains("upgrade --install istio-istiod"), "{plan:#}");

    let (code, doc, stderr) = wire(
        &s,
        "cluster1",
        &["--yes", "--step", "injector", "--step", "istiod"],
    );
    assert_eq!(code, 0, "{doc:#}\n{stderr}");
    assert_eq!(steps_in(&doc, "applied"), ["injector", "istiod"], "{doc:#}");
    assert!(
        progress(&doc)
            .iter()
            .any(|m| m.contains("(Istio 1.22.3): Legacy values layout")),
        "{doc:#}"
    );

    // The injector release, read back from helm: release, namespace, values.
    let list = helm_json(sb, 0, &["list", "--namespace", &inj_ns]);
    assert_eq!(list[0]["name"], "vault-inject", "{list:#}");
    assert_eq!(list[0]["status"], "deployed", "{list:#}");
    let values = helm_json(
        sb,
        0,
        &["get", "values", "vault-inject", "--namespace", &inj_ns],
    );
    assert_eq!(
        values,
        json!({"global": {"externalVaultAddr": sb.vault_addr}, "injector": {"enabled": true}})
    );

    // istiod: Istio 1.22 → the legacy `pilot:` layout, which the chart renders onto the
    // Deployment: exactly the annotations the injector needs, and ROOT_CA_DIR.
    let istiod_values = helm_json(
        sb,
        0,
        &["get", "values", "istio-istiod", "--namespace", &s.ns()],
    );
    assert!(
        istiod_values["pilot"]["podAnnotations"].is_object(),
        "{istiod_values:#}"
    );
    let w = wiring(&s, "cluster1");
    let d = rt().block_on(async {
        let k = sb.kube(0).await;
        let api: Api<Deployment> = Api::namespaced(k.client.clone(), &s.ns());
        api.get("istiod").await.expect("istiod deployment")
    });
    let (ann, env) = template_of(&d);
    assert_eq!(
        ann,
        serde_json::to_value(pod_annotations(&w)).expect("json")
    );
    assert_eq!(
        env,
        json!([{"name": "ROOT_CA_DIR", "value": "/vault/secrets"}])
    );

    // A second run: nothing to do.
    let (code, doc, _) = wire(
        &s,
        "cluster1",
        &["--yes", "--step", "injector", "--step", "istiod"],
    );
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["changed"], false, "{doc:#}");
    assert_eq!(steps_in(&doc, "unchanged"), ["injector", "istiod"]);

    // Verify: no kubelet, so the rollout cannot finish; it says where it stands and hands
    // over to the doctor.
    let (code, doc, _) = wire(&s, "cluster1", &["--yes", "--step", "verify"]);
    assert_ne!(code, 0, "{doc:#}");
    let failed = doc["report"]["failed"].to_string();
    assert!(
        failed.contains("rollout not complete") && failed.contains("doctor:"),
        "{doc:#}"
    );
    assert!(
        progress(&doc).iter().any(|m| m.starts_with("rollout: ")),
        "progress is reported: {doc:#}"
    );

    // Play the kubelet's part: report the new pod Ready. The rollout completes, and verify
    // finds the pod was never mutated by the injector (nothing serves its webhook here).
    rt().block_on(async {
        let k = sb.kube(0).await;
        let pods: Api<Pod> = Api::namespaced(k.client.clone(), &s.ns());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let pod = loop {
            let l = pods
                .list(&ListParams::default().labels("app=istiod"))
                .await
                .expect("pods");
            if let Some(p) = l.items.into_iter().next() {
                break p;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no istiod pod created"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        pods.patch_status(
            pod.metadata.name.as_deref().expect("name"),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True"}]}})),
        )
        .await
        .expect("mark ready");
    });
    let (code, doc, stderr) = wire(
        &s,
        "cluster1",
        &["--yes", "--step", "verify", "--timeout", "20"],
    );
    assert_ne!(code, 0, "{doc:#}");
    let failed = doc["report"]["failed"].to_string();
    assert!(
        failed.contains("no vault-agent-init init container"),
        "{doc:#}\n{stderr}"
    );
    assert!(
        progress(&doc)
            .iter()
            .any(|m| m == "rollout: successfully rolled out"),
        "{doc:#}"
    );

    // Rollback of the Istio phase only: both releases gone, the Vault phase untouched.
    let (code, doc, _) = wire(&s, "cluster1", &["--rollback", "--yes"]);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(
        helm_json(
            sb,
            0,
            &[
                "list",
                "--all-namespaces",
                "--filter",
                "vault-inject|istio-"
            ]
        )
        .as_array()
        .map(|a| a
            .iter()
            .filter(|r| r["namespace"] == inj_ns.as_str() || r["namespace"] == s.ns().as_str())
            .count()),
        Some(0)
    );
    let gone = rt().block_on(async {
        let k = sb.kube(0).await;
        let api: Api<Deployment> = Api::namespaced(k.client.clone(), &s.ns());
        api.get_opt("istiod").await.expect("get")
    });
    assert!(gone.is_none(), "istiod was installed by us and is removed");
    let status = s.run(&["status", "-o", "json"]);
    let st: Value = serde_json::from_slice(&status.stdout).expect("json");
    let live_vault_steps = st["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["step"] == "role" && e["status"] == "applied")
        .count();
    assert_eq!(
        live_vault_steps, 1,
        "the Vault phase is not rolled back: {st:#}"
    );
}

#[test]
fn patch_mode_wires_an_existing_istiod_and_rollback_restores_it() {
    let Some(sb) = sandbox_or_skip("patch mode") else {
        return;
    };
    let s = write_config(sb, 1, "ec-p256");
    add_istio(&s, Path::new("/nonexistent/helm"), "auto", "");
    let out = s.run(&["apply", "--yes", "--cluster", "cluster2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dep: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "istiod", "namespace": s.ns(), "labels": {"app": "istiod"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "istiod"}},
            "template": {"metadata": {"labels": {"app": "istiod"}, "annotations": {"prometheus.io/scrape": "true"}},
                "spec": {"serviceAccountName": "istiod", "containers": [{"name": "discovery", "image": "docker.io/istio/pilot:1.24.0"}]}}}
    }))
    .expect("deployment");
    let before = rt().block_on(async {
        let k = sb.kube(1).await;
        let api: Api<Deployment> = Api::namespaced(k.client.clone(), &s.ns());
        let d = api
            .create(&PostParams::default(), &dep)
            .await
            .expect("create");
        serde_json::to_value(&d.spec.expect("spec").template).expect("json")
    });

    let (code, doc, stderr) = wire(&s, "cluster2", &["--yes", "--step", "istiod"]);
    assert_eq!(code, 0, "{doc:#}\n{stderr}");
    assert_eq!(steps_in(&doc, "applied"), ["istiod"], "{doc:#}");
    let after = rt().block_on(async {
        let k = sb.kube(1).await;
        let api: Api<Deployment> = Api::namespaced(k.client.clone(), &s.ns());
        api.get("istiod").await.expect("get")
    });
    let (ann, env) = template_of(&after);
    let mut want = serde_json::to_value(pod_annotations(&wiring(&s, "cluster2"))).expect("json");
    want["prometheus.io/scrape"] = json!("true");
    assert_eq!(ann, want);
    assert_eq!(
        env,
        json!([{"name": "ROOT_CA_DIR", "value": "/vault/secrets"}])
    );

    // Journaled: status lists it, a second run is a no-op.
    let (code, doc, _) = wire(&s, "cluster2", &["--yes", "--step", "istiod"]);
    assert_eq!((code, doc["changed"].clone()), (0, json!(false)), "{doc:#}");

    // Another manager changes one of our fields: a conflict, taken over only with --force.
    rt().block_on(async {
        let k = sb.kube(1).await;
        let api: Api<Deployment> = Api::namespaced(k.client.clone(), &s.ns());
        let body = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "istiod", "namespace": s.ns()},
            "spec": {"selector": {"matchLabels": {"app": "istiod"}}, "template": {"metadata": {"annotations": {"vault.hashicorp.com/role": "someone-else"}}}}});
        let mut p = PatchParams::apply("other-manager");
        p.force = true;
        api.patch("istiod", &p, &Patch::Apply(&body))
            .await
            .expect("other manager");
    });
    let (code, doc, _) = wire(&s, "cluster2", &["--yes", "--step", "istiod"]);
    assert_eq!(code, 3, "a conflict exits 3: {doc:#}");
    let (code, doc, _) = wire(&s, "cluster2", &["--yes", "--force", "--step", "istiod"]);
    assert_eq!(code, 0, "{doc:#}");

    let (code, doc, _) = wire(&s, "cluster2", &["--rollback", "--yes"]);
    assert_eq!(code, 0, "{doc:#}");
    let restored = rt().block_on(async {
        let k = sb.kube(1).await;
        let api: Api<Deployment> = Api::namespaced(k.client.clone(), &s.ns());
        let d = api.get("istiod").await.expect("get");
        serde_json::to_value(&d.spec.expect("spec").template).expect("json")
    });
    assert_eq!(restored, before, "pod template restored byte-identical");
}

#[test]
fn without_helm_the_injector_step_says_exactly_what_to_run() {
    let Some(sb) = sandbox_or_skip("no helm") else {
        return;
    };
    let _turn = CLUSTER2_INJECTOR.lock().unwrap_or_else(|e| e.into_inner());
    let s = write_config(sb, 1, "ec-p256");
    let inj_ns = add_istio(&s, Path::new("/nonexistent/helm"), "auto", "");
    let (code, doc, _) = wire(&s, "cluster2", &["--yes", "--step", "injector"]);
    assert_eq!(code, 1, "{doc:#}");
    let failed = doc["report"]["failed"].to_string();
    assert!(
        failed.contains("run this yourself")
            && failed.contains("upgrade --install vault-inject")
            && failed.contains(&format!("--namespace {inj_ns}"))
            && failed.contains(&format!("global.externalVaultAddr={}", sb.vault_addr)),
        "{doc:#}"
    );
    // Nothing was created, so there is nothing to roll back.
    let (code, doc, _) = wire(&s, "cluster2", &["--rollback", "--yes"]);
    assert_eq!(code, 0, "{doc:#}");
}

/// helm is there but has no `hashicorp` repository (a fresh workstation): the step says to
/// add it (the URL HashiCorp publishes) before the install line, and installs nothing.
#[test]
fn a_missing_chart_repository_is_named_with_its_repo_add_line() {
    let Some(sb) = sandbox_or_skip("missing chart repo") else {
        return;
    };
    let _turn = CLUSTER2_INJECTOR.lock().unwrap_or_else(|e| e.into_inner());
    let s = write_config(sb, 1, "ec-p256");
    let helm_home = tempfile::tempdir().expect("tmp");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&s.config)
        .expect("config");
    write!(
        f,
        "\n[istio]\nhelm = \"{}\"\ninjector_namespace = \"vault-{}\"\n",
        helm_bin().display(),
        s.tag
    )
    .expect("append");
    drop(f);
    let out = s
        .command(&["wire", "--cluster", "cluster2", "-o", "json", "--yes"])
        .args(["--step", "injector"])
        // helm's own files, empty: no repositories configured.
        .env("HELM_CONFIG_HOME", helm_home.path().join("config"))
        .env("HELM_CACHE_HOME", helm_home.path().join("cache"))
        .env("HELM_DATA_HOME", helm_home.path().join("data"))
        .env_remove("HELM_REPOSITORY_CONFIG")
        .env_remove("HELM_REPOSITORY_CACHE")
        .output()
        .expect("run wire");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(out.status.code(), Some(1), "{doc:#}");
    let why = doc["report"]["failed"][0][2].as_str().unwrap_or_default();
    let helm = helm_bin().display().to_string();
    let add = format!("{helm} repo add hashicorp https://helm.releases.hashicorp.com");
    let update = format!("{helm} repo update hashicorp");
    let install = format!("{helm} upgrade --install vault-inject hashicorp/vault");
    assert!(
        why.contains("chart hashicorp/vault is not reachable"),
        "{why}"
    );
    let at = |l: &str| why.find(l).unwrap_or_else(|| panic!("no `{l}` in: {why}"));
    assert!(
        at(&add) < at(&update) && at(&update) < at(&install),
        "{why}"
    );
    assert!(
        helm_json(sb, 1, &["list", "--all-namespaces"])
            .as_array()
            .is_some_and(|a| a.iter().all(
                |r| r["name"] != "vault-inject" || r["namespace"] != format!("vault-{}", s.tag)
            )),
        "nothing installed"
    );
}

#[test]
fn gateways_get_their_own_role_and_policy_and_cannot_read_istiods_ca() {
    let Some(sb) = sandbox_or_skip("gateways") else {
        return;
    };
    let s = write_config(sb, 2, "ec-p256");
    add_istio(
        &s,
        Path::new("/nonexistent/helm"),
        "patch",
        &format!(
            "gateways = [\"istio-ingressgateway\"]\ngateway_policy = \"istio-gateway-tls-{{cluster}}-{}\"\n",
            s.tag
        ),
    );
    let gw_policy = format!("istio-gateway-tls-cluster2-{}", s.tag);
    let out = s.run(&["apply", "--yes", "--cluster", "cluster2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gw_step = ["--yes", "--step", "gateways"];

    // No gateway Deployment yet: blocked, and says so.
    let (code, doc, _) = wire(&s, "cluster2", &gw_step);
    assert_eq!(code, 1, "{doc:#}");
    assert!(
        doc["report"]["failed"]
            .to_string()
            .contains("gateway Deployment"),
        "{doc:#}"
    );

    let rt = rt();
    rt.block_on(async {
        let k = sb.kube(1).await;
        k.create_service_account(
            &s.ns(),
            "istio-ingressgateway",
            Default::default(),
            Default::default(),
        )
        .await
        .expect("sa");
        let api: Api<Deployment> = Api::namespaced(k.client.clone(), &s.ns());
        let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "istio-ingressgateway", "namespace": s.ns(), "labels": {"istio": "ingressgateway"}},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"istio": "ingressgateway"}},
                "template": {"metadata": {"labels": {"istio": "ingressgateway"}},
                    "spec": {"serviceAccountName": "istio-ingressgateway",
                        "containers": [{"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.24.0"}]}}}});
        api.create(
            &PostParams::default(),
            &serde_json::from_value(dep).expect("dep"),
        )
        .await
        .expect("gateway");
    });

    // No TLS material in Vault yet: blocked with the exact `vault kv put`.
    let (code, doc, _) = wire(&s, "cluster2", &gw_step);
    assert_eq!(code, 1, "{doc:#}");
    let failed = doc["report"]["failed"].to_string();
    assert!(
        failed.contains(&format!(
            "vault kv put {}/istio-gateways/istio-ingressgateway tls_crt=@tls.crt",
            s.mount("cluster2")
        )),
        "{doc:#}"
    );

    // Put real PEMs there (a freshly generated bundle stands in for the gateway's cert).
    let certs = tempfile::tempdir().expect("tmp");
    common::generate_ec_bundle(certs.path(), "gw", &[]);
    let read = |f: &str| std::fs::read_to_string(certs.path().join("gw").join(f)).expect(f);
    let vault = sb.vault();
    rt.block_on(async {
        let data: std::collections::BTreeMap<String, String> = [
            ("tls_crt", read("ca-cert.pem")),
            ("tls_key", read("ca-key.pem")),
            ("ca_crt", read("root-cert.pem")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        vault
            .kv_write(
                &s.mount("cluster2"),
                "istio-gateways/istio-ingressgateway",
                2,
                &data,
                None,
            )
            .await
            .expect("put tls");
    });

    let (code, doc, stderr) = wire(&s, "cluster2", &gw_step);
    assert_eq!(code, 0, "{doc:#}\n{stderr}");
    assert_eq!(steps_in(&doc, "applied"), ["gateways"], "{doc:#}");
    let (code, doc, _) = wire(&s, "cluster2", &gw_step);
    assert_eq!((code, doc["changed"].clone()), (0, json!(false)), "{doc:#}");

    // The gateway's pod template carries exactly the gateway injection.
    let want =
        istio_vault_wizard::istio::gateway_annotations(&istio_vault_wizard::istio::GatewayWiring {
            gateway: "istio-ingressgateway".into(),
            auth_path: s.auth("cluster2"),
            role: "istio-gateway".into(),
            secret_path: istio_vault_wizard::vault::kv_api_path(
                &s.mount("cluster2"),
                "istio-gateways/istio-ingressgateway",
                2,
            ),
            kv_version: 2,
        });
    // Least privilege, proven by real logins: the gateway's ServiceAccount reads its TLS
    // material and is refused istiod's CA; istiod's role refuses the gateway's account.
    rt.block_on(async {
        let k = sb.kube(1).await;
        let api: Api<Deployment> = Api::namespaced(k.client.clone(), &s.ns());
        let d = api.get("istio-ingressgateway").await.expect("get");
        let (ann, _) = template_of(&d);
        assert_eq!(ann, serde_json::to_value(&want).expect("json"));

        let jwt = k
            .request_token(&s.ns(), "istio-ingressgateway", 600)
            .await
            .expect("token");
        let login = vault
            .kubernetes_login(&s.auth("cluster2"), "istio-gateway", &jwt)
            .await
            .expect("gateway login");
        let tls = vault
            .kv_read(
                &s.mount("cluster2"),
                "istio-gateways/istio-ingressgateway",
                2,
                Some(&login.token),
            )
            .await
            .expect("gateway reads its TLS material")
            .expect("present");
        assert!(tls.data.contains_key("tls_key"));
        let denied = vault
            .kv_read(
                &s.mount("cluster2"),
                "istiod-service/certs",
                2,
                Some(&login.token),
            )
            .await;
        assert!(
            denied.as_ref().is_err_and(|e| e.is_permission_denied()),
            "the gateway must not read istiod's CA: {:?}",
            denied.map(|o| o.is_some())
        );
        assert!(
            vault
                .kubernetes_login(&s.auth("cluster2"), "istiod", &jwt)
                .await
                .is_err(),
            "istiod's role does not accept the gateway's ServiceAccount"
        );
    });

    // Rollback of the Istio phase: annotations, role and policy gone.
    let (code, doc, _) = wire(&s, "cluster2", &["--rollback", "--yes"]);
    assert_eq!(code, 0, "{doc:#}");
    rt.block_on(async {
        let k = sb.kube(1).await;
        let api: Api<Deployment> = Api::namespaced(k.client.clone(), &s.ns());
        let d = api.get("istio-ingressgateway").await.expect("get");
        let (ann, _) = template_of(&d);
        assert!(ann.is_null(), "annotations removed: {ann:#}");
        assert!(
            vault
                .read_role(&s.auth("cluster2"), "istio-gateway")
                .await
                .expect("read")
                .is_none()
        );
        assert!(vault.read_policy(&gw_policy).await.expect("read").is_none());
    });
}

#[test]
fn the_exported_wire_script_reaches_the_state_wire_checks_for() {
    let Some(sb) = sandbox_or_skip("export wire.sh") else {
        return;
    };
    let _turn = CLUSTER2_INJECTOR.lock().unwrap_or_else(|e| e.into_inner());
    let s = write_config(sb, 2, "ec-p256");
    // This test works on cluster2 only: drop cluster1 from the config.
    let text = std::fs::read_to_string(&s.config).expect("config");
    let start = text
        .find("[[cluster]]\nname = \"cluster1\"")
        .expect("cluster1 block");
    let end = text
        .find("[[cluster]]\nname = \"cluster2\"")
        .expect("cluster2 block");
    std::fs::write(&s.config, format!("{}{}", &text[..start], &text[end..])).expect("write");
    let inj_ns = add_istio(&s, &helm_bin(), "helm", "version = \"1.22.3\"\n");
    let out = s.run(&["apply", "--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().expect("tmp");
    let out = s.run(&["export", "--out", dir.path().to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = dir.path().join("wire.sh");
    let run = Command::new("bash").arg(&script).output().expect("bash");
    assert!(
        run.status.success(),
        "wire.sh: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );

    // `wire --plan` finds what the script made: injector and istiod present.
    let (code, plan, _) = wire(&s, "cluster2", &["--plan"]);
    assert_eq!(code, 0, "{plan:#}");
    let state = |step: &str| {
        plan["steps"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["step"] == step))
            .map(|r| r["state"]["state"].clone())
    };
    assert_eq!(state("injector"), Some(json!("matches")), "{plan:#}");
    assert_eq!(state("istiod"), Some(json!("matches")), "{plan:#}");

    // The wizard did not create them, so its rollback leaves them alone.
    let (code, _, _) = wire(&s, "cluster2", &["--rollback", "--yes"]);
    assert_eq!(code, 0);
    let list = helm_json(sb, 1, &["list", "--namespace", &inj_ns]);
    assert_eq!(list[0]["name"], "vault-inject", "{list:#}");
    for (release, ns) in [
        ("vault-inject", inj_ns.as_str()),
        ("istio-istiod", s.ns().as_str()),
        ("istio-base", s.ns().as_str()),
    ] {
        let out = Command::new(helm_bin())
            .args(["uninstall", release, "--namespace", ns, "--kubeconfig"])
            .arg(&sb.kubeconfigs[1])
            .output()
            .expect("helm uninstall");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
