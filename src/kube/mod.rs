//! Kubernetes access (kube-rs): connect from a kubeconfig and context, and the objects the
//! procedure touches. Only thin, typed helpers live here; the steps decide what to do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ::kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::{Client, Config};
use k8s_openapi::api::authentication::v1::{
    TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec, TokenReviewStatus,
};
use k8s_openapi::api::core::v1::{Namespace, Secret as KubeSecret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};

use crate::secret::Secret;

pub mod workloads;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig { path: String, reason: String },
    #[error("kubeconfig {path}: context {context:?} not found (available: {available})")]
    UnknownContext {
        path: String,
        context: String,
        available: String,
    },
    #[error("cannot reach the Kubernetes API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{action}: {reason}")]
    Api {
        action: String,
        reason: String,
        status: Option<u16>,
    },
    #[error("{0}")]
    Other(String),
}

impl KubeError {
    pub fn api(action: impl Into<String>, err: ::kube::Error) -> Self {
        let status = match &err {
            ::kube::Error::Api(s) => Some(s.code),
            _ => None,
        };
        let reason = match &err {
            ::kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
            other => other.to_string(),
        };
        KubeError::Api {
            action: action.into(),
            reason,
            status,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            KubeError::Api { status, .. } => *status,
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// A connected cluster: the client plus what Vault's auth config needs to know about it.
#[derive(Clone)]
pub struct KubeTarget {
    pub client: Client,
    pub api_url: String,
    /// The API server's CA, from `certificate-authority(-data)`; None when the kubeconfig
    /// trusts the system roots.
    pub ca_pem: Option<String>,
    pub context: String,
    pub kubeconfig: Option<PathBuf>,
}

impl std::fmt::Debug for KubeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeTarget")
            .field("api_url", &self.api_url)
            .field("context", &self.context)
            .finish()
    }
}

/// Reads a kubeconfig (a path, or KUBECONFIG / ~/.kube/config as kubectl does) and connects
/// with the given context (else the current one).
pub async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<KubeTarget, KubeError> {
    let (kc, path) = match kubeconfig {
        Some(p) => {
            let kc = Kubeconfig::read_from(p).map_err(|e| KubeError::Kubeconfig {
                path: p.display().to_string(),
                reason: error_chain(&e),
            })?;
            (kc, Some(p.to_path_buf()))
        }
        None => {
            let kc = Kubeconfig::read().map_err(|e| KubeError::Kubeconfig {
                path: std::env::var("KUBECONFIG").unwrap_or_else(|_| "~/.kube/config".into()),
                reason: error_chain(&e),
            })?;
            (kc, None)
        }
    };
    let shown = path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "KUBECONFIG".into());
    let context_name = match context {
        Some(c) => c.to_string(),
        None => kc
            .current_context
            .clone()
            .ok_or_else(|| KubeError::Kubeconfig {
                path: shown.clone(),
                reason: "no current-context and no context given".into(),
            })?,
    };
    let ctx = kc
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .ok_or_else(|| KubeError::UnknownContext {
            path: shown.clone(),
            context: context_name.clone(),
            available: kc
                .contexts
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let cluster_name = ctx
        .context
        .as_ref()
        .map(|c| c.cluster.clone())
        .unwrap_or_default();
    let ca_pem = kc
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| {
            if let Some(data) = &c.certificate_authority_data {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
            } else {
                c.certificate_authority
                    .as_ref()
                    .and_then(|f| std::fs::read_to_string(f).ok())
            }
        });
    let options = KubeConfigOptions {
        context: Some(context_name.clone()),
        ..Default::default()
    };
    let config = Config::from_custom_kubeconfig(kc, &options)
        .await
        .map_err(|e| KubeError::Kubeconfig {
            path: shown.clone(),
            reason: error_chain(&e),
        })?;
    let api_url = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string();
    let client = Client::try_from(config).map_err(|e| KubeError::Kubeconfig {
        path: shown,
        reason: error_chain(&e),
    })?;
    Ok(KubeTarget {
        client,
        api_url,
        ca_pem,
        context: context_name,
        kubeconfig: path,
    })
}

/// The full cause chain of an error in one line (kube's errors nest the useful part).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl KubeTarget {
    /// GET /version: the server's git version, proving reachability and auth.
    pub async fn server_version(&self) -> Result<String, KubeError> {
        self.client
            .apiserver_version()
            .await
            .map(|v| v.git_version)
            .map_err(|e| KubeError::Unreachable {
                url: self.api_url.clone(),
                reason: error_chain(&e),
            })
    }

    pub async fn get_namespace(&self, name: &str) -> Result<Option<Namespace>, KubeError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.get_opt(name)
            .await
            .map_err(|e| KubeError::api(format!("get namespace {name}"), e))
    }

    pub async fn create_namespace(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Namespace, KubeError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .map_err(|e| KubeError::api(format!("create namespace {name}"), e))
    }

    pub async fn delete_namespace(&self, name: &str) -> Result<(), KubeError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        ignore_not_found(api.delete(name, &DeleteParams::default()).await.map(|_| ()))
            .map_err(|e| KubeError::api(format!("delete namespace {name}"), e))
    }

    pub async fn get_service_account(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<ServiceAccount>, KubeError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        api.get_opt(name)
            .await
            .map_err(|e| KubeError::api(format!("get serviceaccount {ns}/{name}"), e))
    }

    pub async fn create_service_account(
        &self,
        ns: &str,
        name: &str,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
    ) -> Result<ServiceAccount, KubeError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                labels: Some(labels),
                annotations: Some(annotations),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &sa)
            .await
            .map_err(|e| KubeError::api(format!("create serviceaccount {ns}/{name}"), e))
    }

    pub async fn delete_service_account(&self, ns: &str, name: &str) -> Result<(), KubeError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        ignore_not_found(api.delete(name, &DeleteParams::default()).await.map(|_| ()))
            .map_err(|e| KubeError::api(format!("delete serviceaccount {ns}/{name}"), e))
    }

    pub async fn get_secret(&self, ns: &str, name: &str) -> Result<Option<KubeSecret>, KubeError> {
        let api: Api<KubeSecret> = Api::namespaced(self.client.clone(), ns);
        api.get_opt(name)
            .await
            .map_err(|e| KubeError::api(format!("get secret {ns}/{name}"), e))
    }

    /// A `kubernetes.io/service-account-token` Secret for `sa` (not auto-created since 1.24).
    pub async fn create_token_secret(
        &self,
        ns: &str,
        name: &str,
        sa: &str,
    ) -> Result<KubeSecret, KubeError> {
        let api: Api<KubeSecret> = Api::namespaced(self.client.clone(), ns);
        let secret = KubeSecret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                annotations: Some(BTreeMap::from([(
                    "kubernetes.io/service-account.name".to_string(),
                    sa.to_string(),
                )])),
                ..Default::default()
            },
            type_: Some("kubernetes.io/service-account-token".into()),
            ..Default::default()
        };
        api.create(&PostParams::default(), &secret)
            .await
            .map_err(|e| KubeError::api(format!("create secret {ns}/{name}"), e))
    }

    pub async fn delete_secret(&self, ns: &str, name: &str) -> Result<(), KubeError> {
        let api: Api<KubeSecret> = Api::namespaced(self.client.clone(), ns);
        ignore_not_found(api.delete(name, &DeleteParams::default()).await.map(|_| ()))
            .map_err(|e| KubeError::api(format!("delete secret {ns}/{name}"), e))
    }

    /// Waits until the token controller has filled `data.token`, calling `progress` each
    /// second with the elapsed time.
    pub async fn wait_for_token(
        &self,
        ns: &str,
        name: &str,
        timeout: Duration,
        progress: &(dyn Fn(Duration) + Sync),
    ) -> Result<Secret, KubeError> {
        let started = std::time::Instant::now();
        let mut last_report = Duration::ZERO;
        loop {
            if let Some(s) = self.get_secret(ns, name).await?
                && let Some(token) = token_of(&s)
            {
                return Ok(token);
            }
            let elapsed = started.elapsed();
            if elapsed > timeout {
                return Err(KubeError::Other(format!(
                    "secret {ns}/{name} got no token within {}s: is kube-controller-manager's serviceaccount-token controller running?",
                    timeout.as_secs()
                )));
            }
            if elapsed - last_report >= Duration::from_secs(1) {
                progress(elapsed);
                last_report = elapsed;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A bound token from the TokenRequest API (the fallback when no token Secret is wanted).
    pub async fn request_token(
        &self,
        ns: &str,
        sa: &str,
        seconds: i64,
    ) -> Result<Secret, KubeError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        let req = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(seconds),
                ..Default::default()
            },
            ..Default::default()
        };
        let resp: TokenRequest = api
            .create_subresource("token", sa, &PostParams::default(), &req)
            .await
            .map_err(|e| KubeError::api(format!("create token for serviceaccount {ns}/{sa}"), e))?;
        resp.status
            .map(|s| Secret::new(s.token))
            .ok_or_else(|| KubeError::Other("TokenRequest returned no status".into()))
    }

    pub async fn get_cluster_role_binding(
        &self,
        name: &str,
    ) -> Result<Option<ClusterRoleBinding>, KubeError> {
        let api: Api<ClusterRoleBinding> = Api::all(self.client.clone());
        api.get_opt(name)
            .await
            .map_err(|e| KubeError::api(format!("get clusterrolebinding {name}"), e))
    }

    pub async fn create_cluster_role_binding(
        &self,
        name: &str,
        cluster_role: &str,
        sa_ns: &str,
        sa: &str,
    ) -> Result<ClusterRoleBinding, KubeError> {
        let api: Api<ClusterRoleBinding> = Api::all(self.client.clone());
        let crb = ClusterRoleBinding {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: cluster_role.into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: sa.into(),
                namespace: Some(sa_ns.into()),
                ..Default::default()
            }]),
        };
        api.create(&PostParams::default(), &crb)
            .await
            .map_err(|e| KubeError::api(format!("create clusterrolebinding {name}"), e))
    }

    pub async fn delete_cluster_role_binding(&self, name: &str) -> Result<(), KubeError> {
        let api: Api<ClusterRoleBinding> = Api::all(self.client.clone());
        ignore_not_found(api.delete(name, &DeleteParams::default()).await.map(|_| ()))
            .map_err(|e| KubeError::api(format!("delete clusterrolebinding {name}"), e))
    }

    /// TokenReview of `token`, authenticated as this client (admin, or a reviewer client).
    pub async fn token_review(&self, token: &Secret) -> Result<TokenReviewStatus, KubeError> {
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.expose().to_string()),
                audiences: None,
            },
            ..Default::default()
        };
        let resp = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| KubeError::api("create tokenreview", e))?;
        Ok(resp.status.unwrap_or_default())
    }

    /// The same cluster, authenticated with a bearer token instead of the kubeconfig user
    /// (to act as Vault's reviewer does).
    pub fn as_bearer(&self, token: &Secret) -> Result<KubeTarget, KubeError> {
        let url: http::Uri = self
            .api_url
            .parse()
            .map_err(|e: http::uri::InvalidUri| KubeError::Other(e.to_string()))?;
        let mut config = Config::new(url);
        config.auth_info.token = Some(token.expose().to_string().into());
        if let Some(ca) = &self.ca_pem {
            let ders: Vec<Vec<u8>> = pem::parse_many(ca)
                .map_err(|e| KubeError::Other(e.to_string()))?
                .into_iter()
                .map(|p| p.into_contents())
                .collect();
            config.root_cert = Some(ders);
        }
        let client = Client::try_from(config).map_err(|e| KubeError::Other(error_chain(&e)))?;
        Ok(KubeTarget {
            client,
            ..self.clone()
        })
    }
}

/// `data.token` of a token Secret, if the controller filled it.
pub fn token_of(secret: &KubeSecret) -> Option<Secret> {
    let bytes = secret.data.as_ref()?.get("token")?;
    let text = String::from_utf8(bytes.0.clone()).ok()?;
    (!text.is_empty()).then(|| Secret::new(text))
}

fn ignore_not_found(result: Result<(), ::kube::Error>) -> Result<(), ::kube::Error> {
    match result {
        Err(::kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other,
    }
}

/// The istiod Deployment in `ns`: label `app=istiod`, else a name starting with `istiod`.
pub async fn istiod_deployment(
    kube: &KubeTarget,
    ns: &str,
) -> Result<Option<k8s_openapi::api::apps::v1::Deployment>, KubeError> {
    use k8s_openapi::api::apps::v1::Deployment;
    let api: Api<Deployment> = Api::namespaced(kube.client.clone(), ns);
    let list = api
        .list(&::kube::api::ListParams::default())
        .await
        .map_err(|e| KubeError::api(format!("list deployments in {ns}"), e))?;
    let labelled = list.items.iter().find(|d| {
        d.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app"))
            .map(String::as_str)
            == Some("istiod")
    });
    let named = list.items.iter().find(|d| {
        d.metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with("istiod"))
    });
    Ok(labelled.or(named).cloned())
}

/// Pod-template annotations and the `discovery` container's env of a Deployment.
pub fn pod_template_wiring(
    d: &k8s_openapi::api::apps::v1::Deployment,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let template = d.spec.as_ref().map(|s| &s.template);
    let annotations = template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    let containers = template
        .and_then(|t| t.spec.as_ref())
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let container = containers
        .iter()
        .find(|c| c.name == "discovery")
        .or_else(|| containers.first());
    let env = container
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| e.value.map(|v| (e.name, v)))
        .collect();
    (annotations, env)
}

/// SubjectAccessReview: may `user` create `tokenreviews.authentication.k8s.io`?
pub async fn can_create_tokenreviews(
    kube: &KubeTarget,
    user: &str,
) -> Result<(bool, String), KubeError> {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let api: Api<SubjectAccessReview> = Api::all(kube.client.clone());
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_string()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                group: Some("authentication.k8s.io".into()),
                resource: Some("tokenreviews".into()),
                verb: Some("create".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let resp = api
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| KubeError::api("create subjectaccessreview", e))?;
    let status = resp.status.unwrap_or_default();
    Ok((status.allowed, status.reason.unwrap_or_default()))
}

/// May the kubeconfig user `verb` the `resource` (SelfSubjectAccessReview)?
pub async fn can_i(
    kube: &KubeTarget,
    verb: &str,
    group: &str,
    resource: &str,
    ns: Option<&str>,
) -> Result<bool, KubeError> {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(kube.client.clone());
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.into()),
                resource: Some(resource.into()),
                verb: Some(verb.into()),
                namespace: ns.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let resp = api
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| KubeError::api("create selfsubjectaccessreview", e))?;
    Ok(resp.status.map(|s| s.allowed).unwrap_or(false))
}
