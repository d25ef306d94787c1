//! The kubelet's and the scheduler's parts, played by the test: the sandbox runs a real
//! kube-apiserver and kube-controller-manager but no scheduler and no kubelet, so nothing
//! would bind, start or report a pod, and nothing would answer for its logs.
//!
//! How the API server reaches a kubelet (Kubernetes v1.34, read in
//! `pkg/registry/core/pod/strategy.go` `LogLocation` and `pkg/kubelet/client/kubelet_client.go`):
//! `GET pods/<pod>/log?container=C&follow=true` needs `pod.spec.nodeName`; the API server
//! reads that Node, takes the first `status.addresses` entry of the types in
//! `--kubelet-preferred-address-types`, the port `status.daemonEndpoints.kubeletEndpoint.Port`,
//! and proxies `GET https://<address>:<port>/containerLogs/<ns>/<pod>/<container>?follow=true`,
//! verifying the kubelet's certificate against `--kubelet-certificate-authority` (the
//! sandbox passes its cluster CA and writes `<cluster>/kubelet.{crt,key}`, IP SAN
//! 127.0.0.1). A pod without a node gets an empty log, not an error.
//!
//! [`FakeKubelet`] is that HTTPS endpoint: it answers `/containerLogs/{ns}/{pod}/{container}`
//! the way the kubelet does (400 "is waiting to start" before the container started, the
//! lines streamed with small delays once it did, the stream held open while a followed
//! container still runs, 404 for anything else). The helpers register the Node (create,
//! then its status by the status subresource, as the kubelet registers), bind a pod (the
//! `binding` subresource, as the scheduler does) and report its status (status
//! subresource, as the kubelet does). Every request goes through the real API server.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use istio_vault_wizard::kube::workloads::container_names;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::Sandbox;

/// What the kubelet knows of one container of a pod.
#[derive(Debug, Clone)]
pub enum ContainerLog {
    /// Not started yet: `container "C" in pod "P" is waiting to start: <reason>` (400).
    Waiting(String),
    /// Started: `lines`, one every `delay`. Then the stream ends when the container has
    /// exited (`running == false`); a followed running container's stream stays open
    /// until the client goes away, as the kubelet's does.
    Started {
        lines: Vec<String>,
        delay: Duration,
        running: bool,
    },
}

impl ContainerLog {
    /// A container that logged `lines` and exited (an init container that finished).
    pub fn exited(lines: Vec<String>) -> Self {
        ContainerLog::Started {
            lines,
            delay: Duration::from_millis(5),
            running: false,
        }
    }
    /// A container that logged `lines` and is still running.
    pub fn running(lines: Vec<String>) -> Self {
        ContainerLog::Started {
            lines,
            delay: Duration::from_millis(5),
            running: true,
        }
    }
}

type Key = (String, String, String);

#[derive(Default)]
struct State {
    containers: HashMap<Key, ContainerLog>,
    /// Request targets, in arrival order (`/containerLogs/ns/pod/c?follow=true`).
    requests: Vec<String>,
}

/// An HTTPS kubelet endpoint on 127.0.0.1 (its own thread and runtime; stopped on drop).
pub struct FakeKubelet {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeKubelet {
    /// Serves with the sandbox's kubelet certificate for `cluster`.
    pub fn for_cluster(sb: &Sandbox, cluster: &str) -> FakeKubelet {
        let dir = sb.dir.join(cluster);
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (a sandbox made before it wrote a kubelet certificate: recreate it)",
                    dir.join(f).display()
                )
            })
        };
        FakeKubelet::start(&read("kubelet.crt"), &read("kubelet.key"))
    }

    pub fn start(cert_pem: &str, key_pem: &str) -> FakeKubelet {
        let certs: Vec<CertificateDer<'static>> = pem::parse_many(cert_pem)
            .expect("kubelet certificate PEM")
            .into_iter()
            .map(|p| CertificateDer::from(p.into_contents()))
            .collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            pem::parse(key_pem)
                .expect("kubelet key PEM")
                .into_contents(),
        ));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("kubelet TLS config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener =
            std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the kubelet port");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(Mutex::new(State::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("kubelet runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                tokio::pin!(stopped);
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => {
                            if let Ok((sock, _)) = accepted {
                                let (acceptor, st) = (acceptor.clone(), st.clone());
                                tokio::spawn(async move {
                                    if let Ok(tls) = acceptor.accept(sock).await {
                                        let _ = serve(tls, st).await;
                                    }
                                });
                            }
                        }
                    }
                }
            });
            // Dropping the runtime ends the connections still open.
        });
        FakeKubelet {
            port,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The kubelet got the pod: every named container waits (`PodInitializing`).
    pub fn add_pod(&self, ns: &str, pod: &str, containers: &[&str]) {
        for c in containers {
            self.set(ns, pod, c, ContainerLog::Waiting("PodInitializing".into()));
        }
    }

    pub fn set(&self, ns: &str, pod: &str, container: &str, log: ContainerLog) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .containers
            .insert((ns.into(), pod.into(), container.into()), log);
    }

    /// The request targets the API server sent, in order.
    pub fn requests(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .requests
            .clone()
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn respond<S: tokio::io::AsyncWrite + Unpin>(
    io: &mut S,
    status: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    io.write_all(head.as_bytes()).await?;
    io.write_all(body.as_bytes()).await?;
    io.flush().await?;
    io.shutdown().await
}

async fn chunk<S: tokio::io::AsyncWrite + Unpin>(io: &mut S, data: &[u8]) -> std::io::Result<()> {
    io.write_all(format!("{:x}\r\n", data.len()).as_bytes())
        .await?;
    io.write_all(data).await?;
    io.write_all(b"\r\n").await?;
    io.flush().await
}

/// One HTTP/1.1 request on a TLS connection (the API server's kubelet transport speaks
/// HTTP/1.1; `Connection: close` keeps it to one request per connection).
async fn serve<S>(mut io: S, state: Arc<Mutex<State>>) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = io.read(&mut buf).await?;
        if n == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut request_line = text.lines().next().unwrap_or_default().split_whitespace();
    let method = request_line.next().unwrap_or_default().to_string();
    let target = request_line.next().unwrap_or_default().to_string();
    let found = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        st.requests.push(target.clone());
        let (path, _) = target.split_once('?').unwrap_or((&target, ""));
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method.as_str(), parts.as_slice()) {
            ("GET", ["containerLogs", ns, pod, container]) => {
                let known_pod = st.containers.keys().any(|(n, p, _)| n == ns && p == pod);
                let key = (ns.to_string(), pod.to_string(), container.to_string());
                Some((
                    known_pod,
                    pod.to_string(),
                    container.to_string(),
                    st.containers.get(&key).cloned(),
                ))
            }
            _ => None,
        }
    };
    let follow = target
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|kv| kv == "follow=true"));
    // The kubelet's own wordings (pkg/kubelet/server/server.go, kubelet_pods.go).
    let (pod, container, log) = match found {
        None => return respond(&mut io, "404 Not Found", "404 page not found\n").await,
        Some((false, pod, _, _)) => {
            return respond(
                &mut io,
                "404 Not Found",
                &format!("pod {pod:?} does not exist"),
            )
            .await;
        }
        Some((true, pod, container, None)) => {
            return respond(
                &mut io,
                "404 Not Found",
                &format!("container {container:?} not found in pod {pod:?}"),
            )
            .await;
        }
        Some((true, pod, container, Some(log))) => (pod, container, log),
    };
    let (lines, delay, running) = match log {
        ContainerLog::Waiting(reason) => {
            return respond(
                &mut io,
                "400 Bad Request",
                &format!("container {container:?} in pod {pod:?} is waiting to start: {reason}"),
            )
            .await;
        }
        ContainerLog::Started {
            lines,
            delay,
            running,
        } => (lines, delay, running),
    };
    io.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )
    .await?;
    io.flush().await?;
    for line in lines {
        tokio::time::sleep(delay).await;
        chunk(&mut io, format!("{line}\n").as_bytes()).await?;
    }
    if running && follow {
        // Held open like a running container's log: until the client goes away (the API
        // server closes its side when its own client stops reading).
        let _ = tokio::time::timeout(Duration::from_secs(300), io.read(&mut buf)).await;
    }
    io.write_all(b"0\r\n\r\n").await?;
    io.flush().await?;
    io.shutdown().await
}

fn now() -> String {
    let t = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("whole seconds");
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
}

/// Registers a Node whose kubelet is `kubelet_port` on 127.0.0.1, as a kubelet registers
/// itself: create the Node, then report its status (addresses, kubelet endpoint, Ready)
/// through the status subresource.
pub async fn register_node(client: &kube::Client, name: &str, kubelet_port: u16) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}}
    }))
    .expect("node");
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("create node {name}: {e}"),
    }
    let t = now();
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": name}
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": t, "lastTransitionTime": t}]
            }})),
        )
        .await
        .unwrap_or_else(|e| panic!("node {name} status: {e}"));
}

/// Waits for a pod matching `selector` that no scheduler has placed yet (the scheduler's
/// own query: `spec.nodeName=`), ignoring pods being deleted.
pub async fn wait_unscheduled_pod(
    client: &kube::Client,
    ns: &str,
    selector: &str,
    within: Duration,
) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let list = pods
            .list(
                &ListParams::default()
                    .labels(selector)
                    .fields("spec.nodeName="),
            )
            .await
            .expect("list pods");
        if let Some(p) = list
            .items
            .into_iter()
            .find(|p| p.metadata.deletion_timestamp.is_none())
        {
            return p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no unscheduled pod {selector} in {ns} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Binds the pod to the node, as the scheduler does (`POST pods/<pod>/binding`).
pub async fn bind(client: &kube::Client, ns: &str, pod: &str, node: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": pod, "namespace": ns},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}
    });
    let _: Value = pods
        .create_subresource("binding", pod, &PostParams::default(), &binding)
        .await
        .unwrap_or_else(|e| panic!("bind {ns}/{pod} to {node}: {e}"));
}

fn container_id(pod: &Pod, name: &str) -> String {
    let uid = pod
        .metadata
        .uid
        .clone()
        .unwrap_or_default()
        .replace('-', "");
    format!("containerd://{uid}{}", hex::encode(name))
}

fn image_of(pod: &Pod, name: &str, init: bool) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let list = if init {
        spec.init_containers.unwrap_or_default()
    } else {
        spec.containers
    };
    list.into_iter()
        .find(|c| c.name == name)
        .and_then(|c| c.image)
        .unwrap_or_default()
}

fn container_status(pod: &Pod, name: &str, init: bool, state: Value, ready: bool) -> Value {
    let image = image_of(pod, name, init);
    let started = state.get("running").is_some();
    let mut s = json!({
        "name": name, "image": image, "imageID": format!("{image}@sha256:{}", "0".repeat(64)),
        "ready": ready, "restartCount": 0, "started": started, "state": state,
    });
    if state.get("waiting").is_none() {
        s["containerID"] = json!(container_id(pod, name));
    }
    s
}

async fn patch_pod_status(client: &kube::Client, ns: &str, pod: &str, status: Value) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.patch_status(
        pod,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap_or_else(|e| panic!("status of {ns}/{pod}: {e}"));
}

async fn get_pod(client: &kube::Client, ns: &str, pod: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.get(pod)
        .await
        .unwrap_or_else(|e| panic!("get {ns}/{pod}: {e}"))
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, t: &str) -> Value {
    let mut c = json!({"type": kind, "status": if ok { "True" } else { "False" },
        "lastProbeTime": null, "lastTransitionTime": t});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    c
}

/// The kubelet started the pod: its first init container runs, the rest wait
/// (`Pending`, `Initialized=False`), as `kubectl get pod` shows `Init:0/1`.
pub async fn report_initializing(client: &kube::Client, ns: &str, pod: &str) {
    let p = get_pod(client, ns, pod).await;
    let t = now();
    let (init, main) = container_names(&p);
    let inits: Vec<Value> = init
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let state = if i == 0 {
                json!({"running": {"startedAt": t}})
            } else {
                json!({"waiting": {"reason": "PodInitializing"}})
            };
            container_status(&p, n, true, state, false)
        })
        .collect();
    let mains: Vec<Value> = main
        .iter()
        .map(|n| {
            container_status(
                &p,
                n,
                false,
                json!({"waiting": {"reason": "PodInitializing"}}),
                false,
            )
        })
        .collect();
    patch_pod_status(
        client,
        ns,
        pod,
        json!({
            "phase": "Pending", "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}], "startTime": t,
            "conditions": [
                condition("PodReadyToStartContainers", true, None, &t),
                condition("Initialized", false, Some("ContainersNotInitialized"), &t),
                condition("Ready", false, Some("ContainersNotReady"), &t),
                condition("ContainersReady", false, Some("ContainersNotReady"), &t),
                condition("PodScheduled", true, None, &t),
            ],
            "initContainerStatuses": inits, "containerStatuses": mains,
        }),
    )
    .await;
}

/// The init containers completed (exit 0), the containers run and pass their readiness
/// probes: `Running`, `Ready=True`, so the ReplicaSet counts the pod available.
pub async fn report_ready(client: &kube::Client, ns: &str, pod: &str) {
    let p = get_pod(client, ns, pod).await;
    let t = now();
    let (init, main) = container_names(&p);
    let inits: Vec<Value> = init
        .iter()
        .map(|n| {
            let state = json!({"terminated": {"exitCode": 0, "reason": "Completed",
                "startedAt": t, "finishedAt": t, "containerID": container_id(&p, n)}});
            container_status(&p, n, true, state, true)
        })
        .collect();
    let mains: Vec<Value> = main
        .iter()
        .map(|n| container_status(&p, n, false, json!({"running": {"startedAt": t}}), true))
        .collect();
    let mut status = json!({
            "phase": "Running", "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
            "conditions": [
                condition("PodReadyToStartContainers", true, None, &t),
                condition("Initialized", true, None, &t),
                condition("Ready", true, None, &t),
                condition("ContainersReady", true, None, &t),
                condition("PodScheduled", true, None, &t),
            ],
            "initContainerStatuses": inits, "containerStatuses": mains,
    });
    if p.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .is_none()
    {
        status["startTime"] = json!(t);
    }
    patch_pod_status(client, ns, pod, status).await;
}
