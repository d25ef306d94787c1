//! Workload reads for the Istio steps: the Vault agent injector (webhook and Deployment),
//! a Deployment's rollout, the pod of its current revision, and that pod's container logs.

use std::collections::BTreeMap;

use ::kube::api::{Api, ListParams, LogParams};
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;

use super::{KubeError, KubeTarget};

/// What of the Vault agent injector exists in a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct InjectorFound {
    /// Name of the MutatingWebhookConfiguration carrying the `vault.hashicorp.com` hook.
    pub webhook: Option<String>,
    /// `namespace/name` of the injector Deployment.
    pub deployment: Option<String>,
    /// Ready replicas of that Deployment.
    pub ready: i32,
}

impl InjectorFound {
    pub fn complete(&self) -> bool {
        self.webhook.is_some() && self.deployment.is_some()
    }
    pub fn nothing(&self) -> bool {
        self.webhook.is_none() && self.deployment.is_none()
    }
}

fn is_injector_deployment(d: &Deployment) -> bool {
    let labelled = d
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("app.kubernetes.io/name"))
        .is_some_and(|n| n.ends_with("agent-injector"));
    let image = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .is_some_and(|p| {
            p.containers
                .iter()
                .any(|c| c.image.as_deref().is_some_and(|i| i.contains("vault-k8s")))
        });
    labelled || image
}

/// Looks for the injector's webhook configuration and its Deployment (any namespace).
pub async fn find_vault_injector(kube: &KubeTarget) -> Result<InjectorFound, KubeError> {
    let hooks: Api<MutatingWebhookConfiguration> = Api::all(kube.client.clone());
    let list = hooks
        .list(&ListParams::default())
        .await
        .map_err(|e| KubeError::api("list mutatingwebhookconfigurations", e))?;
    let webhook = list.items.into_iter().find_map(|m| {
        let name = m.metadata.name.clone().unwrap_or_default();
        let vault = m
            .webhooks
            .unwrap_or_default()
            .iter()
            .any(|h| h.name.contains("vault.hashicorp.com"))
            || name.contains("vault-agent-injector");
        vault.then_some(name)
    });
    let deployments: Api<Deployment> = Api::all(kube.client.clone());
    let list = deployments
        .list(&ListParams::default())
        .await
        .map_err(|e| KubeError::api("list deployments", e))?;
    let found = list.items.iter().find(|d| is_injector_deployment(d));
    Ok(InjectorFound {
        webhook,
        deployment: found.map(|d| {
            format!(
                "{}/{}",
                d.metadata.namespace.clone().unwrap_or_default(),
                d.metadata.name.clone().unwrap_or_default()
            )
        }),
        ready: found
            .and_then(|d| d.status.as_ref())
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
    })
}

/// A Deployment's rollout, as `kubectl rollout status` judges it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rollout {
    pub generation: i64,
    pub observed_generation: i64,
    pub replicas: i32,
    /// `status.replicas`: pods of every revision, old ones included.
    pub current: i32,
    pub updated: i32,
    pub ready: i32,
    pub available: i32,
    /// The Deployment's `deployment.kubernetes.io/revision`.
    pub revision: Option<String>,
}

impl Rollout {
    pub fn of(d: &Deployment) -> Rollout {
        let s = d.status.clone().unwrap_or_default();
        Rollout {
            generation: d.metadata.generation.unwrap_or(0),
            observed_generation: s.observed_generation.unwrap_or(0),
            replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            current: s.replicas.unwrap_or(0),
            updated: s.updated_replicas.unwrap_or(0),
            ready: s.ready_replicas.unwrap_or(0),
            available: s.available_replicas.unwrap_or(0),
            revision: d
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("deployment.kubernetes.io/revision"))
                .cloned(),
        }
    }

    /// kubectl's test: every replica updated, no old replica left, every updated one
    /// available. Old pods that are still available do not count: while they run, the
    /// new pod may not even have started.
    pub fn complete(&self) -> bool {
        self.observed_generation >= self.generation
            && self.updated >= self.replicas
            && self.current <= self.updated
            && self.available >= self.updated
    }

    /// `kubectl rollout status`'s wording of where it is.
    pub fn describe(&self) -> String {
        if self.observed_generation < self.generation {
            "waiting for the deployment spec update to be observed".into()
        } else if self.updated < self.replicas {
            format!(
                "{} of {} new replicas have been updated",
                self.updated, self.replicas
            )
        } else if self.current > self.updated {
            format!(
                "{} old replicas are pending termination",
                self.current - self.updated
            )
        } else if self.available < self.updated {
            format!(
                "{} of {} updated replicas are available",
                self.available, self.updated
            )
        } else {
            "successfully rolled out".into()
        }
    }
}

pub async fn get_deployment(
    kube: &KubeTarget,
    ns: &str,
    name: &str,
) -> Result<Option<Deployment>, KubeError> {
    let api: Api<Deployment> = Api::namespaced(kube.client.clone(), ns);
    api.get_opt(name)
        .await
        .map_err(|e| KubeError::api(format!("get deployment {ns}/{name}"), e))
}

/// The newest pod of the Deployment's current ReplicaSet (the rollout's new pod).
pub async fn current_pod(kube: &KubeTarget, d: &Deployment) -> Result<Option<Pod>, KubeError> {
    let ns = d.metadata.namespace.clone().unwrap_or_default();
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let revision = Rollout::of(d).revision;
    let rs_api: Api<ReplicaSet> = Api::namespaced(kube.client.clone(), &ns);
    let sets = rs_api
        .list(&ListParams::default())
        .await
        .map_err(|e| KubeError::api(format!("list replicasets in {ns}"), e))?;
    let owned = |rs: &&ReplicaSet| {
        rs.metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| o.iter().any(|o| o.uid == uid))
    };
    let rev = |rs: &ReplicaSet| {
        rs.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("deployment.kubernetes.io/revision"))
            .cloned()
    };
    let current = sets
        .items
        .iter()
        .filter(owned)
        .find(|rs| revision.is_some() && rev(rs) == revision);
    let Some(rs) = current else {
        return Ok(None);
    };
    let rs_uid = rs.metadata.uid.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &ns);
    let list = pods
        .list(&ListParams::default())
        .await
        .map_err(|e| KubeError::api(format!("list pods in {ns}"), e))?;
    let mut mine: Vec<Pod> = list
        .items
        .into_iter()
        .filter(|p| {
            p.metadata
                .owner_references
                .as_ref()
                .is_some_and(|o| o.iter().any(|o| o.uid == rs_uid))
        })
        .collect();
    mine.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
    });
    Ok(mine.pop())
}

/// Init and regular container names of a pod.
pub fn container_names(p: &Pod) -> (Vec<String>, Vec<String>) {
    let spec = p.spec.clone().unwrap_or_default();
    (
        spec.init_containers
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.name)
            .collect(),
        spec.containers.into_iter().map(|c| c.name).collect(),
    )
}

/// Whether a container of the pod has started at least once (running, terminated, or
/// restarted after a termination): from then on the kubelet has a log for it.
pub fn container_started(p: &Pod, name: &str) -> bool {
    let s = p.status.clone().unwrap_or_default();
    s.init_container_statuses
        .unwrap_or_default()
        .into_iter()
        .chain(s.container_statuses.unwrap_or_default())
        .filter(|c| c.name == name)
        .any(|c| {
            let state = c.state.unwrap_or_default();
            state.running.is_some()
                || state.terminated.is_some()
                || c.last_state.is_some_and(|l| l.terminated.is_some())
        })
}

/// Why a pod's container has no logs yet (waiting reason), by container name.
pub fn waiting_reasons(p: &Pod) -> BTreeMap<String, String> {
    let s = p.status.clone().unwrap_or_default();
    s.init_container_statuses
        .unwrap_or_default()
        .into_iter()
        .chain(s.container_statuses.unwrap_or_default())
        .filter_map(|c| {
            let w = c.state?.waiting?;
            Some((
                c.name,
                format!(
                    "{}{}",
                    w.reason.unwrap_or_default(),
                    w.message.map(|m| format!(": {m}")).unwrap_or_default()
                ),
            ))
        })
        .collect()
}

/// Follows one container's log, handing each line to `on_line` until it returns false,
/// the stream ends, or `deadline` passes. Returns how many lines were read.
pub async fn follow_logs(
    kube: &KubeTarget,
    ns: &str,
    pod: &str,
    container: &str,
    deadline: tokio::time::Instant,
    on_line: &mut (dyn FnMut(&str) -> bool + Send),
) -> Result<usize, KubeError> {
    let api: Api<Pod> = Api::namespaced(kube.client.clone(), ns);
    let lp = LogParams {
        container: Some(container.to_string()),
        follow: true,
        ..Default::default()
    };
    let what = format!("logs of {ns}/{pod} container {container}");
    let stream = tokio::time::timeout_at(deadline, api.log_stream(pod, &lp))
        .await
        .map_err(|_| KubeError::Other(format!("{what}: timed out")))?
        .map_err(|e| KubeError::api(what.clone(), e))?;
    let mut lines = stream.lines();
    let mut n = 0;
    loop {
        match tokio::time::timeout_at(deadline, lines.next()).await {
            Err(_) | Ok(None) => return Ok(n),
            Ok(Some(Err(e))) => return Err(KubeError::Other(format!("{what}: {e}"))),
            Ok(Some(Ok(line))) => {
                n += 1;
                if !on_line(&line) {
                    return Ok(n);
                }
            }
        }
    }
}
