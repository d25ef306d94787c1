//! Log recognisers on the article's own log excerpts (tests/fixtures/istio/article-*.log,
//! copied from the seed article), on logs built from the exact wordings in istio's
//! pilot/pkg/bootstrap and the Vault agent, on a truncated and an unrelated line, and on
//! arbitrary input (proptest).

use istio_vault_wizard::istio::logs::{Source, go_quote, go_unquote};
use istio_vault_wizard::istio::{
    CaVerdict, CertMismatch, ExpectedCert, LogEvent, LogStatus, X509Line, compare_with_vault,
    entries, normalise_serial, recognise, summarise, summarise_for,
};
use proptest::prelude::*;

fn fixture(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/istio")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn events(text: &str) -> Vec<LogEvent> {
    entries(text.lines())
        .into_iter()
        .map(|(_, e)| recognise(&e))
        .filter(|e| *e != LogEvent::Other)
        .collect()
}

fn failure(status: &LogStatus) -> (usize, &LogEvent, &str) {
    match status {
        LogStatus::Failure {
            line_no,
            event,
            hint,
            ..
        } => (*line_no, event, hint.as_str()),
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn article_expected() -> Vec<ExpectedCert> {
    vec![
        ExpectedCert {
            serial_hex: "de:df:29:8a:14:76:81:d6".into(),
            subject: "O=Istio, CN=Intermediate CA, L=istiod-cluster1".into(),
            not_before: "2022-11-17T22:01:54Z".into(),
            not_after: "2024-11-16T22:01:54Z".into(),
        },
        ExpectedCert {
            serial_hex: "00F5BCD7E89BDB6248".into(),
            subject: "O=Istio, CN=Root CA".into(),
            not_before: "2022-11-17T22:01:52Z".into(),
            not_after: "2032-11-14T22:01:52Z".into(),
        },
    ]
}

// --- the article's own lines -------------------------------------------------------------

#[test]
fn article_vault_agent_log_is_a_success() {
    let log = fixture("article-vault-agent-init.log");
    let ev = events(&log);
    assert!(ev.contains(&LogEvent::AgentAuthOk));
    assert!(ev.contains(&LogEvent::TemplateServerNewToken));
    let rendered: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            LogEvent::Rendered { file } => Some(file.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        rendered,
        [
            "/vault/secrets/root-cert.pem",
            "/vault/secrets/ca-cert.pem",
            "/vault/secrets/cert-chain.pem",
            "/vault/secrets/ca-key.pem"
        ]
    );
    let s = summarise(log.lines());
    assert_eq!(s.status, LogStatus::Success, "{s:?}");
    assert!(s.agent_authenticated);
    assert!(s.recovered.is_empty());
}

#[test]
fn article_discovery_log_is_a_success_on_the_vault_ca() {
    let log = fixture("article-discovery.log");
    let ev = events(&log);
    assert_eq!(
        ev[0],
        LogEvent::CaFileFormat {
            format: "istiod file format".into()
        }
    );
    assert_eq!(
        ev[1],
        LogEvent::PluggedInCert {
            path: "/vault/secrets/ca-key.pem".into()
        }
    );
    assert_eq!(ev.last(), Some(&LogEvent::CertsReloaded));
    let s = summarise(log.lines());
    assert_eq!(s.status, LogStatus::Success, "{s:?}");
    assert_eq!(s.ca_path.as_deref(), Some("/vault/secrets/ca-key.pem"));
    assert_eq!(s.loaded_certs.len(), 3);
    // istiod's own DNS cert (empty subject), the intermediate, the root.
    assert_eq!(s.loaded_certs[0].subject, "");
    assert_eq!(s.loaded_certs[0].serial, "39f67569f10d36a1fc91e9d82156b07d");
    assert_eq!(
        s.loaded_certs[1].subject,
        "CN=Intermediate CA,O=Istio,L=istiod-cluster1"
    );
    assert!(s.loaded_certs[2].is_self_issued());
    let v = compare_with_vault(&s.loaded_certs, &article_expected());
    assert!(v.is_vault_ca(), "{v}");
    assert!(v.to_string().starts_with("istiod is using the Vault CA"));
}

#[test]
fn article_logs_concatenated_are_a_success() {
    let text = format!(
        "{}\n{}",
        fixture("article-vault-agent-init.log"),
        fixture("article-discovery.log")
    );
    let s = summarise(text.lines());
    assert_eq!(s.status, LogStatus::Success, "{s:?}");
    assert_eq!(s.rendered.len(), 4);
}

#[test]
fn serials_that_differ_from_vault_are_not_the_vault_ca() {
    let s = summarise(fixture("article-discovery.log").lines());
    let mut expected = article_expected();
    // Vault holds a newer intermediate (rotated) than the one istiod loaded.
    expected[0].serial_hex = "0a:11:22:33:44:55:66:77".into();
    let v = compare_with_vault(&s.loaded_certs, &expected);
    assert!(!v.is_vault_ca());
    match &v {
        CaVerdict::NotUsingVaultCa { mismatches, .. } => {
            assert_eq!(mismatches.len(), 1);
            assert_eq!(
                mismatches[0],
                CertMismatch::Missing {
                    serial: "a11223344556677".into(),
                    subject: "O=Istio, CN=Intermediate CA, L=istiod-cluster1".into(),
                    loaded_with_same_subject: Some("dedf298a147681d6".into()),
                }
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(v.to_string().contains("serial dedf298a147681d6"), "{v}");
    // Same serial, other validity.
    let mut expected = article_expected();
    expected[1].not_after = "2033-11-14T22:01:52Z".into();
    let v = compare_with_vault(&s.loaded_certs, &expected);
    assert!(matches!(
        &v,
        CaVerdict::NotUsingVaultCa { mismatches, .. }
            if matches!(mismatches[0], CertMismatch::Validity { .. })
    ));
}

#[test]
fn a_self_signed_istiod_is_not_the_vault_ca() {
    let s = summarise(fixture("istiod-self-signed-fallback.log").lines());
    let (line_no, ev, hint) = failure(&s.status);
    assert_eq!(line_no, 1);
    assert!(matches!(ev, LogEvent::SelfSignedFallback { .. }));
    assert!(hint.contains("ROOT_CA_DIR"), "{hint}");
    assert!(s.self_signed.is_some());
    let v = compare_with_vault(&s.loaded_certs, &article_expected());
    assert!(matches!(
        v,
        CaVerdict::NotUsingVaultCa {
            self_signed_hint: true,
            ..
        }
    ));
}

// --- istiod wordings ---------------------------------------------------------------------

#[test]
fn istiod_up_to_1_20_plugged_in_wording() {
    let log = fixture("istiod-1.20-plugged-in.log");
    let ev = events(&log);
    assert!(ev.contains(&LogEvent::LocalCaUsed));
    assert!(ev.contains(&LogEvent::CacertsWatcher {
        dir: "/vault/secrets".into()
    }));
    assert!(ev.contains(&LogEvent::PluggedInCert {
        path: "/vault/secrets/ca-key.pem".into()
    }));
    let s = summarise(log.lines());
    assert_eq!(s.status, LogStatus::Success, "{s:?}");
    assert_eq!(s.loaded_certs.len(), 3);
    assert_eq!(s.loaded_certs[1].serial, "3a5f01c2e4b7d9f1");
}

#[test]
fn istiod_newer_root_cert_from_wording() {
    let log = fixture("istiod-newer-root-cert-from.log");
    assert!(events(&log).contains(&LogEvent::RootCertFrom {
        path: "/vault/secrets/root-cert.pem".into()
    }));
    let s = summarise(log.lines());
    assert_eq!(s.status, LogStatus::Success, "{s:?}");
    assert_eq!(s.ca_path.as_deref(), Some("/vault/secrets/root-cert.pem"));
}

#[test]
fn istiod_on_etc_cacerts_is_not_using_vault() {
    let log = fixture("istiod-etc-cacerts.log");
    let s = summarise(log.lines());
    let (_, ev, hint) = failure(&s.status);
    assert!(matches!(ev, LogEvent::PluggedInCert { .. }));
    assert!(hint.contains("ROOT_CA_DIR is not set"), "{hint}");
    // ...which is right for a cluster that is meant to use the cacerts Secret.
    assert_eq!(
        summarise_for(log.lines(), "./etc/cacerts").status,
        LogStatus::Success
    );
}

#[test]
fn istiod_filesystem_permission_denied_is_not_vaults() {
    let s = summarise(fixture("istiod-file-permission-denied.log").lines());
    let (line_no, ev, hint) = failure(&s.status);
    assert_eq!(line_no, 2);
    assert_eq!(
        ev,
        &LogEvent::FilePermissionDenied {
            path: Some("/vault/secrets/ca-key.pem".into())
        }
    );
    assert!(hint.contains("agent-inject-perms"), "{hint}");
}

#[test]
fn istiod_other_wordings() {
    let cases: [(&str, LogEvent); 6] = [
        (
            "2024-07-25T20:12:53.242128Z\tinfo\tUse istio-generated cacerts at etc/cacerts/ca-key.pem or istio-ca-secret",
            LogEvent::SelfSignedFallback {
                reason: "Use istio-generated cacerts at etc/cacerts/ca-key.pem or istio-ca-secret"
                    .into(),
            },
        ),
        (
            "2024-07-25T20:12:53.242128Z\tinfo\tUse roots from istio-ca-secret",
            LogEvent::SelfSignedFallback {
                reason: "Use roots from istio-ca-secret".into(),
            },
        ),
        (
            "2022-12-23T03:48:42.778241Z\tinfo\tIstiod has detected the newly added intermediate CA and updated its key and certs accordingly",
            LogEvent::CaRotated,
        ),
        (
            "2022-10-05T19:50:32.288662Z    info    Using kubernetes.io/tls secret type for signing ca files",
            LogEvent::CaFileFormat {
                format: "kubernetes.io/tls secret type".into(),
            },
        ),
        (
            "2023-01-01T00:00:00Z\tinfo\tAdded cacerts files watcher at ./etc/cacerts",
            LogEvent::CacertsWatcher {
                dir: "./etc/cacerts".into(),
            },
        ),
        (
            "2023-01-01T00:00:00Z\terror\tFailed to update new Plug-in CA certs: x509: certificate signed by unknown authority",
            LogEvent::IstiodCaFailed {
                reason: "Failed to update new Plug-in CA certs: x509: certificate signed by unknown authority".into(),
            },
        ),
    ];
    for (line, want) in cases {
        assert_eq!(recognise(line), want, "{line}");
        assert_eq!(want.source(), Some(Source::Istiod));
    }
}

// --- Vault agent successes and failures --------------------------------------------------

#[test]
fn agent_newer_prefixes_success() {
    let s = summarise(fixture("agent-newer-success.log").lines());
    assert_eq!(s.status, LogStatus::Success, "{s:?}");
}

#[test]
fn agent_login_permission_denied_multiline() {
    let log = fixture("agent-login-permission-denied.log");
    let s = summarise(log.lines());
    let (line_no, ev, hint) = failure(&s.status);
    assert_eq!(line_no, 17);
    match ev {
        LogEvent::AgentAuthFailed {
            reason,
            code,
            login_path,
        } => {
            assert_eq!(*code, Some(403));
            assert_eq!(login_path.as_deref(), Some("auth/kubernetes/login"));
            assert!(reason.contains("permission denied"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(hint.contains("bound_service_account_names"), "{hint}");
    assert!(!s.agent_authenticated);
}

#[test]
fn agent_login_permission_denied_single_line() {
    let log = fixture("agent-login-single-line.log");
    let ev = events(&log);
    assert_eq!(
        ev[0],
        LogEvent::AgentAuthFailed {
            reason: "Error making API request. URL: PUT http://vault:8200/v1/auth/kubernetes-cluster2/login Code: 403. Errors: * permission denied".into(),
            code: Some(403),
            login_path: Some("auth/kubernetes-cluster2/login".into()),
        }
    );
}

#[test]
fn agent_read_permission_denied() {
    let log = fixture("agent-read-permission-denied.log");
    let s = summarise(log.lines());
    assert!(s.agent_authenticated);
    let (line_no, ev, hint) = failure(&s.status);
    assert_eq!(line_no, 9);
    assert_eq!(
        ev,
        &LogEvent::PermissionDenied {
            path: Some("kubernetes-cluster1-secrets/istiod-service/certs".into())
        }
    );
    assert!(hint.contains("/data/"), "{hint}");
    assert!(
        events(&log)
            .iter()
            .any(|e| matches!(e, LogEvent::AgentRuntimeError { .. }))
    );
}

#[test]
fn agent_missing_key() {
    let s = summarise(fixture("agent-missing-key.log").lines());
    let (line_no, ev, _) = failure(&s.status);
    assert_eq!(line_no, 7);
    assert_eq!(
        ev,
        &LogEvent::MissingKey {
            key: Some("ca_kee".into())
        }
    );
    assert_eq!(s.rendered.len(), 3);
    assert_eq!(
        recognise("2024-01-01T00:00:00Z [WARN] (runner) rendered \"<no value>\" into ca-key.pem"),
        LogEvent::MissingKey { key: None }
    );
}

#[test]
fn agent_kv2_path_without_data_has_no_secret() {
    let s = summarise(fixture("agent-kv2-no-secret.log").lines());
    let (_, ev, _) = failure(&s.status);
    assert_eq!(
        ev,
        &LogEvent::NoSecret {
            path: Some("kubernetes-cluster1-secrets/istiod-service/certs".into())
        }
    );
}

#[test]
fn a_retried_login_that_succeeds_is_recovered() {
    let text = format!(
        "{}\n{}",
        fixture("agent-login-single-line.log"),
        fixture("agent-newer-success.log")
    );
    let s = summarise(text.lines());
    assert_eq!(s.status, LogStatus::Success, "{s:?}");
    assert_eq!(s.recovered.len(), 1);
    assert_eq!(s.recovered[0].0, 2);
}

// --- robustness --------------------------------------------------------------------------

#[test]
fn truncated_and_unrelated_lines() {
    let truncated =
        "2022-11-18T11:01:21.515Z [INFO] (runner) rendered \"(dynamic)\" => \"/vault/sec";
    assert_eq!(recognise(truncated), LogEvent::Other);
    let truncated_x509 = "  info\tx509 cert - Issuer: \"CN=Root CA,O=Istio\", Subject: \"CN=Root CA,O=Istio\", SN: f5bcd7e8";
    assert_eq!(recognise(truncated_x509), LogEvent::Other);
    assert_eq!(recognise("2022-11-18T11"), LogEvent::Other);
    assert_eq!(recognise("[INFO"), LogEvent::Other);
    assert_eq!(
        recognise("2025-06-10T14:02:07.531208Z\tinfo\tads\tADS: new connection for node:sleep-1"),
        LogEvent::Other
    );
    assert_eq!(recognise("hello world"), LogEvent::Other);
    assert_eq!(recognise(""), LogEvent::Other);
    let s = summarise(["hello world", "", truncated]);
    assert!(matches!(s.status, LogStatus::InProgress { .. }), "{s:?}");
    assert_eq!(s.recognised, 0);
    let s = summarise(Vec::<String>::new());
    assert!(matches!(s.status, LogStatus::InProgress { .. }));
}

#[test]
fn agent_in_progress_lists_what_is_missing() {
    let text = fixture("agent-newer-success.log");
    let partial: Vec<&str> = text.lines().take(7).collect();
    match summarise(partial).status {
        LogStatus::InProgress { waiting_for } => {
            assert_eq!(
                waiting_for,
                [
                    "vault agent: render ca-key.pem",
                    "vault agent: render root-cert.pem",
                    "vault agent: render cert-chain.pem"
                ]
            );
        }
        other => panic!("{other:?}"),
    }
}

fn hex_serial() -> impl Strategy<Value = String> {
    "[0-9a-f]{1,40}".prop_map(|s| normalise_serial(&s))
}

fn rfc3339() -> impl Strategy<Value = String> {
    (0i64..4_000_000_000i64).prop_map(|t| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .expect("in range")
            .format(&time::format_description::well_known::Rfc3339)
            .expect("format")
    })
}

proptest! {
    #[test]
    fn recognise_never_panics(s in any::<String>()) {
        let _ = recognise(&s);
    }

    #[test]
    fn recognise_never_panics_on_bytes(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let s = String::from_utf8_lossy(&b);
        let _ = recognise(&s);
        let _ = summarise(s.lines());
    }

    #[test]
    fn recognise_never_panics_near_known_wordings(
        prefix in prop::sample::select(vec![
            "", "2022-11-18T11:01:21.398Z [INFO]  ", "  info\t", "2021/04/13 17:09:35 [WARN] ",
            "{\"level\":", "[pod/x] ", "2024-01-01T00:00:00Z\terror\tscope\t",
        ]),
        body in prop::sample::select(vec![
            "x509 cert - Issuer: \"", "rendered \"(dynamic)\" => \"", "error authenticating: error=\"",
            "Use plugged-in cert at ", "map has no entry for key \\\"", "vault.read(", "URL: GET ",
            "Code: ", "open /x: permission denied", "Use root cert from ",
        ]),
        tail in ".{0,40}",
    ) {
        let line = format!("{prefix}{body}{tail}");
        let _ = recognise(&line);
        let _ = summarise([line.as_str(), "  | * permission denied", "  error="]);
    }

    #[test]
    fn x509_line_roundtrip(
        issuer in any::<String>(),
        subject in any::<String>(),
        serial in hex_serial(),
        not_before in rfc3339(),
        not_after in rfc3339(),
    ) {
        let x = X509Line { issuer, subject, serial, not_before, not_after };
        let line = format!("2024-01-01T00:00:00.000000Z\tinfo\t{}", x.to_log_message());
        prop_assert_eq!(recognise(&line), LogEvent::X509Cert(x.clone()));
        prop_assert_eq!(X509Line::parse(&x.to_log_message()), Ok(x));
    }

    #[test]
    fn go_quote_roundtrip(s in any::<String>()) {
        let q = go_quote(&s);
        prop_assert_eq!(go_unquote(&q), Some((s, "")));
    }

    #[test]
    fn serial_forms_agree(bytes in proptest::collection::vec(any::<u8>(), 1..20)) {
        let colon = bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
        let plain = hex::encode(&bytes);
        prop_assert_eq!(normalise_serial(&colon), normalise_serial(&plain));
        prop_assert!(!normalise_serial(&plain).starts_with('0') || normalise_serial(&plain) == "0");
    }
}

// --- real OpenBao agent output (captured from tests/istio_agent.rs with
// IVW_AGENT_LOG_DIR; stdout, which ends in "Error encountered during run", precedes stderr) ---

#[test]
fn real_bao_agent_success_logs() {
    for f in ["bao-agent-kv1-success.log", "bao-agent-kv2-success.log"] {
        let s = summarise(fixture(f).lines());
        assert_eq!(s.status, LogStatus::Success, "{f}: {s:?}");
        assert!(s.agent_authenticated);
        assert_eq!(s.rendered.len(), 4, "{f}");
    }
}

#[test]
fn real_bao_agent_missing_key_log() {
    let s = summarise(fixture("bao-agent-kv2-missing-key.log").lines());
    let (_, ev, hint) = failure(&s.status);
    assert_eq!(
        ev,
        &LogEvent::MissingKey {
            key: Some("ca_kee".into())
        }
    );
    assert!(hint.contains(".Data.data.<key>"), "{hint}");
    let ev = events(&fixture("bao-agent-kv2-missing-key.log"));
    assert!(ev.iter().any(|e| matches!(
        e,
        LogEvent::AgentRuntimeError { reason } if reason.starts_with("Error encountered during run")
    )));
}

// --- the verify step's judgement (what `wire --step verify` reports) ----------------------

fn lines_of(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .flat_map(|n| fixture(n).lines().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

#[test]
fn verify_says_vault_ca_only_when_the_article_chain_matches_vault() {
    use istio_vault_wizard::plan::istio_steps::judge;
    let lines = lines_of(&["article-vault-agent-init.log", "article-discovery.log"]);
    let verdict = judge(&lines, "/vault/secrets", &article_expected()).expect("matches");
    assert!(
        verdict
            .to_string()
            .starts_with("istiod is using the Vault CA"),
        "{verdict}"
    );

    // Vault holds another intermediate (regenerated, or the other cluster's): not the Vault CA.
    let mut other = article_expected();
    other[0].serial_hex = "01:02:03:04".into();
    let why = judge(&lines, "/vault/secrets", &other).expect_err("serial differs");
    assert!(
        why.contains("serial 1020304") && why.contains("NOT"),
        "{why}"
    );

    // A failure in the agent's log is named by its line, before any comparison.
    let denied = lines_of(&["agent-read-permission-denied.log"]);
    let why = judge(&denied, "/vault/secrets", &article_expected()).expect_err("denied");
    assert!(why.starts_with("log line "), "{why}");
    assert!(why.contains("does not allow read"), "{why}");

    // istiod fell back to its own CA.
    let fallback = lines_of(&["istiod-self-signed-fallback.log"]);
    assert!(judge(&fallback, "/vault/secrets", &article_expected()).is_err());

    // Nothing logged yet: not a success.
    let why = judge(&[], "/vault/secrets", &article_expected()).expect_err("empty");
    assert!(why.contains("inconclusive"), "{why}");
}

#[test]
fn go_hex_serials_without_the_leading_zero_match_vaults() {
    // Real istiod output (tests/istiod_outside.rs): Go's %x drops a leading zero nibble,
    // so a 16-byte serial can print as 31 hex digits.
    let from_istiod = "baedd940d5c399547acac395b87f5c1";
    let from_vault = "0b:ae:dd:94:0d:5c:39:95:47:ac:ac:39:5b:87:f5:c1";
    assert_eq!(normalise_serial(from_istiod), normalise_serial(from_vault));
}
