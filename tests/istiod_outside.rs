//! Issue 7, stretch: a real istiod (`pilot-discovery`, built from the `istio.io/istio`
//! module by `tests/servers/build.sh`) runs outside a cluster against the sandbox's
//! kube-apiserver, with `ROOT_CA_DIR` set to the directory a real `bao agent` rendered
//! from Vault. Its own `x509 cert - Issuer: ..., SN: ...` lines, parsed by
//! `istio::logs`, match the intermediate and root stored in Vault; the same istiod on a
//! freshly generated other intermediate (same root, same subject) gives a mismatch.
//!
//! istiod binds only 127.0.0.1, on free ports, and reaches nothing but the sandbox.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::istiod::{pilot_discovery, render_with_agent};
use common::{Sandbox, Setup, rt, sandbox_or_skip, write_config};
use istio_vault_wizard::config::ClusterNames;
use istio_vault_wizard::istio::{
    CaVerdict, ExpectedCert, LogStatus, LogSummary, compare_with_vault, pod_annotations,
    summarise_for, wiring_for,
};

/// How long istiod may take from start to its first `x509 cert` batch (it needs a few
/// seconds; a loaded CI machine much more).
const STARTUP_DEADLINE: Duration = Duration::from_secs(180);

/// `pilot-discovery`, or None after printing SKIPPED (a failure with IVW_REQUIRE_SERVERS=1).
fn istiod_binary_or_skip(test: &str) -> Option<PathBuf> {
    let bin = pilot_discovery();
    if bin.is_none() {
        if std::env::var("IVW_REQUIRE_SERVERS").as_deref() == Ok("1") {
            panic!(
                "pilot-discovery required but missing: run tests/servers/build.sh (component istiod)"
            );
        }
        eprintln!("SKIPPED {test}: pilot-discovery is not built (run tests/servers/build.sh)");
    }
    bin
}

/// A free loopback port below the kernel's ephemeral range (as the sandbox picks them):
/// there only another explicit bind competes, and each candidate is checked by a bind.
fn free_ports(n: usize) -> Vec<u16> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(32768u16);
    let (start, end) = (20000u16, low.max(20001));
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
        ^ u64::from(std::process::id()).rotate_left(29);
    let mut out = Vec::new();
    for _ in 0..10_000 {
        if out.len() == n {
            break;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let port = start + (seed % u64::from(end - start)) as u16;
        if !out.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            out.push(port);
        }
    }
    assert_eq!(out.len(), n, "free loopback ports");
    out
}

/// A running istiod; killed and reaped on drop (also when the test panics).
struct Istiod {
    child: Child,
    log: PathBuf,
    label: String,
}

impl Drop for Istiod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Keeps a copy of the real log when IVW_ISTIOD_LOG_DIR is set (fixture capture;
        // istiod logs certificates' names and serials, never key material).
        if let Some(dir) = std::env::var_os("IVW_ISTIOD_LOG_DIR") {
            let _ = std::fs::copy(
                &self.log,
                Path::new(&dir).join(format!("istiod-outside-{}.log", self.label)),
            );
        }
    }
}

impl Istiod {
    /// Starts `pilot-discovery discovery` in `work` (its relative defaults such as
    /// `./etc/cacerts` and `./var/run/secrets/...` resolve there, and are absent) against
    /// the kubeconfig, with `ROOT_CA_DIR=root_ca_dir`.
    fn start(
        bin: &Path,
        work: &Path,
        label: &str,
        kubeconfig: &Path,
        namespace: &str,
        root_ca_dir: &Path,
    ) -> Istiod {
        std::fs::create_dir_all(work).expect("istiod work dir");
        // An explicit mesh config: istiod then neither guesses nor reads a ConfigMap.
        let mesh = work.join("mesh.yaml");
        std::fs::write(
            &mesh,
            "trustDomain: cluster.local\nrootNamespace: istio-system\nenableTracing: false\n",
        )
        .expect("mesh config");
        let p = free_ports(6);
        let addr = |i: usize| format!("127.0.0.1:{}", p[i]);
        let log = work.join("istiod.log");
        let out = File::create(&log).expect("istiod log file");
        let err = out.try_clone().expect("clone log handle");
        let mut cmd = Command::new(bin);
        cmd.current_dir(work)
            .arg("discovery")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--meshConfig")
            .arg(&mesh)
            .arg("--networksConfig")
            .arg(work.join("mesh-networks.yaml"))
            .args(["--clusterID", "cluster1", "--domain", "cluster.local"])
            .args(["--httpAddr", &addr(0)])
            .args(["--grpcAddr", &addr(1)])
            .args(["--secureGRPCAddr", &addr(2)])
            .args(["--monitoringAddr", &addr(3)])
            .args(["--httpsAddr", &addr(4)])
            .args(["--ctrlz_address", "127.0.0.1"])
            .args(["--ctrlz_port", &p[5].to_string()])
            .args(["--shutdownDuration", "1s"])
            .args(["--log_output_level", "default:info"])
            // No inherited proxy or KUBERNETES_SERVICE_HOST: its only peer is the
            // sandbox's API server on 127.0.0.1.
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", work)
            .env("ROOT_CA_DIR", root_ca_dir)
            .env("POD_NAMESPACE", namespace)
            .env("POD_NAME", format!("istiod-{label}"))
            .env("REVISION", "default")
            .env("CLUSTER_ID", "cluster1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // If this test process dies without unwinding, the kernel kills istiod too.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn().expect("start pilot-discovery");
        Istiod {
            child,
            log,
            label: label.to_string(),
        }
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn tail(&self, n: usize) -> String {
        let lines = self.lines();
        let from = lines.len().saturating_sub(n);
        format!(
            "--- istiod ({}) log, last {} of {} lines ---\n{}",
            self.label,
            lines.len() - from,
            lines.len(),
            lines[from..].join("\n")
        )
    }

    /// Follows the log until istiod printed its serving chain (`x509 cert` lines and
    /// `Istiod certificates are reloaded`), failed, or exited; progress every 5 s.
    fn wait_for_chain(&mut self, root_ca_dir: &Path) -> LogSummary {
        let dir = root_ca_dir.display().to_string();
        let t0 = Instant::now();
        let mut next_report = Duration::from_secs(5);
        loop {
            let sum = summarise_for(self.lines(), &dir);
            let printed_chain = !sum.loaded_certs.is_empty() && sum.certs_reloaded;
            if printed_chain || matches!(sum.status, LogStatus::Failure { .. }) {
                eprintln!(
                    "istiod ({}) printed its chain after {:.1}s",
                    self.label,
                    t0.elapsed().as_secs_f64()
                );
                return sum;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "istiod ({}) exited with {status} before printing its chain\n{}",
                    self.label,
                    self.tail(80)
                );
            }
            if t0.elapsed() > STARTUP_DEADLINE {
                panic!(
                    "istiod ({}) printed no chain within {:?}: {:?}\n{}",
                    self.label,
                    STARTUP_DEADLINE,
                    sum.status,
                    self.tail(80)
                );
            }
            if t0.elapsed() >= next_report {
                let waiting = match &sum.status {
                    LogStatus::InProgress { waiting_for } => waiting_for.join("; "),
                    other => format!("{other:?}"),
                };
                eprintln!(
                    "waiting for istiod ({}) {}s: {} log lines; {waiting}",
                    self.label,
                    t0.elapsed().as_secs(),
                    self.lines().len()
                );
                next_report += Duration::from_secs(5);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn x509_lines(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.contains("x509 cert - "))
            .collect()
    }
}

/// Waits until istiod's namespace controller has published `istio-ca-root-cert` in `ns`
/// (what every workload there trusts) and returns its `root-cert.pem`.
fn published_root(sb: &Sandbox, ns: &str, istiod: &mut Istiod) -> String {
    use k8s_openapi::api::core::v1::ConfigMap;
    let t0 = Instant::now();
    let mut next_report = Duration::from_secs(5);
    rt().block_on(async {
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(sb.kube(0).await.client, ns);
        loop {
            let cm = api.get_opt("istio-ca-root-cert").await.ok().flatten();
            if let Some(root) = cm
                .and_then(|c| c.data)
                .and_then(|d| d.get("root-cert.pem").cloned())
            {
                return root;
            }
            if let Ok(Some(status)) = istiod.child.try_wait() {
                panic!(
                    "istiod ({}) exited with {status} before publishing istio-ca-root-cert\n{}",
                    istiod.label,
                    istiod.tail(80)
                );
            }
            if t0.elapsed() > STARTUP_DEADLINE {
                panic!(
                    "istiod ({}) published no istio-ca-root-cert in {ns} within {:?}\n{}",
                    istiod.label,
                    STARTUP_DEADLINE,
                    istiod.tail(80)
                );
            }
            if t0.elapsed() >= next_report {
                eprintln!(
                    "waiting for istio-ca-root-cert in {ns} ({}s)",
                    t0.elapsed().as_secs()
                );
                next_report += Duration::from_secs(5);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// The intermediate (`ca_cert`) and root (`root_cert`) Vault holds for cluster1, read
/// from Vault itself, described the way istiod logs them.
fn expected_from_vault(
    sb: &Sandbox,
    s: &Setup,
    names: &ClusterNames,
) -> (Vec<ExpectedCert>, String) {
    let secret = rt()
        .block_on(
            sb.vault()
                .kv_read(&names.kv_mount, &names.secret_path, s.kv, None),
        )
        .expect("read the KV secret")
        .expect("the KV secret exists");
    let expected = ["ca_cert", "root_cert"]
        .iter()
        .map(|field| {
            let pem = secret
                .data
                .get(*field)
                .unwrap_or_else(|| panic!("{field} in Vault"));
            let info = istio_vault_wizard::certs::inspect_pem(pem).expect("parse the PEM");
            let first = info.into_iter().next().expect("one certificate");
            ExpectedCert {
                serial_hex: first.serial,
                subject: first.subject,
                not_before: first.not_before,
                not_after: first.not_after,
            }
        })
        .collect();
    let root = secret.data.get("root_cert").cloned().expect("root_cert");
    (expected, root)
}

/// The wizard's own verify step (`wire --step verify`) on istiod's real log file.
fn wizard_verify(s: &Setup, log: &Path, root_ca_dir: &Path) -> (i32, serde_json::Value) {
    let out = s.run(&[
        "wire",
        "--cluster",
        "cluster1",
        "--step",
        "verify",
        "--yes",
        "--timeout",
        "20",
        "-o",
        "json",
        "--istiod-log",
        log.to_str().expect("utf-8"),
        "--root-ca-dir",
        root_ca_dir.to_str().expect("utf-8"),
    ]);
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
fn istiod_outside_a_cluster_loads_the_vault_ca_and_not_another() {
    let Some(sb) = sandbox_or_skip("istiod outside a cluster") else {
        return;
    };
    let Some(bin) = istiod_binary_or_skip("istiod outside a cluster") else {
        return;
    };
    let t0 = Instant::now();
    let s = write_config(sb, 2, "ec-p256");
    let out = s.run(&["apply", "--yes", "--cluster", "cluster1"]);
    assert!(
        out.status.success(),
        "apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = istio_vault_wizard::config::load(&s.config).expect("config");
    let annotations = pod_annotations(&wiring_for(&config.clusters[0], s.kv));
    let agent = render_with_agent(sb, &s, 0, &annotations);
    assert!(agent.ok, "bao agent failed: {}", agent.log);
    let (expected, vault_root) = expected_from_vault(sb, &s, &config.clusters[0].names);
    assert_eq!(expected.len(), 2);

    // 1. ROOT_CA_DIR = what the agent rendered from Vault.
    let mut istiod = Istiod::start(
        &bin,
        &s.dir.path().join("istiod-vault"),
        "vault",
        &sb.kubeconfigs[0],
        &s.ns(),
        &agent.rendered,
    );
    let sum = istiod.wait_for_chain(&agent.rendered);
    let verdict = compare_with_vault(&sum.loaded_certs, &expected);
    eprintln!(
        "istiod's x509 lines:\n{}\nverdict: {verdict}",
        istiod.x509_lines().join("\n")
    );
    assert_eq!(
        sum.status,
        LogStatus::Success,
        "{sum:?}\n{}",
        istiod.tail(80)
    );
    assert_eq!(
        sum.ca_path.as_deref(),
        Some(
            agent
                .rendered
                .join("root-cert.pem")
                .to_str()
                .expect("utf-8")
        ),
        "istiod names the rendered root-cert.pem\n{}",
        istiod.tail(80)
    );
    assert!(sum.self_signed.is_none(), "{sum:?}");
    assert!(verdict.is_vault_ca(), "{verdict}\n{}", istiod.tail(80));
    let (code, doc) = wizard_verify(&s, &istiod.log, &agent.rendered);
    assert_eq!(code, 0, "wire verify on the real log: {doc:#}");
    assert!(
        doc["report"]["verified"].to_string().contains("verify")
            && doc["events"]
                .to_string()
                .contains("istiod is using the Vault CA"),
        "{doc:#}"
    );
    // The chain istiod serves: its own DNS certificate, then Vault's intermediate and root.
    assert_eq!(sum.loaded_certs.len(), 3, "{:?}", sum.loaded_certs);
    assert!(
        istiod
            .lines()
            .iter()
            .any(|l| l.contains("Use local CA certificate")),
        "istiod used the plugged-in CA\n{}",
        istiod.tail(80)
    );
    // And it hands Vault's root to the workloads of its namespace.
    let published = published_root(sb, &s.ns(), &mut istiod);
    assert_eq!(
        published.trim_end(),
        vault_root.trim_end(),
        "istio-ca-root-cert holds the root stored in Vault"
    );
    drop(istiod);

    // 2. ROOT_CA_DIR = a freshly generated other intermediate under the same root, with
    //    the same subject: only serial and validity tell it apart.
    let other = s.dir.path().join("other-ca");
    common::generate_ec_bundle(
        &other,
        "cluster1",
        &["--root-dir".as_ref(), s.state().join("certs").as_os_str()],
    );
    let other_dir = other.join("cluster1");
    let mut istiod = Istiod::start(
        &bin,
        &s.dir.path().join("istiod-other"),
        "other",
        &sb.kubeconfigs[0],
        &s.ns(),
        &other_dir,
    );
    let sum = istiod.wait_for_chain(&other_dir);
    let verdict = compare_with_vault(&sum.loaded_certs, &expected);
    eprintln!(
        "istiod's x509 lines on the other intermediate:\n{}\nverdict: {verdict}",
        istiod.x509_lines().join("\n")
    );
    // istiod did load that directory as a plugged-in CA (no fallback, no failure) ...
    assert_eq!(
        sum.status,
        LogStatus::Success,
        "{sum:?}\n{}",
        istiod.tail(80)
    );
    assert_eq!(
        sum.ca_path.as_deref(),
        Some(other_dir.join("root-cert.pem").to_str().expect("utf-8")),
        "{}",
        istiod.tail(80)
    );
    assert_eq!(sum.loaded_certs.len(), 3, "{:?}", sum.loaded_certs);
    // ... and the verdict still tells it is not the CA in Vault.
    match &verdict {
        CaVerdict::NotUsingVaultCa {
            mismatches,
            self_signed_hint,
        } => {
            assert!(!self_signed_hint, "{verdict}");
            assert_eq!(
                mismatches.len(),
                1,
                "only the intermediate differs: {verdict}"
            );
            let text = mismatches[0].to_string();
            assert!(
                text.contains("Intermediate CA"),
                "the mismatch names the intermediate: {text}"
            );
        }
        other => panic!("expected a mismatch, got {other}\n{}", istiod.tail(80)),
    }
    // The wizard's verify says so too, and hands over to the doctor (whose chain is
    // healthy here: Vault is fine, istiod reads another directory's CA).
    let (code, doc) = wizard_verify(&s, &istiod.log, &other_dir);
    assert_eq!(code, 1, "{doc:#}");
    let failed = doc["report"]["failed"].to_string();
    assert!(
        failed.contains("NOT using the Vault CA") && failed.contains("doctor:"),
        "{doc:#}"
    );
    drop(istiod);

    let rb = s.run(&["rollback", "--yes"]);
    assert!(
        rb.status.success(),
        "rollback: {}",
        String::from_utf8_lossy(&rb.stderr)
    );
    eprintln!(
        "istiod outside a cluster: {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}
