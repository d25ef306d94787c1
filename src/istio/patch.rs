//! Patch mode: wire an existing istiod Deployment to Vault by server-side apply with a
//! field manager of our own. SSA records exactly which fields we own, so rollback (an
//! empty apply by the same manager) removes exactly what we added and leaves every other
//! manager's fields alone.

use std::collections::BTreeMap;

use ::kube::api::{Api, Patch, PatchParams};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;

use super::values::{IstiodWiring, pod_annotations};
use crate::kube::{KubeError, KubeTarget};

pub const FIELD_MANAGER: &str = "istio-vault-wizard";

/// What patch mode would change on a Deployment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PatchPlan {
    pub add: Vec<String>,
    /// Fields that exist with another value, owned by someone else: a conflict to decide.
    pub conflicts: Vec<String>,
}

impl PatchPlan {
    pub fn is_noop(&self) -> bool {
        self.add.is_empty() && self.conflicts.is_empty()
    }
}

fn container_name(d: &Deployment) -> String {
    let containers = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    containers
        .iter()
        .find(|c| c.name == "discovery")
        .or_else(|| containers.first())
        .map(|c| c.name.clone())
        .unwrap_or_else(|| "discovery".into())
}

pub fn plan(d: &Deployment, w: &IstiodWiring) -> PatchPlan {
    plan_fields(d, &pod_annotations(w), Some(&w.root_ca_dir))
}

/// What applying these pod-template annotations (and `ROOT_CA_DIR`, when given) changes.
pub fn plan_fields(
    d: &Deployment,
    wanted: &BTreeMap<String, String>,
    root_ca_dir: Option<&str>,
) -> PatchPlan {
    let (annotations, env) = crate::kube::pod_template_wiring(d);
    let mut p = PatchPlan::default();
    for (k, v) in wanted {
        match annotations.get(k) {
            None => p.add.push(format!("annotation {k}")),
            Some(cur) if cur != v => p.conflicts.push(format!("annotation {k} is {cur:?}")),
            _ => {}
        }
    }
    if let Some(dir) = root_ca_dir {
        match env.get("ROOT_CA_DIR") {
            None => p.add.push(format!("env ROOT_CA_DIR={dir}")),
            Some(cur) if cur != dir => p.conflicts.push(format!("env ROOT_CA_DIR is {cur:?}")),
            _ => {}
        }
    }
    p
}

fn apply_body(
    d: &Deployment,
    annotations: &BTreeMap<String, String>,
    env: Option<&str>,
) -> serde_json::Value {
    let name = d.metadata.name.clone().unwrap_or_default();
    let ns = d.metadata.namespace.clone().unwrap_or_default();
    let mut body = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "namespace": ns },
    });
    if !annotations.is_empty() || env.is_some() {
        let mut template = json!({ "metadata": { "annotations": annotations } });
        if let Some(dir) = env {
            template["spec"] = json!({ "containers": [{ "name": container_name(d), "env": [{ "name": "ROOT_CA_DIR", "value": dir }] }] });
        }
        // The selector is immutable and required in an apply body; restate it unchanged.
        let selector = d
            .spec
            .as_ref()
            .map(|s| serde_json::to_value(&s.selector).unwrap_or_default())
            .unwrap_or_default();
        body["spec"] = json!({ "selector": selector, "template": template });
    }
    body
}

/// Applies the wiring. `force` takes over fields another manager set (after a decision).
pub async fn apply(
    kube: &KubeTarget,
    d: &Deployment,
    w: &IstiodWiring,
    force: bool,
) -> Result<Deployment, KubeError> {
    apply_fields(kube, d, &pod_annotations(w), Some(&w.root_ca_dir), force).await
}

/// Server-side applies exactly these annotations (and `ROOT_CA_DIR`, when given).
pub async fn apply_fields(
    kube: &KubeTarget,
    d: &Deployment,
    annotations: &BTreeMap<String, String>,
    root_ca_dir: Option<&str>,
    force: bool,
) -> Result<Deployment, KubeError> {
    let ns = d.metadata.namespace.clone().unwrap_or_default();
    let name = d.metadata.name.clone().unwrap_or_default();
    let api: Api<Deployment> = Api::namespaced(kube.client.clone(), &ns);
    let body = apply_body(d, annotations, root_ca_dir);
    let mut params = PatchParams::apply(FIELD_MANAGER);
    params.force = force;
    api.patch(&name, &params, &Patch::Apply(&body))
        .await
        .map_err(|e| KubeError::api(format!("server-side apply to deployment {ns}/{name}"), e))
}

/// Rollback: an empty apply by our manager drops exactly the fields we own.
pub async fn rollback(kube: &KubeTarget, d: &Deployment) -> Result<Deployment, KubeError> {
    let ns = d.metadata.namespace.clone().unwrap_or_default();
    let name = d.metadata.name.clone().unwrap_or_default();
    let api: Api<Deployment> = Api::namespaced(kube.client.clone(), &ns);
    let body = apply_body(d, &BTreeMap::new(), None);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| {
        KubeError::api(
            format!("server-side apply (rollback) to deployment {ns}/{name}"),
            e,
        )
    })
}
