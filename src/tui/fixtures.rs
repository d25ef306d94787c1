//! Fixed data for snapshots, `update` tests and benchmarks: models built without any
//! network, with deterministic values (no clock, no random ids).

use std::path::Path;

use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::certinfo::CertRow;
use super::connect::Prefill;
use super::keymap::Keymap;
use super::logs::LogLine;
use super::model::{
    EngineHandle, KubeInfo, KubeObjects, KvRow, LiveData, Model, MountRow, PodRow, PolicyRow,
    Probe, RoleRow, RowState, StepRow, VaultInfo,
};
use crate::config::Config;
use crate::doctor::{Diagnosis, Link, LinkId, LinkStatus};
use crate::plan::{Preview, StepId};
use crate::secret::Secret;

/// A fake token that must never appear on screen.
pub const TOKEN: &str = "hvs.FIXTURE-TOKEN-must-never-be-drawn";

pub const CONFIG: &str = r#"state_dir = "state"
[vault]
address = "https://vault.example:8200"
kv_version = 1

[[cluster]]
name = "cluster1"
kubeconfig = "/nonexistent/kubecfg1.yml"
context = "cluster1"

[[cluster]]
name = "cluster2"
kubeconfig = "/nonexistent/kubecfg2.yml"
context = "cluster2"
"#;

pub fn config() -> Config {
    let mut c = crate::config::parse(CONFIG, Some(Path::new("/srv/wizard/wizard.toml")))
        .expect("fixture config parses");
    c.vault.token = Secret::new(TOKEN);
    c.vault.token_source = "VAULT_TOKEN".into();
    c.vault.ca_cert = None;
    c.vault.namespace = None;
    c
}

/// A model without config: the Connect screen, prefilled as from the environment.
pub fn connect_model() -> Model {
    let prefill = Prefill {
        address: "https://vault.example:8200".into(),
        token: TOKEN.into(),
        token_source: "~/.vault-token".into(),
        ca_file: "/nonexistent/ca.pem".into(),
        namespace: String::new(),
        clusters: Vec::new(),
    };
    let mut m = Model::new(None, prefill, Keymap::default(), Vec::new());
    m.color = false;
    m
}

fn preview(summary: &str, changes: &[&str], cmd: &str) -> Preview {
    Preview {
        summary: summary.into(),
        changes: changes.iter().map(|s| s.to_string()).collect(),
        diff: None,
        commands: vec![cmd.into()],
    }
}

pub fn steps() -> Vec<StepRow> {
    let mut rows = Vec::new();
    for cluster in ["cluster1", "cluster2"] {
        // The fixture config names no gateways, so (as in the real plan) no gateways rows.
        for step in StepId::ALL.into_iter().filter(|s| *s != StepId::Gateways) {
            let (title, p) = match step {
                StepId::Namespace => (
                    "Namespace istio-system".to_string(),
                    preview(
                        &format!("Create namespace istio-system in {cluster}"),
                        &["+ namespace/istio-system"],
                        &format!("kubectl --context {cluster} create namespace istio-system"),
                    ),
                ),
                StepId::Policy => (
                    format!("Policy istiod-certs-{cluster}"),
                    Preview {
                        summary: format!("Write policy istiod-certs-{cluster}"),
                        changes: vec![format!("~ policy istiod-certs-{cluster}")],
                        diff: Some(format!(
                            "--- existing\n+++ wanted\n@@ -1,3 +1,3 @@\n-path \"old/{cluster}\" {{\n+path \"kubernetes-{cluster}-secrets/istiod-service/certs\" {{\n   capabilities = [\"read\"]\n }}"
                        )),
                        commands: vec![format!(
                            "vault policy write istiod-certs-{cluster} policy.hcl"
                        )],
                    },
                ),
                StepId::Injector => (
                    "Vault agent injector (webhook and Deployment)".to_string(),
                    preview(
                        "install the Vault agent injector (chart hashicorp/vault) pointing at https://vault.example:8200",
                        &["+ helm release vault/vault-inject"],
                        &format!(
                            "helm upgrade --install vault-inject hashicorp/vault --kube-context {cluster} --namespace vault --create-namespace --set global.externalVaultAddr=https://vault.example:8200 --set injector.enabled=true"
                        ),
                    ),
                ),
                StepId::Istiod => (
                    "istiod reads its CA from /vault/secrets (annotations and ROOT_CA_DIR)"
                        .to_string(),
                    preview(
                        "add the Vault injector annotations and ROOT_CA_DIR to istiod by server-side apply",
                        &[
                            "+ pod annotation vault.hashicorp.com/agent-inject",
                            "+ env ROOT_CA_DIR=/vault/secrets",
                        ],
                        &format!(
                            "kubectl --context {cluster} apply --server-side --field-manager=istio-vault-wizard -f -"
                        ),
                    ),
                ),
                StepId::Verify => (
                    "Verify istiod runs on the CA in Vault".to_string(),
                    preview(
                        "wait for the istiod rollout (up to 300s), follow vault-agent-init and discovery, and compare istiod's x509 lines with Vault",
                        &[],
                        &format!(
                            "kubectl --context {cluster} -n istio-system rollout status deployment/istiod"
                        ),
                    ),
                ),
                s => (
                    format!("{} for {cluster}", s.as_str()),
                    preview(
                        &format!("Set up {} for {cluster}", s.as_str()),
                        &[&format!("+ {}", s.as_str())],
                        &format!("vault-or-kubectl {} {cluster}", s.as_str()),
                    ),
                ),
            };
            let state = match (cluster, step) {
                ("cluster1", StepId::Namespace | StepId::ServiceAccount) => RowState::Done,
                ("cluster1", StepId::TokenSecret) => RowState::Present,
                ("cluster1", StepId::ReviewerBinding) => RowState::Running,
                ("cluster1", StepId::Policy) => RowState::Conflict("policy text differs".into()),
                ("cluster2", StepId::AuthMount) => RowState::Failed {
                    error: "vault: 403 permission denied".into(),
                    hint: Some("the Vault token lacks permission for this call".into()),
                },
                ("cluster2", StepId::Namespace) => RowState::RolledBack,
                (_, StepId::ReadCredentials) => {
                    RowState::Blocked("the token secret has no token yet".into())
                }
                (_, StepId::Verify) => {
                    RowState::Blocked("no istiod Deployment in istio-system yet".into())
                }
                _ => RowState::Absent,
            };
            rows.push(StepRow {
                cluster: cluster.into(),
                step,
                title,
                state,
                preview: p,
                progress: (cluster == "cluster1" && step == StepId::ReviewerBinding)
                    .then(|| "creating clusterrolebinding".to_string()),
                started: None,
                took: None,
            });
        }
    }
    rows
}

pub fn live() -> LiveData {
    let cert = |field: &str, cn: &str, days: i64, sha: char| CertRow {
        field: field.into(),
        subject: format!("O=Istio, CN={cn}"),
        issuer: "O=Istio, CN=Root CA".into(),
        serial: "01:23:45:67:89:ab:cd:ef".into(),
        sha256: std::iter::repeat_n(sha, 64).collect(),
        not_after: "2030-01-01T00:00:00Z".into(),
        days_left: days,
    };
    LiveData {
        mounts: vec![
            MountRow {
                path: "kubernetes-cluster1".into(),
                kind: "kubernetes".into(),
                accessor: "auth_kubernetes_0a1b2c3d".into(),
            },
            MountRow {
                path: "kubernetes-cluster2".into(),
                kind: "kubernetes".into(),
                accessor: "auth_kubernetes_4e5f6a7b".into(),
            },
            MountRow {
                path: "token".into(),
                kind: "token".into(),
                accessor: "auth_token_89abcdef".into(),
            },
        ],
        secret_mounts: Vec::new(),
        policies: vec![
            PolicyRow {
                name: "default".into(),
                text: "# default policy\npath \"auth/token/lookup-self\" {\n  capabilities = [\"read\"]\n}".into(),
            },
            PolicyRow {
                name: "istiod-certs-cluster1".into(),
                text: "path \"kubernetes-cluster1-secrets/istiod-service/certs\" {\n  capabilities = [\"read\"]\n}".into(),
            },
        ],
        kv: vec![
            KvRow {
                cluster: "cluster1".into(),
                mount: "kubernetes-cluster1-secrets".into(),
                path: "istiod-service/certs".into(),
                keys: vec![
                    ("ca_key".into(), true),
                    ("ca_cert".into(), true),
                    ("cert_chain".into(), true),
                    ("root_cert".into(), true),
                ],
                certs: vec![
                    cert("ca_cert", "Intermediate CA", 20, 'a'),
                    cert("root_cert", "Root CA", 3600, 'b'),
                ],
                error: None,
            },
            KvRow {
                cluster: "cluster2".into(),
                mount: "kubernetes-cluster2-secrets".into(),
                path: "istiod-service/certs".into(),
                keys: vec![
                    ("ca_key".into(), false),
                    ("ca_cert".into(), true),
                    ("cert_chain".into(), true),
                    ("root_cert".into(), true),
                ],
                certs: vec![cert("ca_cert", "Intermediate CA", -3, 'c')],
                error: None,
            },
        ],
        kube: vec![
            KubeObjects {
                cluster: "cluster1".into(),
                objects: vec![
                    ("Namespace".into(), "istio-system".into(), Ok("present".into())),
                    ("ServiceAccount".into(), "istiod".into(), Ok("present".into())),
                    (
                        "Secret (token)".into(),
                        "istiod".into(),
                        Ok("present, token: yes".into()),
                    ),
                    (
                        "ClusterRoleBinding".into(),
                        "role-tokenreview-binding".into(),
                        Err("absent".into()),
                    ),
                ],
                istiod: Some("istiod 1/1 ready".into()),
                pods: vec![PodRow {
                    name: "istiod-7d9f8b6c5-x2x4z".into(),
                    phase: "Running".into(),
                    init: vec![("vault-agent-init".into(), "terminated (exit 0, Completed)".into())],
                    containers: vec![("discovery".into(), "running".into())],
                }],
                error: None,
            },
            KubeObjects {
                cluster: "cluster2".into(),
                objects: Vec::new(),
                istiod: None,
                pods: Vec::new(),
                error: Some("cannot reach https://127.0.0.1:6443: connection refused".into()),
            },
        ],
        errors: Vec::new(),
    }
}

pub fn doctor() -> Vec<Diagnosis> {
    let link = |id: LinkId, status: LinkStatus, ev: &[&str], fix: Option<&str>| Link {
        id,
        title: id.title().into(),
        status,
        evidence: ev.iter().map(|s| s.to_string()).collect(),
        fix: fix.map(str::to_string),
    };
    vec![
        Diagnosis {
            cluster: "cluster1".into(),
            links: vec![
                link(
                    LinkId::KubernetesIdentity,
                    LinkStatus::Ok,
                    &["ServiceAccount istio-system/istiod exists"],
                    None,
                ),
                link(
                    LinkId::TokenReview,
                    LinkStatus::Ok,
                    &["authenticated: true"],
                    None,
                ),
                link(
                    LinkId::AuthMount,
                    LinkStatus::Fail,
                    &["auth/kubernetes-cluster1 is not enabled"],
                    Some("vault auth enable -path=kubernetes-cluster1 kubernetes"),
                ),
                link(
                    LinkId::Role,
                    LinkStatus::Skipped,
                    &["after a failed link"],
                    None,
                ),
            ],
        },
        Diagnosis {
            cluster: "cluster2".into(),
            links: vec![link(
                LinkId::KubernetesIdentity,
                LinkStatus::Ok,
                &["ServiceAccount istio-system/istiod exists"],
                None,
            )],
        },
    ]
}

pub fn log_lines(n: usize) -> Vec<LogLine> {
    (0..n)
        .map(|i| LogLine {
            container: if i.is_multiple_of(7) { 0 } else { 1 },
            ts: Some(format!("2024-05-01T10:{:02}:{:02}.000000000Z", (i / 60) % 60, i % 60)),
            text: if i.is_multiple_of(13) {
                format!("error authenticating to vault: permission denied (attempt {i})")
            } else {
                format!("info ads XDS: Pushing:{i} Services:12 ConnectedEndpoints:3 Version:2024-05-01T10:00:{:02}Z/{i}", i % 60)
            },
        })
        .collect()
}

/// A connected-looking model on the Steps screen with every pane filled.
pub fn full_model() -> Model {
    let c = config();
    let prefill = Prefill::from_config(&c);
    let mut m = Model::new(Some(c), prefill, Keymap::default(), Vec::new());
    m.color = false;
    m.engine = Some(EngineHandle::detached());
    m.vault = Probe::Ok(VaultInfo {
        address: "https://vault.example:8200".into(),
        version: "2.4.0".into(),
        sealed: false,
        initialized: true,
        who: Ok("root (policies root)".into()),
    });
    m.kube = vec![
        (
            "cluster1".into(),
            Probe::Ok(KubeInfo {
                api_url: "https://127.0.0.1:6443".into(),
                context: "cluster1".into(),
                version: "v1.34.1".into(),
                can_create: vec![
                    ("namespaces".into(), Ok(true)),
                    ("serviceaccounts".into(), Ok(true)),
                    ("secrets".into(), Ok(true)),
                    ("clusterrolebindings".into(), Ok(false)),
                ],
            }),
        ),
        (
            "cluster2".into(),
            Probe::Failed("cannot reach https://127.0.0.1:6444: connection refused".into()),
        ),
    ];
    m.steps = steps();
    let now = m.now;
    for r in &mut m.steps {
        if r.state == RowState::Running {
            r.started = Some(now);
        }
    }
    m.live.data = live();
    m.live.roles = Ok(vec![RoleRow {
        name: "istiod".into(),
        sa_names: "istiod".into(),
        namespaces: "istio-system".into(),
        policies: "istiod-certs-cluster1".into(),
        ttl: "86400".into(),
    }]);
    m.live.roles_mount = Some("kubernetes-cluster1".into());
    m.live.updated = Some(now);
    m.doctor.diagnoses = doctor();
    m.doctor.last_run = Some(now);
    m.logs.cluster = Some("cluster1".into());
    m.logs.pod = Some("istiod-7d9f8b6c5-x2x4z".into());
    m.logs.status = "following istiod-7d9f8b6c5-x2x4z".into();
    m.logs.ingest(log_lines(300));
    m.reqs.logs = 1;
    m
}

/// Renders a model into a test terminal and returns the screen as text.
pub fn render_text(m: &Model, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| super::view::draw(m, f)).expect("draw");
    buffer_text(t.backend().buffer())
}

pub fn buffer_text(b: &ratatui::buffer::Buffer) -> String {
    let mut out = String::new();
    for y in 0..b.area.height {
        let mut line = String::new();
        for x in 0..b.area.width {
            line.push_str(b[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Renders into an existing terminal (benchmarks).
pub fn render_into(t: &mut Terminal<TestBackend>, m: &Model) {
    t.draw(|f| super::view::draw(m, f)).expect("draw");
}
