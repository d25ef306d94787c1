//! The doctor: walks, with the real APIs, the chain behind istiod's "permission denied":
//! ServiceAccount and token → TokenReview as Vault does it → auth mount and config → role
//! → login → capabilities on the secret path → read and check the PEMs → istiod wiring.
//! Each link reports OK / FAIL / SKIPPED with the servers' own answers as evidence and a
//! concrete fix. The diagnosis is derived from those answers, not from a list of known
//! mistakes: a link fails when the live response says it does.

pub mod cli;

use serde::Serialize;
use serde_json::Value;

use crate::config::ClusterConfig;
use crate::kube::KubeTarget;
use crate::plan::steps::normalise_pem;
use crate::secret::Secret;
use crate::vault::{VaultTarget, kv_api_path, string_list};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LinkStatus {
    Ok,
    Fail,
    Skipped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkId {
    KubernetesIdentity,
    TokenReview,
    AuthMount,
    Role,
    Login,
    Capabilities,
    Read,
    Wiring,
}

impl LinkId {
    pub fn title(self) -> &'static str {
        match self {
            LinkId::KubernetesIdentity => {
                "Kubernetes identity (ServiceAccount, token, auth-delegator)"
            }
            LinkId::TokenReview => "TokenReview as Vault does it",
            LinkId::AuthMount => "Vault auth mount and config",
            LinkId::Role => "Vault role",
            LinkId::Login => "Login with the ServiceAccount JWT",
            LinkId::Capabilities => "Capabilities on the secret path",
            LinkId::Read => "Read and check the CA bundle",
            LinkId::Wiring => "istiod wiring (annotations, env, injector)",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Link {
    pub id: LinkId,
    pub title: String,
    pub status: LinkStatus,
    /// What the servers answered.
    pub evidence: Vec<String>,
    /// A concrete command or edit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    pub cluster: String,
    pub links: Vec<Link>,
}

impl Diagnosis {
    pub fn first_failure(&self) -> Option<&Link> {
        self.links.iter().find(|l| l.status == LinkStatus::Fail)
    }
    pub fn healthy(&self) -> bool {
        self.first_failure().is_none()
    }
}

/// What the doctor needs for one cluster.
pub struct DoctorTarget {
    pub cluster: ClusterConfig,
    pub kube: KubeTarget,
    pub vault: VaultTarget,
    pub kv_version: u8,
    /// Where the injector would be installed from, for the fix command.
    pub istio: crate::config::IstioSection,
}

struct Walk<'a> {
    t: &'a DoctorTarget,
    links: Vec<Link>,
    /// Set once a link fails: later links that depend on it are skipped.
    broken: Option<LinkId>,
    sa_name: String,
    jwt: Option<Secret>,
    audiences: Vec<String>,
    login_token: Option<Secret>,
    kv_version: u8,
}

impl Walk<'_> {
    fn push(&mut self, id: LinkId, status: LinkStatus, evidence: Vec<String>, fix: Option<String>) {
        if status == LinkStatus::Fail && self.broken.is_none() {
            self.broken = Some(id);
        }
        self.links.push(Link {
            id,
            title: id.title().into(),
            status,
            evidence,
            fix,
        });
    }
    fn skip(&mut self, id: LinkId, why: String) {
        self.push(id, LinkStatus::Skipped, vec![why], None);
    }
    fn kubectl(&self) -> String {
        crate::shell::kubectl(
            self.t.cluster.kubeconfig.as_deref(),
            Some(&self.t.kube.context),
        )
    }
}

fn denied_or(e: &crate::vault::VaultError, what: &str) -> String {
    if e.is_permission_denied() {
        format!(
            "no permission to read {what} with the operator's token ({e}): cannot judge this link"
        )
    } else {
        e.to_string()
    }
}

/// Runs the whole chain for one cluster.
pub async fn diagnose(t: &DoctorTarget) -> Diagnosis {
    let mut w = Walk {
        t,
        links: Vec::new(),
        broken: None,
        sa_name: t.cluster.istiod_service_account.clone(),
        jwt: None,
        audiences: Vec::new(),
        login_token: None,
        kv_version: t.kv_version,
    };
    identity(&mut w).await;
    token_review(&mut w).await;
    auth_mount(&mut w).await;
    role(&mut w).await;
    login(&mut w).await;
    capabilities(&mut w).await;
    read(&mut w).await;
    wiring(&mut w).await;
    Diagnosis {
        cluster: t.cluster.name.clone(),
        links: w.links,
    }
}

async fn identity(w: &mut Walk<'_>) {
    let n = &w.t.cluster.names;
    let kube = &w.t.kube;
    let mut ev = Vec::new();
    // A revisioned install runs as istiod-<rev>: take the Deployment's serviceAccountName.
    if let Ok(Some(d)) = crate::kube::istiod_deployment(kube, &n.namespace).await
        && let Some(sa) = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.service_account_name.clone())
    {
        ev.push(format!(
            "istiod Deployment {} runs as ServiceAccount {sa}",
            d.metadata.name.clone().unwrap_or_default()
        ));
        w.sa_name = sa;
    }
    let sa = w.sa_name.clone();
    match kube.get_service_account(&n.namespace, &sa).await {
        Ok(Some(_)) => ev.push(format!("ServiceAccount {}/{sa} exists", n.namespace)),
        Ok(None) => {
            let fix = format!(
                "{} -n {} create serviceaccount {sa}   (or run `istio-vault-wizard apply --step service-account`)",
                w.kubectl(),
                n.namespace
            );
            ev.push(format!(
                "GET serviceaccounts/{sa} in {}: 404 Not Found",
                n.namespace
            ));
            return w.push(LinkId::KubernetesIdentity, LinkStatus::Fail, ev, Some(fix));
        }
        Err(e) => {
            ev.push(e.to_string());
            return w.push(
                LinkId::KubernetesIdentity,
                LinkStatus::Fail,
                ev,
                Some("check the kubeconfig's access to the cluster".into()),
            );
        }
    }
    let secret_fix = format!(
        "recreate the token Secret and give Vault the new reviewer token: `istio-vault-wizard apply --step token-secret` then `vault write auth/{}/config token_reviewer_jwt=\"$({} -n {} get secret {} -o jsonpath='{{.data.token}}' | base64 -d)\" kubernetes_host=... kubernetes_ca_cert=@ca.pem`",
        n.auth_path,
        w.kubectl(),
        n.namespace,
        n.token_secret
    );
    match kube.get_secret(&n.namespace, &n.token_secret).await {
        Ok(Some(s)) => match crate::kube::token_of(&s) {
            Some(tok) => {
                ev.push(format!(
                    "token Secret {}/{} holds a token ({} bytes)",
                    n.namespace,
                    n.token_secret,
                    tok.expose().len()
                ));
                w.jwt = Some(tok);
            }
            None => {
                ev.push(format!(
                    "token Secret {}/{} has no data.token",
                    n.namespace, n.token_secret
                ));
                return w.push(
                    LinkId::KubernetesIdentity,
                    LinkStatus::Fail,
                    ev,
                    Some("the token controller has not filled it: check kube-controller-manager (serviceaccount-token controller)".into()),
                );
            }
        },
        Ok(None) => {
            ev.push(format!(
                "GET secrets/{} in {}: 404 Not Found",
                n.token_secret, n.namespace
            ));
            return w.push(
                LinkId::KubernetesIdentity,
                LinkStatus::Fail,
                ev,
                Some(secret_fix),
            );
        }
        Err(e) => {
            ev.push(e.to_string());
            return w.push(LinkId::KubernetesIdentity, LinkStatus::Fail, ev, None);
        }
    }
    let user = format!("system:serviceaccount:{}:{sa}", n.namespace);
    match crate::kube::can_create_tokenreviews(kube, &user).await {
        Ok((true, reason)) => ev.push(format!(
            "SubjectAccessReview: {user} may create tokenreviews ({reason})"
        )),
        Ok((false, reason)) => {
            ev.push(format!("SubjectAccessReview: {user} may NOT create tokenreviews.authentication.k8s.io ({reason})"));
            let fix = format!(
                "{} create clusterrolebinding {} --clusterrole=system:auth-delegator --serviceaccount={}:{sa}",
                w.kubectl(),
                n.reviewer_binding,
                n.namespace
            );
            return w.push(LinkId::KubernetesIdentity, LinkStatus::Fail, ev, Some(fix));
        }
        Err(e) => ev.push(format!(
            "SubjectAccessReview not possible with this kubeconfig: {e}"
        )),
    }
    w.push(LinkId::KubernetesIdentity, LinkStatus::Ok, ev, None);
}

async fn token_review(w: &mut Walk<'_>) {
    let Some(jwt) = w.jwt.clone() else {
        return w.skip(
            LinkId::TokenReview,
            "no ServiceAccount token to review".into(),
        );
    };
    // Vault reviews the istiod token with its configured reviewer JWT; the wizard's setup
    // uses istiod's own token as reviewer, so review it with itself.
    let reviewer = match w.t.kube.as_bearer(&jwt) {
        Ok(r) => r,
        Err(e) => {
            return w.push(
                LinkId::TokenReview,
                LinkStatus::Fail,
                vec![e.to_string()],
                None,
            );
        }
    };
    match reviewer.token_review(&jwt).await {
        Ok(status) => {
            let mut ev = Vec::new();
            let user = status
                .user
                .as_ref()
                .and_then(|u| u.username.clone())
                .unwrap_or_default();
            w.audiences = status.audiences.clone().unwrap_or_default();
            ev.push(format!(
                "TokenReview: authenticated={} user={user:?} audiences={:?}{}",
                status.authenticated.unwrap_or(false),
                w.audiences,
                status
                    .error
                    .as_ref()
                    .map(|e| format!(" error={e:?}"))
                    .unwrap_or_default()
            ));
            if let Some(claims) = jwt_claims(&jwt) {
                ev.push(format!(
                    "token claims: iss={} sub={} exp={}",
                    claims["iss"],
                    claims["sub"],
                    claims
                        .get("exp")
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "none (legacy Secret token)".into())
                ));
            }
            if status.authenticated == Some(true) {
                w.push(LinkId::TokenReview, LinkStatus::Ok, ev, None);
            } else {
                w.push(
                    LinkId::TokenReview,
                    LinkStatus::Fail,
                    ev,
                    Some("the token is expired, revoked or from another cluster: recreate the token Secret and rewrite the auth config's token_reviewer_jwt".into()),
                );
            }
        }
        Err(e) => {
            let fix = if e.status() == Some(403) {
                format!(
                    "{} create clusterrolebinding {} --clusterrole=system:auth-delegator --serviceaccount={}:{}",
                    w.kubectl(),
                    w.t.cluster.names.reviewer_binding,
                    w.t.cluster.names.namespace,
                    w.sa_name
                )
            } else {
                "the reviewer token is not accepted by the API server: recreate the token Secret and rewrite token_reviewer_jwt".into()
            };
            w.push(
                LinkId::TokenReview,
                LinkStatus::Fail,
                vec![format!("TokenReview with the reviewer JWT: {e}")],
                Some(fix),
            );
        }
    }
}

fn jwt_claims(jwt: &Secret) -> Option<Value> {
    use base64::Engine;
    let payload = jwt.expose().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

async fn auth_mount(w: &mut Walk<'_>) {
    let n = &w.t.cluster.names;
    let vault = &w.t.vault;
    let mut ev = Vec::new();
    match vault.auth_mount(&n.auth_path).await {
        Ok(Some(m)) if m.kind == "kubernetes" => ev.push(format!(
            "auth/{} is a kubernetes mount (accessor {})",
            m.path, m.accessor
        )),
        Ok(Some(m)) => {
            ev.push(format!("auth/{} is of type {}", m.path, m.kind));
            return w.push(LinkId::AuthMount, LinkStatus::Fail, ev, Some(format!("use a kubernetes mount: vault auth enable -path={} kubernetes (after moving the {} mount)", n.auth_path, m.kind)));
        }
        Ok(None) => {
            let mounts = vault
                .list_auth_mounts()
                .await
                .map(|v| v.into_iter().map(|m| m.path).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            ev.push(format!(
                "no auth mount at auth/{} (mounts: {mounts})",
                n.auth_path
            ));
            return w.push(LinkId::AuthMount, LinkStatus::Fail, ev, Some(format!("vault auth enable -path={} kubernetes   (or fix the auth-path annotation to an existing mount)", n.auth_path)));
        }
        Err(e) => {
            let why = denied_or(&e, "sys/auth");
            return w.push(
                LinkId::AuthMount,
                if e.is_permission_denied() {
                    LinkStatus::Skipped
                } else {
                    LinkStatus::Fail
                },
                vec![why],
                None,
            );
        }
    }
    let cfg = match vault.read_kubernetes_config(&n.auth_path).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            ev.push(format!("auth/{}/config: not configured", n.auth_path));
            return w.push(
                LinkId::AuthMount,
                LinkStatus::Fail,
                ev,
                Some(format!(
                    "istio-vault-wizard apply --step auth-config (writes auth/{}/config)",
                    n.auth_path
                )),
            );
        }
        Err(e) => {
            ev.push(denied_or(&e, &format!("auth/{}/config", n.auth_path)));
            return w.push(
                LinkId::AuthMount,
                if e.is_permission_denied() {
                    LinkStatus::Skipped
                } else {
                    LinkStatus::Fail
                },
                ev,
                None,
            );
        }
    };
    let host = cfg["kubernetes_host"].as_str().unwrap_or("").to_string();
    let mut problems = Vec::new();
    ev.push(format!("kubernetes_host = {host}"));
    if host.trim_end_matches('/') != w.t.kube.api_url.trim_end_matches('/') {
        problems.push(format!(
            "kubernetes_host {host} is not this cluster's API {}",
            w.t.kube.api_url
        ));
    }
    match reachable(&host, cfg["kubernetes_ca_cert"].as_str()).await {
        Ok(v) => ev.push(format!("{host}/version answers: {v}")),
        Err(e) => problems.push(format!(
            "kubernetes_host {host} is not reachable with kubernetes_ca_cert from here: {e}"
        )),
    }
    let vault_ca = cfg["kubernetes_ca_cert"].as_str().unwrap_or("");
    match &w.t.kube.ca_pem {
        Some(ca) if normalise_pem(ca) == normalise_pem(vault_ca) => {
            ev.push("kubernetes_ca_cert matches the cluster's CA".into())
        }
        Some(ca) => problems.push(format!(
            "kubernetes_ca_cert (subject {}) is not the cluster's CA (subject {})",
            pem_subject(vault_ca),
            pem_subject(ca)
        )),
        None => ev.push("the kubeconfig carries no CA to compare with".into()),
    }
    match cfg.get("token_reviewer_jwt_set").and_then(Value::as_bool) {
        Some(true) => ev.push("token_reviewer_jwt is set".into()),
        Some(false) => problems.push("token_reviewer_jwt is not set: Vault outside the cluster has no token to call TokenReview with".into()),
        None => ev.push("server does not say whether token_reviewer_jwt is set".into()),
    }
    if cfg["disable_local_ca_jwt"] != Value::Bool(true) {
        problems.push("disable_local_ca_jwt is false: a Vault outside the cluster should not use a local CA/JWT".into());
    }
    if let Some(iss) = cfg["issuer"].as_str().filter(|s| !s.is_empty()) {
        ev.push(format!(
            "issuer = {iss} (OpenBao/Vault no longer validate it by default)"
        ));
    }
    if problems.is_empty() {
        w.push(LinkId::AuthMount, LinkStatus::Ok, ev, None);
    } else {
        ev.extend(problems.iter().cloned());
        let fix = format!(
            "vault write auth/{}/config kubernetes_host={} kubernetes_ca_cert=@ca-{}.pem token_reviewer_jwt=\"$TOKEN\" disable_local_ca_jwt=true   (ca from the kubeconfig's certificate-authority-data, TOKEN from secret {}/{})",
            n.auth_path, w.t.kube.api_url, w.t.cluster.name, n.namespace, n.token_secret
        );
        w.push(LinkId::AuthMount, LinkStatus::Fail, ev, Some(fix));
    }
}

fn pem_subject(pem: &str) -> String {
    let der = match ::pem::parse(pem.as_bytes()) {
        Ok(p) => p.into_contents(),
        Err(_) => return "unparseable".into(),
    };
    match x509_parser::parse_x509_certificate(&der) {
        Ok((_, c)) => c.subject().to_string(),
        Err(_) => "unparseable".into(),
    }
}

async fn reachable(host: &str, ca: Option<&str>) -> Result<String, String> {
    let mut b = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .no_proxy();
    if let Some(ca) = ca.filter(|c| !c.trim().is_empty()) {
        let cert = reqwest::Certificate::from_pem(ca.as_bytes()).map_err(|e| e.to_string())?;
        b = b.tls_certs_only([cert]);
    }
    let client = b.build().map_err(|e| e.to_string())?;
    let resp = client
        .get(format!("{}/version", host.trim_end_matches('/')))
        .send()
        .await
        .map_err(|e| crate::kube::error_chain(&e))?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    Ok(format!(
        "{status} {}",
        body["gitVersion"].as_str().unwrap_or("")
    ))
}

fn matches_bound(bound: &[String], actual: &str) -> bool {
    bound.iter().any(|b| {
        b == "*" || b == actual || (b.ends_with('*') && actual.starts_with(b.trim_end_matches('*')))
    })
}

async fn role(w: &mut Walk<'_>) {
    let n = &w.t.cluster.names;
    if w.broken == Some(LinkId::AuthMount)
        && w.links
            .last()
            .is_some_and(|l| l.evidence.iter().any(|e| e.starts_with("no auth mount")))
    {
        return w.skip(LinkId::Role, format!("auth/{} does not exist", n.auth_path));
    }
    let role = match w.t.vault.read_role(&n.auth_path, &n.role).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            let roles = w.t.vault.list_roles(&n.auth_path).await.unwrap_or_default();
            return w.push(
                LinkId::Role,
                LinkStatus::Fail,
                vec![format!(
                    "auth/{}/role/{}: 404 (roles: {:?})",
                    n.auth_path, n.role, roles
                )],
                Some(role_fix(w)),
            );
        }
        Err(e) => {
            let st = if e.is_permission_denied() {
                LinkStatus::Skipped
            } else {
                LinkStatus::Fail
            };
            return w.push(LinkId::Role, st, vec![denied_or(&e, "the role")], None);
        }
    };
    let names = string_list(&role["bound_service_account_names"]);
    let nss = string_list(&role["bound_service_account_namespaces"]);
    let mut policies = string_list(&role["token_policies"]);
    if policies.is_empty() {
        policies = string_list(&role["policies"]);
    }
    let mut ev = vec![format!(
        "role {}: bound_service_account_names={names:?} bound_service_account_namespaces={nss:?} token_policies={policies:?}",
        n.role
    )];
    let mut problems = Vec::new();
    if !matches_bound(&names, &w.sa_name) {
        problems.push(format!(
            "bound_service_account_names {names:?} does not include the ServiceAccount {:?}",
            w.sa_name
        ));
    }
    if !matches_bound(&nss, &n.namespace) {
        problems.push(format!(
            "bound_service_account_namespaces {nss:?} does not include the namespace {:?}",
            n.namespace
        ));
    }
    if let Some(aud) = role["audience"].as_str().filter(|a| !a.is_empty()) {
        if w.audiences.is_empty() || w.audiences.iter().any(|a| a == aud) {
            ev.push(format!(
                "audience {aud:?} (token audiences {:?})",
                w.audiences
            ));
        } else {
            problems.push(format!(
                "audience {aud:?} is not among the token's audiences {:?}",
                w.audiences
            ));
        }
    }
    if !policies.contains(&n.policy) {
        problems.push(format!("token_policies {policies:?} lack {:?}", n.policy));
    }
    if problems.is_empty() {
        w.push(LinkId::Role, LinkStatus::Ok, ev, None);
    } else {
        ev.extend(problems);
        let fix = role_fix(w);
        w.push(LinkId::Role, LinkStatus::Fail, ev, Some(fix));
    }
}

fn role_fix(w: &Walk<'_>) -> String {
    let n = &w.t.cluster.names;
    format!(
        "vault write auth/{}/role/{} bound_service_account_names={} bound_service_account_namespaces={} policies={} ttl={}",
        n.auth_path, n.role, w.sa_name, n.namespace, n.policy, n.token_ttl
    )
}

async fn login(w: &mut Walk<'_>) {
    let n = &w.t.cluster.names;
    let Some(jwt) = w.jwt.clone() else {
        return w.skip(
            LinkId::Login,
            "no ServiceAccount JWT (see Kubernetes identity)".into(),
        );
    };
    match w
        .t
        .vault
        .kubernetes_login(&n.auth_path, &n.role, &jwt)
        .await
    {
        Ok(login) => {
            let ev = vec![format!(
                "POST auth/{}/login role={}: token with policies {:?}",
                n.auth_path, n.role, login.policies
            )];
            w.login_token = Some(login.token);
            w.push(LinkId::Login, LinkStatus::Ok, ev, None);
        }
        Err(e) => {
            // Vault says only "permission denied": point at the earlier failing link if any.
            let fix = match w.broken {
                Some(l) => format!("fix the failing link first: {}", l.title()),
                None => "Vault refused the login although every link before looks right: read Vault's audit log for auth/*/login".into(),
            };
            w.push(
                LinkId::Login,
                LinkStatus::Fail,
                vec![format!(
                    "POST auth/{}/login role={}: {e}",
                    n.auth_path, n.role
                )],
                Some(fix),
            );
        }
    }
}

async fn capabilities(w: &mut Walk<'_>) {
    let n = &w.t.cluster.names;
    // KV version from the mount itself, not from the config.
    match w.t.vault.secret_mount(&n.kv_mount).await {
        Ok(Some(m)) => w.kv_version = m.kv_version(),
        Ok(None) => {
            return w.push(
                LinkId::Capabilities,
                LinkStatus::Fail,
                vec![format!("no secrets engine at {}", n.kv_mount)],
                Some(format!(
                    "vault secrets enable -path={} -version={} kv",
                    n.kv_mount, w.t.kv_version
                )),
            );
        }
        Err(e) => w.links.push(Link {
            id: LinkId::Capabilities,
            title: "note".into(),
            status: LinkStatus::Skipped,
            evidence: vec![denied_or(&e, "sys/mounts")],
            fix: None,
        }),
    }
    w.links.retain(|l| l.title != "note");
    let Some(token) = w.login_token.clone() else {
        return w.skip(LinkId::Capabilities, "no Vault token from the login".into());
    };
    let path = kv_api_path(&n.kv_mount, &n.secret_path, w.kv_version);
    match w.t.vault.capabilities_self(&token, &path).await {
        Ok(caps) if caps.iter().any(|c| c == "read" || c == "root") => w.push(
            LinkId::Capabilities,
            LinkStatus::Ok,
            vec![format!(
                "capabilities on {path} (KV v{}): {caps:?}",
                w.kv_version
            )],
            None,
        ),
        Ok(caps) => {
            let mut ev = vec![format!(
                "capabilities on {path} (KV v{}): {caps:?}: read is missing",
                w.kv_version
            )];
            let other = kv_api_path(
                &n.kv_mount,
                &n.secret_path,
                if w.kv_version == 2 { 1 } else { 2 },
            );
            if let Ok(c2) = w.t.vault.capabilities_self(&token, &other).await
                && c2.iter().any(|c| c == "read")
            {
                ev.push(format!(
                    "the token can read {other} instead: the policy uses the KV v{} path form, the mount is KV v{}",
                    if w.kv_version == 2 { 1 } else { 2 },
                    w.kv_version
                ));
            }
            let fix = format!(
                "vault policy write {} - <<'EOF'\n{}EOF",
                n.policy,
                crate::plan::steps::policy_text(w.kv_version, &w.t.cluster.name, &path)
            );
            w.push(LinkId::Capabilities, LinkStatus::Fail, ev, Some(fix));
        }
        Err(e) => w.push(
            LinkId::Capabilities,
            LinkStatus::Fail,
            vec![e.to_string()],
            None,
        ),
    }
}

const KEYS: [&str; 4] = ["ca_key", "ca_cert", "cert_chain", "root_cert"];

async fn read(w: &mut Walk<'_>) {
    let n = &w.t.cluster.names;
    let token = w.login_token.clone();
    let who = if token.is_some() {
        "istiod's token"
    } else {
        "the operator's token"
    };
    let path = kv_api_path(&n.kv_mount, &n.secret_path, w.kv_version);
    let secret = match w
        .t
        .vault
        .kv_read(&n.kv_mount, &n.secret_path, w.kv_version, token.as_ref())
        .await
    {
        Ok(Some(s)) => s,
        Ok(None) => {
            return w.push(
                LinkId::Read,
                LinkStatus::Fail,
                vec![format!("GET {path} with {who}: 404, no secret")],
                Some(format!(
                    "istio-vault-wizard apply --step kv-secret (writes {path})"
                )),
            );
        }
        Err(e) => {
            let st = if token.is_none() && e.is_permission_denied() {
                LinkStatus::Skipped
            } else {
                LinkStatus::Fail
            };
            return w.push(
                LinkId::Read,
                st,
                vec![format!("GET {path} with {who}: {e}")],
                None,
            );
        }
    };
    let present: Vec<&str> = KEYS
        .iter()
        .copied()
        .filter(|k| secret.data.contains_key(*k))
        .collect();
    let missing: Vec<&str> = KEYS
        .iter()
        .copied()
        .filter(|k| !secret.data.contains_key(*k))
        .collect();
    let mut ev = vec![format!("GET {path} with {who}: keys present {present:?}")];
    if !missing.is_empty() {
        ev.push(format!("missing keys {missing:?}: the agent template would render \"<no value>\" (or fail with error-on-missing-key)"));
        return w.push(
            LinkId::Read,
            LinkStatus::Fail,
            ev,
            Some(format!(
                "vault kv put {}{} ca_key=@ca-key.pem ca_cert=@ca-cert.pem cert_chain=@cert-chain.pem root_cert=@root-cert.pem",
                if w.kv_version == 2 { format!("-mount={} ", n.kv_mount) } else { format!("{}/", n.kv_mount) },
                n.secret_path
            )),
        );
    }
    let get = |k: &str| secret.data.get(k).map(String::as_str);
    let findings = crate::certs::check_bundle_pems(
        get("ca_key"),
        get("ca_cert"),
        get("cert_chain"),
        get("root_cert"),
    );
    let errors: Vec<String> = findings
        .iter()
        .filter(|f| f.is_error())
        .map(|f| f.to_string())
        .collect();
    for f in findings.iter().filter(|f| !f.is_error()) {
        ev.push(f.to_string());
    }
    if errors.is_empty() {
        ev.push("the four PEMs pass the certificate checks".into());
        w.push(LinkId::Read, LinkStatus::Ok, ev, None);
    } else {
        ev.extend(errors);
        w.push(
            LinkId::Read,
            LinkStatus::Fail,
            ev,
            Some(format!(
                "write a valid bundle: istio-vault-wizard certs generate --out certs --cluster {c} && vault kv put {}{} ca_key=@certs/{c}/ca-key.pem ca_cert=@certs/{c}/ca-cert.pem cert_chain=@certs/{c}/cert-chain.pem root_cert=@certs/{c}/root-cert.pem",
                if w.kv_version == 2 { format!("-mount={} ", n.kv_mount) } else { format!("{}/", n.kv_mount) },
                n.secret_path,
                c = w.t.cluster.name
            )),
        );
    }
}

async fn wiring(w: &mut Walk<'_>) {
    let n = &w.t.cluster.names;
    let deployment = match crate::kube::istiod_deployment(&w.t.kube, &n.namespace).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return w.skip(
                LinkId::Wiring,
                format!("no istiod Deployment in {} yet", n.namespace),
            );
        }
        Err(e) => return w.skip(LinkId::Wiring, format!("cannot list Deployments: {e}")),
    };
    let (annotations, env) = crate::kube::pod_template_wiring(&deployment);
    let expected = crate::istio::wiring_for(&w.t.cluster, w.kv_version);
    let findings = crate::istio::check_wiring(&annotations, &env, &expected);
    let mut ev = vec![format!(
        "Deployment {} pod template: {} vault annotations",
        deployment.metadata.name.clone().unwrap_or_default(),
        annotations
            .keys()
            .filter(|k| k.starts_with("vault.hashicorp.com/"))
            .count()
    )];
    match crate::kube::workloads::find_vault_injector(&w.t.kube).await {
        Ok(found) if found.complete() => ev.push(format!(
            "Vault agent injector present: webhook {}, Deployment {} ({} ready)",
            found.webhook.unwrap_or_default(),
            found.deployment.unwrap_or_default(),
            found.ready
        )),
        Ok(found) => {
            ev.push(match (&found.webhook, &found.deployment) {
                (Some(h), None) => format!(
                    "webhook {h} exists but no Vault agent injector Deployment serves it: pods are not mutated"
                ),
                (None, Some(d)) => format!(
                    "injector Deployment {d} exists but no MutatingWebhookConfiguration calls it"
                ),
                _ => "no Vault agent injector (webhook and Deployment): the annotations do nothing"
                    .into(),
            });
            let helm = crate::istio::helm::Helm::new(
                &w.t.istio.helm,
                w.t.cluster.kubeconfig.as_deref(),
                Some(&w.t.kube.context),
            );
            let install = crate::istio::helm::injector_install(&w.t.istio, w.t.vault.address());
            return w.push(
                LinkId::Wiring,
                LinkStatus::Fail,
                ev,
                Some(helm.command_line(&helm.upgrade_install_args(&install))),
            );
        }
        Err(e) => ev.push(format!("cannot look for the injector: {e}")),
    }
    if findings.is_empty() {
        ev.push("annotations, templates and ROOT_CA_DIR match Vault".into());
        w.push(LinkId::Wiring, LinkStatus::Ok, ev, None);
    } else {
        let fix = findings
            .iter()
            .map(|f| f.fix.clone())
            .collect::<Vec<_>>()
            .join("\n");
        ev.extend(findings.iter().map(|f| f.message.clone()));
        w.push(LinkId::Wiring, LinkStatus::Fail, ev, Some(fix));
    }
}
