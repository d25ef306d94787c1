//! Helm values, injector values, helm commands, the Gateway snippet and the agent config,
//! checked as YAML/HCL text (insta snapshots in tests/snapshots/) and as data; the
//! article's own values file (tests/fixtures/istio/article-cluster1-values.yaml) read back
//! and checked; each broken link of the wiring pinned to its finding code.

use std::collections::BTreeMap;
use std::path::Path;

use istio_vault_wizard::config::IstioSection;
use istio_vault_wizard::istio::helm::{Helm, injector_install};
use istio_vault_wizard::istio::{
    ANNOTATION_PREFIX, ChartStyle, FILES, IstioError, IstiodWiring, bao_agent_config,
    bao_agent_config_from_annotations, check_values_yaml, check_wiring, gateway_snippet,
    injector_values, pod_annotations, values_yaml, wiring_from_values_yaml,
};
use serde_yaml::Value;

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/istio")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn wiring(kv: u8) -> IstiodWiring {
    IstiodWiring::article_defaults("cluster1", kv)
}

fn env_ok() -> BTreeMap<String, String> {
    BTreeMap::from([("ROOT_CA_DIR".to_string(), "/vault/secrets".to_string())])
}

fn a(k: &str) -> String {
    format!("{ANNOTATION_PREFIX}{k}")
}

// --- values files ------------------------------------------------------------------------

#[test]
fn values_snapshots() {
    insta::assert_snapshot!(
        "values_kv1_legacy",
        values_yaml(&wiring(1), ChartStyle::Legacy)
    );
    insta::assert_snapshot!("values_kv1_flat", values_yaml(&wiring(1), ChartStyle::Flat));
    insta::assert_snapshot!(
        "values_kv2_legacy",
        values_yaml(&wiring(2), ChartStyle::Legacy)
    );
    insta::assert_snapshot!("values_kv2_flat", values_yaml(&wiring(2), ChartStyle::Flat));
}

#[test]
fn values_parse_with_the_exact_keys() {
    for kv in [1u8, 2] {
        for style in [ChartStyle::Legacy, ChartStyle::Flat] {
            let y = values_yaml(&wiring(kv), style);
            let v: Value = serde_yaml::from_str(&y).expect("valid YAML");
            let body = match style {
                ChartStyle::Legacy => {
                    assert!(v.get("podAnnotations").is_none());
                    &v["pilot"]
                }
                ChartStyle::Flat => {
                    assert!(v.get("pilot").is_none());
                    &v
                }
            };
            assert_eq!(body["env"]["ROOT_CA_DIR"].as_str(), Some("/vault/secrets"));
            let ann = body["podAnnotations"].as_mapping().expect("podAnnotations");
            let s = |k: &str| ann.get(a(k).as_str()).and_then(Value::as_str);
            assert_eq!(s("agent-inject"), Some("true"));
            assert_eq!(s("agent-init-first"), Some("true"));
            assert_eq!(s("role"), Some("istiod"));
            assert_eq!(s("auth-path"), Some("auth/kubernetes-cluster1"));
            let path = if kv == 2 {
                "kubernetes-cluster1-secrets/data/istiod-service/certs"
            } else {
                "kubernetes-cluster1-secrets/istiod-service/certs"
            };
            for (file, key) in FILES {
                assert_eq!(s(&format!("agent-inject-secret-{file}")), Some(path));
                let t = s(&format!("agent-inject-template-{file}")).expect("template");
                let want = if kv == 2 {
                    format!("{{{{ .Data.data.{key} }}}}")
                } else {
                    format!("{{{{ .Data.{key} }}}}")
                };
                assert!(t.contains(&want), "{t}");
                assert!(
                    t.starts_with(&format!("{{{{- with secret \"{path}\" -}}}}\n")),
                    "{t}"
                );
                if kv == 1 {
                    assert!(!t.contains(".Data.data."), "{t}");
                }
                assert_eq!(s(&format!("error-on-missing-key-{file}")), Some("true"));
                assert_eq!(s(&format!("agent-inject-perms-{file}")), Some("0644"));
            }
            // 4 base annotations + 4 files × (secret, template, perms, error-on-missing-key).
            assert_eq!(ann.len(), 4 + 4 * 4);
            // Deterministic.
            assert_eq!(y, values_yaml(&wiring(kv), style));
        }
    }
}

#[test]
fn the_articles_values_file_reads_back_and_only_lacks_error_on_missing_key() {
    let y = fixture("article-cluster1-values.yaml");
    let (ann, env) = wiring_from_values_yaml(&y).expect("article YAML");
    assert_eq!(ann.len(), 12);
    let findings = check_wiring(&ann, &env, &wiring(1));
    assert_eq!(findings.len(), 4, "{findings:#?}");
    assert!(findings.iter().all(|f| f.code == "no-error-on-missing-key"));
    // Against a KV v2 mount the same file has the classic path/template breakage.
    let v2: Vec<_> = check_wiring(&ann, &env, &wiring(2))
        .into_iter()
        .map(|f| f.code)
        .collect();
    assert_eq!(v2.iter().filter(|c| **c == "wrong-secret-path").count(), 4);
    assert_eq!(v2.iter().filter(|c| **c == "wrong-template").count(), 4);
    // The article used the <= 1.23 layout; fine for Legacy, and 1.24+ still merges pilot:.
    let f = check_values_yaml(&y, &wiring(1), Some(ChartStyle::Legacy)).expect("yaml");
    assert!(f.iter().all(|f| f.code != "chart-layout"));
    // The article's annotations make a working agent config too.
    let hcl = bao_agent_config_from_annotations(
        &ann,
        "http://vault:8200",
        Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token"),
        Path::new("/vault/secrets"),
    )
    .expect("agent config");
    assert_eq!(hcl.matches("\ntemplate {").count(), 4);
    assert_eq!(hcl.matches("error_on_missing_key = false").count(), 4);
}

#[test]
fn values_that_are_not_values_are_errors() {
    assert!(matches!(
        wiring_from_values_yaml("pilot: [unclosed"),
        Err(IstioError::InvalidValues(_))
    ));
    assert!(matches!(
        wiring_from_values_yaml("- a\n- b\n"),
        Err(IstioError::InvalidValues(_))
    ));
    let (a, e) = wiring_from_values_yaml("").expect("empty is empty");
    assert!(a.is_empty() && e.is_empty());
    // Non-string scalars are read as text (agent-inject: true unquoted).
    let (a, _) =
        wiring_from_values_yaml("podAnnotations:\n  vault.hashicorp.com/agent-inject: true\n")
            .expect("yaml");
    assert_eq!(a[&self::a("agent-inject")], "true");
}

// --- each broken link --------------------------------------------------------------------

fn codes_after(
    kv: u8,
    edit: impl FnOnce(&mut BTreeMap<String, String>, &mut BTreeMap<String, String>),
) -> Vec<&'static str> {
    let mut ann = pod_annotations(&wiring(kv));
    let mut env = env_ok();
    edit(&mut ann, &mut env);
    let mut c: Vec<_> = check_wiring(&ann, &env, &wiring(kv))
        .into_iter()
        .map(|f| f.code)
        .collect();
    c.dedup();
    c
}

#[test]
fn each_broken_link_has_its_code_and_a_fix() {
    assert!(codes_after(1, |_, _| {}).is_empty());
    assert_eq!(
        codes_after(1, |a, _| {
            a.insert(self::a("agent-inject"), "false".into());
        }),
        ["inject-off"]
    );
    assert_eq!(
        codes_after(1, |a, _| {
            a.remove(&self::a("agent-init-first"));
        }),
        ["init-not-first"]
    );
    assert_eq!(
        codes_after(1, |a, _| {
            a.remove(&self::a("auth-path"));
        }),
        ["wrong-auth-path"]
    );
    assert_eq!(
        codes_after(1, |a, _| {
            a.insert(self::a("role"), "istio".into());
        }),
        ["wrong-role"]
    );
    assert_eq!(
        codes_after(2, |a, _| {
            a.insert(
                self::a("agent-inject-template-ca-key.pem"),
                "{{- with secret \"kubernetes-cluster1-secrets/data/istiod-service/certs\" -}}\n{{ .Data.ca_key }}\n{{ end -}}\n".into(),
            );
        }),
        ["wrong-template"]
    );
    assert_eq!(
        codes_after(1, |a, _| {
            a.remove(&self::a("error-on-missing-key-root-cert.pem"));
        }),
        ["no-error-on-missing-key"]
    );
    assert_eq!(
        codes_after(1, |a, _| {
            a.insert(self::a("agent-inject-perms-ca-key.pem"), "0600".into());
        }),
        ["unreadable-perms"]
    );
    assert_eq!(
        codes_after(1, |a, _| {
            a.insert(self::a("agent-inject-file-ca-key.pem"), "key.pem".into());
        }),
        ["file-renamed"]
    );
    assert_eq!(
        codes_after(1, |a, _| {
            a.insert(self::a("secret-volume-path"), "/etc/istio-ca".into());
        }),
        ["volume-path"]
    );
    assert_eq!(
        codes_after(1, |_, e| {
            e.clear();
        }),
        ["root-ca-dir"]
    );
    // Go booleans: "1" / "True" are as good as "true".
    assert!(
        codes_after(1, |a, _| {
            a.insert(self::a("agent-inject"), "1".into());
            a.insert(self::a("agent-init-first"), "True".into());
        })
        .is_empty()
    );
    // Every finding carries a concrete fix.
    let mut ann = pod_annotations(&wiring(1));
    ann.clear();
    for f in check_wiring(&ann, &BTreeMap::new(), &wiring(1)) {
        assert!(!f.fix.is_empty() && !f.message.is_empty(), "{f:?}");
    }
}

// --- injector, helm, gateway, agent config -----------------------------------------------

#[test]
fn injector_values_and_command() {
    let y = injector_values("http://vault.example.internal:8200");
    insta::assert_snapshot!("injector_values", y);
    let v: Value = serde_yaml::from_str(&y).expect("yaml");
    assert_eq!(
        v["global"]["externalVaultAddr"].as_str(),
        Some("http://vault.example.internal:8200")
    );
    assert_eq!(v["injector"]["enabled"].as_bool(), Some(true));
    let s = IstioSection::default();
    let helm = Helm::new("helm", None, None);
    assert_eq!(
        helm.command_line(
            &helm.upgrade_install_args(&injector_install(&s, "http://vault.example.internal:8200"))
        ),
        "helm upgrade --install vault-inject hashicorp/vault --namespace vault --create-namespace --set global.externalVaultAddr=http://vault.example.internal:8200 --set injector.enabled=true"
    );
}

#[test]
fn gateway_snippet_points_into_vault_secrets() {
    let y = gateway_snippet(
        "ingress-vault",
        "istio-ingress",
        &["*.example.com"],
        "/vault/secrets/",
        true,
    );
    insta::assert_snapshot!("gateway_mutual", y);
    let v: Value = serde_yaml::from_str(&y).expect("yaml");
    let tls = &v["spec"]["servers"][0]["tls"];
    assert_eq!(
        tls["serverCertificate"].as_str(),
        Some("/vault/secrets/tls.crt")
    );
    assert_eq!(tls["privateKey"].as_str(), Some("/vault/secrets/tls.key"));
    assert_eq!(
        tls["caCertificates"].as_str(),
        Some("/vault/secrets/ca.crt")
    );
    let simple: Value =
        serde_yaml::from_str(&gateway_snippet("g", "n", &["a"], "/d", false)).expect("yaml");
    assert!(
        simple["spec"]["servers"][0]["tls"]
            .get("caCertificates")
            .is_none()
    );
}

#[test]
fn agent_config_snapshots() {
    for kv in [1u8, 2] {
        let hcl = bao_agent_config(
            &wiring(kv),
            "http://127.0.0.1:8200",
            Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token"),
            Path::new("/vault/secrets"),
        )
        .expect("config");
        insta::assert_snapshot!(format!("agent_config_kv{kv}"), hcl);
    }
}

#[test]
fn agent_config_reads_the_annotations_not_the_struct() {
    let mut ann = pod_annotations(&wiring(1));
    ann.insert(a("auth-path"), "auth/kubernetes-cluster9/".into());
    ann.insert(a("role"), "other".into());
    let hcl =
        bao_agent_config_from_annotations(&ann, "http://v:8200", Path::new("/t"), Path::new("/o"))
            .expect("config");
    assert!(
        hcl.contains("mount_path = \"auth/kubernetes-cluster9\""),
        "{hcl}"
    );
    assert!(hcl.contains("role = \"other\""), "{hcl}");
    ann.remove(&a("role"));
    assert_eq!(
        bao_agent_config_from_annotations(&ann, "http://v:8200", Path::new("/t"), Path::new("/o")),
        Err(IstioError::MissingAnnotation(a("role")))
    );
}
