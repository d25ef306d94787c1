//! Issue 7 `wire` command on the sandbox: without an istiod Deployment it writes values and
//! prints the helm commands; with one it patches exactly our fields (injector missing is
//! reported with its install command); a second run changes nothing; `--rollback` undoes it.

mod common;

use std::collections::BTreeMap;

use common::{rt, sandbox_or_skip, write_config};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

fn run(s: &common::Setup, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["wire", "--cluster", "cluster1", "-o", "json"];
    args.extend_from_slice(extra);
    let out = s.run(&args);
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), doc)
}

#[test]
fn wire_prints_helm_commands_then_patches_and_rolls_back_an_existing_istiod() {
    let Some(sb) = sandbox_or_skip("wire") else {
        return;
    };
    let s = write_config(sb, 1, "ec-p256");
    let out = s.run(&["apply", "--yes", "--cluster", "cluster1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (code, doc) = run(&s, &["--yes"]);
    assert_eq!(code, 0, "{doc:#}");
    let c = &doc["clusters"][0];
    assert!(
        c["action"]
            .as_str()
            .unwrap_or_default()
            .contains("no istiod Deployment"),
        "{doc:#}"
    );
    assert!(
        c["commands"]
            .to_string()
            .contains("helm upgrade --install istio-istiod"),
        "{doc:#}"
    );
    let values =
        std::fs::read_to_string(s.state().join("values/cluster1.yaml")).expect("values written");
    assert!(values.contains("ROOT_CA_DIR"));

    let dep: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "istiod", "namespace": s.ns(), "labels": {"app": "istiod"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "istiod"}},
            "template": {"metadata": {"labels": {"app": "istiod"}, "annotations": {"prometheus.io/scrape": "true"}},
                "spec": {"serviceAccountName": "istiod", "containers": [{"name": "discovery", "image": "docker.io/istio/pilot:1.24.0"}]}}}
    }))
    .expect("deployment");
    let before = rt().block_on(async {
        let k = sb.kube(0).await;
        let api: Api<Deployment> = Api::namespaced(k.client.clone(), &s.ns());
        let d = api
            .create(&PostParams::default(), &dep)
            .await
            .expect("create");
        serde_json::to_value(&d.spec.expect("spec").template).expect("json")
    });

    let (code, doc) = run(&s, &["--yes"]);
    assert_eq!(code, 0, "{doc:#}");
    let c = &doc["clusters"][0];
    assert!(
        c["action"]
            .as_str()
            .unwrap_or_default()
            .starts_with("patched"),
        "{doc:#}"
    );
    assert!(
        c["injector"].is_null()
            && c["injector_fix"]
                .as_str()
                .unwrap_or_default()
                .contains("global.externalVaultAddr"),
        "{doc:#}"
    );

    // The doctor now checks the live wiring (and names the missing injector).
    let d = s.run(&["doctor", "--cluster", "cluster1", "-o", "json"]);
    let dd: Value = serde_json::from_slice(&d.stdout).expect("json");
    let wiring = dd["clusters"][0]["links"]
        .as_array()
        .expect("links")
        .iter()
        .find(|l| l["id"] == "wiring")
        .cloned()
        .expect("wiring");
    assert_eq!(wiring["status"], "FAIL", "{wiring:#}");
    assert!(
        wiring["evidence"].to_string().contains("injector"),
        "{wiring:#}"
    );

    let (code, doc) = run(&s, &["--yes"]);
    assert_eq!(code, 0);
    assert_eq!(
        doc["clusters"][0]["action"], "already wired: nothing to change",
        "{doc:#}"
    );

    let (code, doc) = run(&s, &["--yes", "--rollback"]);
    assert_eq!(code, 0, "{doc:#}");
    let after = rt().block_on(async {
        let k = sb.kube(0).await;
        let api: Api<Deployment> = Api::namespaced(k.client.clone(), &s.ns());
        serde_json::to_value(
            api.get("istiod")
                .await
                .expect("get")
                .spec
                .expect("spec")
                .template,
        )
        .expect("json")
    });
    assert_eq!(before, after, "rollback restores the template exactly");
    let _ = BTreeMap::<String, String>::new();
    let out = s.run(&["rollback", "--yes"]);
    assert!(out.status.success());
}
