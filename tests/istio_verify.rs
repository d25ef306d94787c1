//! `wire --step verify` against a real pod: the wizard waits for the istiod rollout,
//! follows the new pod's `vault-agent-init` and `discovery` logs through the Kubernetes
//! API (`GET pods/<pod>/log?container=..&follow=true`) and compares istiod's `x509 cert`
//! lines with the certificates in Vault. Every request of the wizard goes through the
//! sandbox's real kube-apiserver; the test plays the parts the sandbox does not run
//! (`common::kubelet`): the scheduler binds the pod to a Node, the kubelet reports the
//! pod's status and serves its container logs over HTTPS, verified by the API server
//! against `--kubelet-certificate-authority`.
//!
//! The test plays them while `verify` runs, in the order a kubelet would: bound, the init
//! container running (its log appears), then the pod Ready. The istiod it replaces is
//! still running and available meanwhile, as in a real rollout.
//!
//! - the Vault CA: the agent renders the four files, istiod logs Vault's own intermediate
//!   and root → verified, "istiod is using the Vault CA";
//! - another intermediate (a freshly generated bundle): not verified, the failure names
//!   Vault's serial and the one istiod loaded, and the doctor's hand-over;
//! - the agent is refused the read (the KV v2 policy without `/data/`, made true in Vault):
//!   the pod stays in Init, and verify points at the agent's `permission denied` line and
//!   at the doctor's broken link (capabilities on the secret path).

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::kubelet::{self, ContainerLog, FakeKubelet};
use common::{Sandbox, Setup, rt, sandbox_or_skip, write_config};
use istio_vault_wizard::certs::inspect_pem;
use istio_vault_wizard::istio::{X509Line, normalise_serial};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// verify's own deadline (rollout and logs). Each case settles in a few seconds.
const VERIFY_TIMEOUT_SECS: u64 = 20;
/// How long the test waits for the controllers to act (pod created, rollout observed).
const CONTROLLERS: Duration = Duration::from_secs(30);

const AGENT: &str = "vault-agent-init";
const DISCOVERY: &str = "discovery";

/// One test's wizard config, cluster1 with the Vault phase applied and an istiod that ran
/// before the wizard wired it, now wired (its new pod waits for a node).
struct Case {
    s: Setup,
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    kubelet: FakeKubelet,
    node: String,
}

fn run_ok(s: &Setup, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = s.run(&all);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success(),
        "{args:?}: {doc:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    doc
}

/// istiod's Deployment as the test installs it. There is no Vault agent injector in the
/// sandbox: its webhook would add the `vault-agent-init` init container (and the shared
/// in-memory `/vault/secrets` volume) to each new pod at admission, once the wizard has put
/// the `vault.hashicorp.com/*` annotations on the template. The template carries that
/// mutation's result from the start instead, so the pods have the containers verify
/// follows; the wizard's `istiod` step still adds the annotations and ROOT_CA_DIR, which
/// makes the new revision.
fn istiod_deployment(ns: &str) -> Deployment {
    let secrets = json!({"name": "vault-secrets", "mountPath": "/vault/secrets"});
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "istiod", "namespace": ns, "labels": {"app": "istiod", "istio": "pilot"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "istiod", "istio": "pilot"}},
            "template": {
                "metadata": {"labels": {"app": "istiod", "istio": "pilot"}},
                "spec": {
                    "serviceAccountName": "istiod",
                    "initContainers": [{
                        "name": AGENT,
                        "image": "hashicorp/vault:1.20.1",
                        "command": ["/bin/sh", "-ec"],
                        "args": ["echo ${VAULT_CONFIG?} | base64 -d > /home/vault/config.json && vault agent -config=/home/vault/config.json"],
                        "env": [{"name": "VAULT_CONFIG", "value": "e30="}],
                        "volumeMounts": [{"name": "home-init", "mountPath": "/home/vault"}, secrets]
                    }],
                    "containers": [{
                        "name": DISCOVERY,
                        "image": "docker.io/istio/pilot:1.24.0",
                        "args": ["discovery", "--monitoringAddr=:15014", "--log_output_level=default:info", "--domain", "cluster.local"],
                        "volumeMounts": [secrets]
                    }],
                    "volumes": [
                        {"name": "home-init", "emptyDir": {"medium": "Memory"}},
                        {"name": "vault-secrets", "emptyDir": {"medium": "Memory"}}
                    ]
                }
            }
        }
    }))
    .expect("deployment")
}

/// Waits until the Deployment's current revision is rolled out and no old pod counts.
async fn wait_rolled_out(client: &kube::Client, ns: &str) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + CONTROLLERS;
    loop {
        let d = api.get("istiod").await.expect("get istiod");
        let generation = d.metadata.generation.unwrap_or(0);
        let st = d.status.clone().unwrap_or_default();
        if st.observed_generation.unwrap_or(0) >= generation
            && st.replicas == Some(1)
            && st.updated_replicas == Some(1)
            && st.available_replicas == Some(1)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "istiod not rolled out: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn start_case(sb: &Sandbox) -> Case {
    let s = write_config(sb, 2, "ec-p256");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&s.config)
        .expect("config");
    write!(
        f,
        "\n[istio]\nhelm = \"/nonexistent/helm\"\nmode = \"patch\"\nverify_timeout_secs = {VERIFY_TIMEOUT_SECS}\n"
    )
    .expect("append [istio]");
    drop(f);
    run_ok(&s, &["apply", "--yes", "--cluster", "cluster1"]);

    let rt = rt();
    let client = rt.block_on(sb.kube(0)).client;
    let kubelet = FakeKubelet::for_cluster(sb, "cluster1");
    let node = format!("node-{}", s.tag);
    let ns = s.ns();
    rt.block_on(async {
        kubelet::register_node(&client, &node, kubelet.port()).await;
        let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        api.create(&PostParams::default(), &istiod_deployment(&ns))
            .await
            .expect("create istiod");
        // istiod runs before the wizard wires it: scheduled, started, Ready.
        let p = kubelet::wait_unscheduled_pod(&client, &ns, "app=istiod", CONTROLLERS).await;
        let name = p.metadata.name.expect("pod name");
        kubelet::bind(&client, &ns, &name, &node).await;
        kubelet::report_ready(&client, &ns, &name).await;
        wait_rolled_out(&client, &ns).await;
    });

    let doc = run_ok(
        &s,
        &["wire", "--yes", "--step", "istiod", "--cluster", "cluster1"],
    );
    assert_eq!(steps_in(&doc, "applied"), ["istiod"], "{doc:#}");
    Case {
        s,
        rt,
        client,
        kubelet,
        node,
    }
}

/// What the kubelet does with the new pod's containers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Agent {
    /// The agent renders and exits 0; istiod starts; the pod turns Ready.
    Renders,
    /// The agent keeps retrying a refused read: the init container runs on, the pod stays
    /// in Init and the rollout never completes.
    Stuck,
}

struct Verified {
    code: i32,
    doc: Value,
    stderr: String,
    pod: String,
    took: Duration,
}

/// Runs `wire --step verify` while the test schedules and runs istiod's new pod.
fn verify_while_the_pod_starts(
    c: &Case,
    agent_log: Vec<String>,
    discovery_log: Vec<String>,
    agent: Agent,
) -> Verified {
    let started = std::time::Instant::now();
    let child =
        c.s.command(&[
            "wire",
            "--yes",
            "--step",
            "verify",
            "--cluster",
            "cluster1",
            "-o",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wire --step verify");
    let ns = c.s.ns();
    let pod = c.rt.block_on(async {
        let p = kubelet::wait_unscheduled_pod(&c.client, &ns, "app=istiod", CONTROLLERS).await;
        let name = p.metadata.name.expect("pod name");
        c.kubelet.add_pod(&ns, &name, &[AGENT, DISCOVERY]);
        kubelet::bind(&c.client, &ns, &name, &c.node).await;
        c.kubelet.set(
            &ns,
            &name,
            AGENT,
            match agent {
                Agent::Renders => ContainerLog::exited(agent_log),
                Agent::Stuck => ContainerLog::running(agent_log),
            },
        );
        kubelet::report_initializing(&c.client, &ns, &name).await;
        if agent == Agent::Renders {
            // The pod stays in Init until verify has asked for the agent's log (it reads it
            // as soon as the init container runs, without waiting for the rollout); so
            // verify is sure to see the rollout still going. Then istiod starts and the pod
            // turns Ready.
            let asked = format!("/containerLogs/{ns}/{name}/{AGENT}?");
            let until = tokio::time::Instant::now() + CONTROLLERS;
            while !c.kubelet.requests().iter().any(|r| r.starts_with(&asked))
                && tokio::time::Instant::now() < until
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            c.kubelet
                .set(&ns, &name, DISCOVERY, ContainerLog::running(discovery_log));
            kubelet::report_ready(&c.client, &ns, &name).await;
        }
        name
    });
    let out = child.wait_with_output().expect("wait for verify");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    Verified {
        code: out.status.code().unwrap_or(-1),
        doc,
        stderr,
        pod,
        took: started.elapsed(),
    }
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

fn failure(doc: &Value) -> String {
    doc["report"]["failed"][0][2]
        .as_str()
        .unwrap_or_else(|| panic!("no failure: {doc:#}"))
        .to_string()
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

/// `kubelet.requests()` of one container of the pod: the API server proxied the wizard's
/// `follow=true` log request to the kubelet.
fn followed(c: &Case, pod: &str, container: &str) -> bool {
    let path = format!("/containerLogs/{}/{pod}/{container}?", c.s.ns());
    c.kubelet
        .requests()
        .iter()
        .any(|r| r.starts_with(&path) && r.contains("follow=true"))
}

// ------------------------------------------------------------------ log lines

/// RFC 3339 in whole seconds, as istiod prints certificate validity.
fn whole_seconds(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .expect("whole seconds")
        .format(&Rfc3339)
        .expect("RFC 3339")
}

fn stamp(t: OffsetDateTime, digits: usize) -> String {
    let full = t.format(&Rfc3339).expect("RFC 3339");
    // `2025-06-10T14:02:07.612473123Z` → the agent's millis / istiod's micros.
    let (secs, frac) = full
        .trim_end_matches('Z')
        .split_once('.')
        .map(|(s, f)| (s.to_string(), f.to_string()))
        .unwrap_or_else(|| (full.trim_end_matches('Z').to_string(), String::new()));
    format!("{secs}.{:0<digits$.digits$}Z", frac)
}

/// A Vault agent (as the injector runs it) that logs in and renders the four files.
fn agent_renders() -> Vec<String> {
    let t0 = OffsetDateTime::now_utc();
    let ts = |ms: i64| stamp(t0 + time::Duration::milliseconds(ms), 3);
    let mut l = vec![
        "==> Vault Agent started! Log data will stream in below:".to_string(),
        String::new(),
        "==> Vault Agent configuration:".into(),
        String::new(),
        "           Api Address 1: http://bufconn".into(),
        "                     Cgo: disabled".into(),
        "               Log Level: info".into(),
        "                 Version: Vault v1.20.1, built 2025-07-24T13:33:51Z".into(),
        "             Version Sha: 7d4a3a2c5d6e8f0a1b2c3d4e5f60718293a4b5c6".into(),
        String::new(),
    ];
    for (ms, m) in [
        (0, "[INFO]  agent.sink.file: creating file sink"),
        (
            0,
            "[INFO]  agent.sink.file: file sink configured: path=/home/vault/.vault-token mode=-rw-r-----",
        ),
        (1, "[INFO]  agent.template.server: starting template server"),
        (1, "[INFO]  agent.auth.handler: starting auth handler"),
        (1, "[INFO]  agent.auth.handler: authenticating"),
        (1, "[INFO]  agent.sink.server: starting sink server"),
        (
            9,
            "[INFO]  agent.auth.handler: authentication successful, sending token to sinks",
        ),
        (9, "[INFO]  agent.auth.handler: starting renewal process"),
        (
            9,
            "[INFO]  agent.sink.file: token written: path=/home/vault/.vault-token",
        ),
        (
            9,
            "[INFO]  agent.template.server: template server received new token",
        ),
        (
            9,
            "[INFO] (runner) creating new runner (dry: false, once: false)",
        ),
        (9, "[INFO] (runner) creating watcher"),
        (9, "[INFO] (runner) starting"),
        (
            21,
            "[INFO] (runner) rendered \"(dynamic)\" => \"/vault/secrets/ca-cert.pem\"",
        ),
        (
            21,
            "[INFO] (runner) rendered \"(dynamic)\" => \"/vault/secrets/ca-key.pem\"",
        ),
        (
            22,
            "[INFO] (runner) rendered \"(dynamic)\" => \"/vault/secrets/cert-chain.pem\"",
        ),
        (
            22,
            "[INFO] (runner) rendered \"(dynamic)\" => \"/vault/secrets/root-cert.pem\"",
        ),
        (22, "[INFO] (runner) stopping"),
        (22, "[INFO]  agent.template.server: template server stopped"),
        (22, "[INFO] (runner) received finish"),
        (
            22,
            "[INFO]  agent.auth.handler: shutdown triggered, stopping lifetime watcher",
        ),
        (22, "[INFO]  agent.auth.handler: auth handler stopped"),
    ] {
        l.push(format!("{} {m}", ts(ms)));
    }
    l
}

/// A Vault agent whose token's policy does not allow the read: consul-template's retry
/// line with Vault's 403, as hclog prints the multi-line API error.
fn agent_read_denied(vault_addr: &str, secret_api_path: &str) -> Vec<String> {
    let t0 = OffsetDateTime::now_utc();
    let ts = |ms: i64| stamp(t0 + time::Duration::milliseconds(ms), 3);
    let mut l: Vec<String> = agent_renders()
        .into_iter()
        .take_while(|l| !l.contains("(runner) rendered"))
        .collect();
    for (attempt, ms, backoff) in [(1, 31, "250ms"), (2, 283, "500ms")] {
        l.push(format!(
            "{} [WARN] (view) vault.read({secret_api_path}): vault.read({secret_api_path}): Error making API request.",
            ts(ms)
        ));
        l.extend([
            String::new(),
            format!("URL: GET {vault_addr}/v1/{secret_api_path}"),
            "Code: 403. Errors:".into(),
            String::new(),
            "* 1 error occurred:".into(),
            "\t* permission denied".into(),
            String::new(),
            format!(" (retry attempt {attempt} after \"{backoff}\")"),
        ]);
    }
    l
}

/// `pkix.Name.String()` as istiod prints it: RDNs in Go's order (CN, OU, O, L, ST, C),
/// comma-separated without spaces. `inspect` gives the certificate's order, `, `-joined.
fn go_name(dn: &str) -> String {
    const ORDER: [&str; 7] = ["SERIALNUMBER", "CN", "OU", "O", "L", "ST", "C"];
    let mut attrs: Vec<(usize, String)> = dn
        .split(", ")
        .filter(|a| !a.is_empty())
        .map(|a| {
            let key = a.split('=').next().unwrap_or_default().to_ascii_uppercase();
            (
                ORDER.iter().position(|k| *k == key).unwrap_or(ORDER.len()),
                a.to_string(),
            )
        })
        .collect();
    attrs.sort_by_key(|(i, _)| *i);
    attrs
        .into_iter()
        .map(|(_, a)| a)
        .collect::<Vec<_>>()
        .join(",")
}

/// istiod's `x509 cert` line for a PEM certificate.
fn x509_line(pem: &str) -> X509Line {
    let c = inspect_pem(pem)
        .expect("certificate")
        .into_iter()
        .next()
        .expect("one certificate");
    X509Line {
        issuer: go_name(&c.issuer),
        subject: go_name(&c.subject),
        serial: normalise_serial(&c.serial),
        not_before: c.not_before,
        not_after: c.not_after,
    }
}

/// istiod (>= 1.21 wording) loading its CA from /vault/secrets: its DNS certificate, the
/// intermediate and the root, then `Istiod certificates are reloaded`.
fn discovery_log(ns: &str, intermediate_pem: &str, root_pem: &str) -> Vec<String> {
    let t0 = OffsetDateTime::now_utc();
    let ts = |us: i64| stamp(t0 + time::Duration::microseconds(us), 6);
    let inter = x509_line(intermediate_pem);
    let root = x509_line(root_pem);
    let nanos = t0.unix_timestamp_nanos() as u128;
    let dns = X509Line {
        issuer: inter.subject.clone(),
        subject: String::new(),
        serial: format!(
            "{:032x}",
            nanos.wrapping_mul(0x9e37_79b9_7f4a_7c15) | (1 << 127)
        ),
        not_before: whole_seconds(t0 - time::Duration::minutes(2)),
        not_after: whole_seconds(t0 + time::Duration::days(3650)),
    };
    let mut l = Vec::new();
    for (us, m) in [
        (0, "info\tFLAG: --domain=\"cluster.local\"".to_string()),
        (
            1_120,
            format!(
                "info\tinitializing Istiod DNS certificates host: istiod.{ns}.svc, custom host: "
            ),
        ),
        (86_301, "info\tUse local CA certificate".into()),
        (
            86_650,
            "info\tAdded cacerts files watcher at /vault/secrets".into(),
        ),
        (171_844, "info\tIstiod CA has started".into()),
        (
            192_071,
            "info\tUsing istiod file format for signing ca files".into(),
        ),
        (
            192_099,
            "info\tUse root cert from /vault/secrets/root-cert.pem".into(),
        ),
        (192_612, format!("info\t{}", dns.to_log_message())),
        (192_650, format!("info\t{}", inter.to_log_message())),
        (192_681, format!("info\t{}", root.to_log_message())),
        (192_702, "info\tIstiod certificates are reloaded".into()),
        (
            192_820,
            "info\tspiffe\tAdded 1 certs to trust domain cluster.local in peer cert verifier"
                .into(),
        ),
        (
            193_004,
            "info\tinitializing secure discovery service".into(),
        ),
    ] {
        l.push(format!("{}\t{m}", ts(us)));
    }
    l
}

/// Vault's intermediate and root for the case's cluster1, as the Vault phase stored them.
fn vault_ca(sb: &Sandbox, c: &Case) -> (String, String) {
    let secret = c
        .rt
        .block_on(
            sb.vault()
                .kv_read(&c.s.mount("cluster1"), "istiod-service/certs", c.s.kv, None),
        )
        .expect("read the CA secret")
        .expect("the Vault phase stored it");
    (
        secret.data["ca_cert"].clone(),
        secret.data["root_cert"].clone(),
    )
}

fn serial_of(pem: &str) -> String {
    x509_line(pem).serial
}

// ------------------------------------------------------------------ tests

#[test]
fn verify_follows_the_pod_logs_and_finds_the_vault_ca() {
    let Some(sb) = sandbox_or_skip("verify on the Vault CA") else {
        return;
    };
    let c = start_case(sb);
    let (inter, root) = vault_ca(sb, &c);
    let v = verify_while_the_pod_starts(
        &c,
        agent_renders(),
        discovery_log(&c.s.ns(), &inter, &root),
        Agent::Renders,
    );
    let doc = &v.doc;
    assert_eq!(v.code, 0, "{doc:#}\n{}", v.stderr);
    assert_eq!(steps_in(doc, "verified"), ["verify"], "{doc:#}");
    let p = progress(doc);
    let verdict = p
        .iter()
        .find(|m| m.starts_with("istiod is using the Vault CA"))
        .unwrap_or_else(|| panic!("no verdict: {doc:#}"));
    // Both of Vault's certificates matched by serial, not istiod's own DNS cert.
    assert!(
        verdict.contains("2 certificates matched")
            && verdict.contains(&serial_of(&inter))
            && verdict.contains(&serial_of(&root)),
        "{verdict}"
    );
    // verify waited for the new pod: the old istiod was available all along.
    assert!(
        p.iter().any(|m| m == "rollout: successfully rolled out"),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|m| m.starts_with("rollout: ") && m != "rollout: successfully rolled out"),
        "the rollout was still going when verify started: {p:#?}"
    );
    for container in [AGENT, DISCOVERY] {
        assert!(
            p.iter()
                .any(|m| m == &format!("following {container} of pod {}", v.pod)),
            "{p:#?}"
        );
        assert!(
            followed(&c, &v.pod, container),
            "the API server proxied the {container} log request to the kubelet: {:#?}",
            c.kubelet.requests()
        );
    }
    // discovery's stream stays open like a running istiod's: verify stopped by itself.
    assert!(
        v.took < Duration::from_secs(VERIFY_TIMEOUT_SECS),
        "verify took {:?}",
        v.took
    );
}

#[test]
fn verify_names_the_serial_when_istiod_loaded_another_intermediate() {
    let Some(sb) = sandbox_or_skip("verify on another intermediate") else {
        return;
    };
    let c = start_case(sb);
    let (vault_inter, vault_root) = vault_ca(sb, &c);
    // Another CA for the same cluster name: same subjects, other keys and serials.
    let other = tempfile::tempdir().expect("tmp");
    common::generate_ec_bundle(other.path(), "cluster1", &[]);
    let read = |f: &str| std::fs::read_to_string(other.path().join(f)).expect(f);
    let (inter, root) = (read("cluster1/ca-cert.pem"), read("root-cert.pem"));
    assert_ne!(serial_of(&inter), serial_of(&vault_inter));

    let v = verify_while_the_pod_starts(
        &c,
        agent_renders(),
        discovery_log(&c.s.ns(), &inter, &root),
        Agent::Renders,
    );
    let doc = &v.doc;
    assert_ne!(v.code, 0, "{doc:#}");
    assert!(steps_in(doc, "verified").is_empty(), "{doc:#}");
    let why = failure(doc);
    assert!(why.contains("istiod is NOT using the Vault CA"), "{why}");
    assert!(
        why.contains(&format!("(serial {})", serial_of(&vault_inter)))
            && why.contains(&format!("but serial {}", serial_of(&inter))),
        "names Vault's intermediate and the one istiod loaded: {why}"
    );
    assert!(
        why.contains(&format!("(serial {})", serial_of(&vault_root))),
        "{why}"
    );
    assert!(
        why.contains("\ndoctor: "),
        "hands over to the doctor: {why}"
    );
    assert!(
        followed(&c, &v.pod, DISCOVERY),
        "{:#?}",
        c.kubelet.requests()
    );
}

#[test]
fn verify_points_at_the_agents_permission_denied_while_the_pod_is_stuck_in_init() {
    let Some(sb) = sandbox_or_skip("verify on a refused read") else {
        return;
    };
    let c = start_case(sb);
    // Make the refusal true in Vault: the classic KV v2 policy, without `/data/`.
    let vault = sb.vault();
    let policy = c.s.policy("cluster1");
    let secret_path = istio_vault_wizard::vault::kv_api_path(
        &c.s.mount("cluster1"),
        "istiod-service/certs",
        c.s.kv,
    );
    c.rt.block_on(async {
        let text = vault
            .read_policy(&policy)
            .await
            .expect("read policy")
            .expect("policy");
        let broken = text.replace("/data/", "/");
        assert_ne!(broken, text, "{text}");
        vault
            .write_policy(&policy, &broken)
            .await
            .expect("write policy");
    });

    let agent_log = agent_read_denied(&sb.vault_addr, &secret_path);
    let warn = agent_log
        .iter()
        .position(|l| l.contains("[WARN]"))
        .expect("warn line");
    let v = verify_while_the_pod_starts(&c, agent_log.clone(), Vec::new(), Agent::Stuck);
    let doc = &v.doc;
    assert_ne!(v.code, 0, "{doc:#}");
    let why = failure(doc);
    assert!(
        why.contains(&format!("log line {}: {}\n", warn + 1, agent_log[warn])),
        "points at the agent's line: {why}"
    );
    assert!(
        why.contains(&format!("does not allow read on {secret_path}")),
        "{why}"
    );
    assert!(
        why.contains("\ndoctor: first broken link is Capabilities on the secret path"),
        "the doctor finds the same broken link in Vault: {why}"
    );
    // Read while the pod was still in Init: no waiting for a rollout that cannot finish,
    // and istiod's container (not started) was never asked for.
    assert!(
        v.took < Duration::from_secs(VERIFY_TIMEOUT_SECS),
        "verify took {:?}",
        v.took
    );
    assert!(followed(&c, &v.pod, AGENT), "{:#?}", c.kubelet.requests());
    assert!(!followed(&c, &v.pod, DISCOVERY));
    assert!(
        progress(doc)
            .iter()
            .all(|m| m != "rollout: successfully rolled out"),
        "{doc:#}"
    );
}

/// kubectl's rollout test, on the state the first case goes through: while the old pod
/// is still available, one updated pod that is not available yet is not a complete rollout.
#[test]
fn a_rollout_with_an_old_pod_still_running_is_not_complete() {
    use istio_vault_wizard::kube::workloads::Rollout;
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "istiod", "generation": 2,
            "annotations": {"deployment.kubernetes.io/revision": "2"}},
        "spec": {"replicas": 1, "selector": {}, "template": {}},
        "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1,
            "readyReplicas": 1, "availableReplicas": 1}
    }))
    .expect("deployment");
    let r = Rollout::of(&d);
    assert!(!r.complete(), "{r:?}");
    assert_eq!(r.describe(), "1 old replicas are pending termination");
    let mut done = d.clone();
    done.status.as_mut().expect("status").replicas = Some(1);
    assert!(Rollout::of(&done).complete());
    done.status.as_mut().expect("status").available_replicas = Some(0);
    assert_eq!(
        Rollout::of(&done).describe(),
        "0 of 1 updated replicas are available"
    );
}

/// The API server verifies the kubelet it proxies to (`--kubelet-certificate-authority`):
/// a kubelet whose certificate the cluster CA did not sign gets no log request through.
#[test]
fn the_api_server_refuses_a_kubelet_the_cluster_ca_did_not_sign() {
    let Some(sb) = sandbox_or_skip("kubelet certificate verified") else {
        return;
    };
    let stranger = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
        .expect("self-signed certificate");
    let kubelet = FakeKubelet::start(&stranger.cert.pem(), &stranger.signing_key.serialize_pem());
    let node = common::unique("stranger-node");
    let pod = common::unique("stranger-pod");
    let rt = rt();
    let err = rt.block_on(async {
        let client = sb.kube(0).await.client;
        kubelet::register_node(&client, &node, kubelet.port()).await;
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), "default");
        let p = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &p)
            .await
            .expect("create pod");
        kubelet.add_pod("default", &pod, &["c"]);
        kubelet.set(
            "default",
            &pod,
            "c",
            ContainerLog::exited(vec!["hello".into()]),
        );
        kubelet::bind(&client, "default", &pod, &node).await;
        let lp = kube::api::LogParams {
            container: Some("c".into()),
            ..Default::default()
        };
        let err = pods
            .logs(&pod, &lp)
            .await
            .expect_err("an unverified kubelet");
        pods.delete(&pod, &Default::default()).await.ok();
        err.to_string()
    });
    assert!(
        err.contains("x509: certificate signed by unknown authority"),
        "refused for its certificate: {err}"
    );
    assert!(
        kubelet.requests().is_empty(),
        "no request reached it: {:?}",
        kubelet.requests()
    );
}
