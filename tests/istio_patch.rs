//! Issue 7 patch mode against the sandbox's kube-apiserver: a Deployment shaped like the
//! istiod chart's output gets exactly our annotations and env by server-side apply; a
//! second apply is a no-op; rollback restores the template byte-identical; another field
//! manager's changes survive.

mod common;

use std::collections::BTreeMap;

use common::{rt, sandbox_or_skip, unique};
use istio_vault_wizard::istio::{patch, pod_annotations, wiring_for};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

fn istiod_like(ns: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "istiod", "namespace": ns, "labels": {"app": "istiod", "istio.io/rev": "default"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "istiod", "istio.io/rev": "default"}},
            "template": {
                "metadata": {
                    "labels": {"app": "istiod", "istio.io/rev": "default", "sidecar.istio.io/inject": "false"},
                    "annotations": {"prometheus.io/port": "15014", "prometheus.io/scrape": "true", "sidecar.istio.io/inject": "false"}
                },
                "spec": {
                    "serviceAccountName": "istiod",
                    "containers": [{
                        "name": "discovery",
                        "image": "docker.io/istio/pilot:1.24.0",
                        "args": ["discovery", "--monitoringAddr=:15014", "--log_output_level=default:info"],
                        "env": [{"name": "PILOT_CERT_PROVIDER", "value": "istiod"}, {"name": "REVISION", "value": "default"}],
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}, {"containerPort": 15010, "protocol": "TCP"}]
                    }]
                }
            }
        }
    }))
    .expect("deployment")
}

#[test]
fn patch_mode_adds_exactly_our_fields_and_rollback_restores_the_template() {
    let Some(sb) = sandbox_or_skip("patch mode") else {
        return;
    };
    let s = common::write_config(sb, 2, "ec-p256");
    let config = istio_vault_wizard::config::load(&s.config).expect("config");
    let wiring = wiring_for(&config.clusters[0], 2);
    let ns = unique("patch");
    rt().block_on(async {
        let k = sb.kube(0).await;
        k.create_namespace(&ns, BTreeMap::new()).await.expect("ns");
        let api: Api<Deployment> = Api::namespaced(k.client.clone(), &ns);
        let created = api.create(&PostParams::default(), &istiod_like(&ns)).await.expect("create");
        let before = serde_json::to_string(&created.spec.as_ref().expect("spec").template).expect("json");

        let plan = patch::plan(&created, &wiring);
        assert_eq!(plan.add.len(), pod_annotations(&wiring).len() + 1, "{plan:?}");
        assert!(plan.conflicts.is_empty());
        let patched = patch::apply(&k, &created, &wiring, false).await.expect("apply");
        let (annotations, env) = istio_vault_wizard::kube::pod_template_wiring(&patched);
        for (key, v) in pod_annotations(&wiring) {
            assert_eq!(annotations.get(&key), Some(&v), "{key}");
        }
        assert_eq!(env.get("ROOT_CA_DIR").map(String::as_str), Some("/vault/secrets"));
        assert_eq!(env.get("PILOT_CERT_PROVIDER").map(String::as_str), Some("istiod"), "existing env kept");
        assert_eq!(annotations.get("prometheus.io/scrape").map(String::as_str), Some("true"), "existing annotations kept");
        let expected_len = 3 + pod_annotations(&wiring).len();
        assert_eq!(annotations.len(), expected_len, "exactly our annotations were added");

        // Second apply is a no-op: nothing to add, generation unchanged.
        assert!(patch::plan(&patched, &wiring).is_noop());
        let again = patch::apply(&k, &patched, &wiring, false).await.expect("apply again");
        assert_eq!(again.metadata.generation, patched.metadata.generation, "no-op apply");

        // Another manager changes the image meanwhile; rollback must keep it.
        let other = json!({"spec": {"template": {"spec": {"containers": [{"name": "discovery", "image": "docker.io/istio/pilot:1.24.1"}]}}}});
        api.patch("istiod", &PatchParams::default(), &Patch::Strategic(&other)).await.expect("other manager");
        let current = api.get("istiod").await.expect("get");
        patch::rollback(&k, &current).await.expect("rollback");
        let after = api.get("istiod").await.expect("get");
        let tpl = after.spec.as_ref().expect("spec").template.clone();
        assert_eq!(tpl.spec.as_ref().expect("pod").containers[0].image.as_deref(), Some("docker.io/istio/pilot:1.24.1"), "other manager's change survives");
        // With that one change undone too, the template is byte-identical to the original.
        let mut restored = serde_json::to_value(&tpl).expect("json");
        restored["spec"]["containers"][0]["image"] = json!("docker.io/istio/pilot:1.24.0");
        let original: serde_json::Value = serde_json::from_str(&before).expect("json");
        assert_eq!(restored, original, "rollback removed exactly what we added");
        k.delete_namespace(&ns).await.expect("cleanup");
    });
}
