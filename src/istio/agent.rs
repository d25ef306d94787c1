//! Turns the injector annotations into a Vault/OpenBao agent configuration, as the
//! vault-k8s injector does for its init container: kubernetes auto-auth at the annotated
//! auth path and role, one template per secret name, exit after auth. It reads the
//! annotations themselves (not the wiring struct), so running the agent with it proves
//! the annotations right.
//!
//! Mirrors vault-k8s `agent/annotations.go` `secrets()` and `config.go`: a secret is named
//! by any of `agent-inject-secret-<n>`, `agent-inject-template-<n>` (annotations with an
//! empty value are ignored); `<n>` is lower-cased unless `preserve-secret-case[-<n>]` is
//! true; the destination is `<dir>/<n>`, or `<dir>/<agent-inject-file-<n>>`; booleans are
//! Go `strconv.ParseBool` values and a bad one is an error, as in the injector.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use super::IstioError;
use super::values::{ANNOTATION_PREFIX, IstiodWiring, parse_go_bool, pod_annotations};

/// Kept for callers of the first version of this module.
pub type AgentConfigError = IstioError;

fn hcl_string(s: &str) -> String {
    // JSON string escapes are valid HCL string escapes. Vault and OpenBao parse agent
    // config with HCL 1, which keeps `${...}` in a string literally (no `$${` escape).
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn default_template(path: &str) -> String {
    // vault-k8s DefaultTemplate.
    format!(
        "{{{{ with secret {} }}}}{{{{ range $k, $v := .Data }}}}{{{{ $k }}}}: {{{{ $v }}}}\n{{{{ end }}}}{{{{ end }}}}",
        serde_json::to_string(path).unwrap_or_default()
    )
}

fn safe_relative(file: &str) -> bool {
    let p = Path::new(file);
    !file.is_empty()
        && !p.is_absolute()
        && p.components().all(|c| matches!(c, Component::Normal(_)))
}

struct SecretSpec {
    raw: String,
    name: String,
}

/// The agent config the injector would generate from these annotations, with the SA
/// token read from `token_file` and files written under `out_dir`.
pub fn bao_agent_config_from_annotations(
    annotations: &BTreeMap<String, String>,
    vault_addr: &str,
    token_file: &Path,
    out_dir: &Path,
) -> Result<String, IstioError> {
    let get = |k: &str| annotations.get(&format!("{ANNOTATION_PREFIX}{k}"));
    let get_bool = |k: &str, default: bool| -> Result<bool, IstioError> {
        match get(k) {
            None => Ok(default),
            Some(v) => parse_go_bool(v.trim()).ok_or_else(|| IstioError::BadAnnotation {
                annotation: format!("{ANNOTATION_PREFIX}{k}"),
                reason: format!("{v:?} is not a boolean"),
            }),
        }
    };
    if !get_bool("agent-inject", false)? {
        return Err(IstioError::InjectionDisabled);
    }
    let auth_path = get("auth-path")
        .map(|s| s.trim().trim_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "auth/kubernetes".into());
    let role = get("role")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| IstioError::MissingAnnotation(format!("{ANNOTATION_PREFIX}role")))?;
    let exit_on_retry_failure = get_bool("template-config-exit-on-retry-failure", true)?;

    // Secret names, in annotation order (BTreeMap: sorted, so the output is stable).
    let mut secrets: Vec<SecretSpec> = Vec::new();
    for (k, v) in annotations {
        if v.trim().is_empty() {
            continue;
        }
        let Some(rest) = k.strip_prefix(ANNOTATION_PREFIX) else {
            continue;
        };
        let raw = ["agent-inject-secret-", "agent-inject-template-"]
            .iter()
            .find_map(|p| rest.strip_prefix(p))
            // `agent-inject-template-file-<n>` names a template on disk, not a secret "file-<n>".
            .filter(|_| !rest.starts_with("agent-inject-template-file-"));
        let Some(raw) = raw else { continue };
        if raw.is_empty() || secrets.iter().any(|s| s.raw == raw) {
            continue;
        }
        let preserve = match get(&format!("preserve-secret-case-{raw}")) {
            Some(_) => get_bool(&format!("preserve-secret-case-{raw}"), false)?,
            None => get_bool("preserve-secret-case", false)?,
        };
        let name = if preserve {
            raw.to_string()
        } else {
            raw.to_lowercase()
        };
        secrets.push(SecretSpec {
            raw: raw.to_string(),
            name,
        });
    }

    let mut s = String::new();
    s.push_str("exit_after_auth = true\n");
    s.push_str(&format!(
        "pid_file = {}\n\n",
        hcl_string(&out_dir.join(".agent.pid").display().to_string())
    ));
    s.push_str(&format!(
        "vault {{\n  address = {}\n}}\n\n",
        hcl_string(vault_addr)
    ));
    s.push_str("auto_auth {\n  method \"kubernetes\" {\n");
    s.push_str(&format!("    mount_path = {}\n", hcl_string(&auth_path)));
    s.push_str("    config = {\n");
    s.push_str(&format!("      role = {}\n", hcl_string(role)));
    s.push_str(&format!(
        "      token_path = {}\n",
        hcl_string(&token_file.display().to_string())
    ));
    let auth_config_prefix = format!("{ANNOTATION_PREFIX}auth-config-");
    for (k, v) in annotations {
        if let Some(param) = k.strip_prefix(&auth_config_prefix) {
            let param = param.replace('-', "_");
            if param == "token_path" || param == "role" {
                continue;
            }
            if param.is_empty() || !param.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(IstioError::BadAnnotation {
                    annotation: k.clone(),
                    reason: "not a valid auth config parameter name".into(),
                });
            }
            s.push_str(&format!("      {param} = {}\n", hcl_string(v)));
        }
    }
    s.push_str("    }\n  }\n");
    s.push_str(&format!(
        "  sink \"file\" {{\n    config = {{\n      path = {}\n    }}\n  }}\n}}\n\n",
        hcl_string(&out_dir.join(".vault-token").display().to_string())
    ));
    s.push_str(&format!(
        "template_config {{\n  exit_on_retry_failure = {exit_on_retry_failure}\n}}\n"
    ));
    for sec in &secrets {
        let raw = &sec.raw;
        let path = get(&format!("agent-inject-secret-{raw}"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let file = get(&format!("agent-inject-file-{raw}"))
            .map(|f| f.trim().trim_start_matches('/').to_string())
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| sec.name.clone());
        if !safe_relative(&file) {
            return Err(IstioError::BadFileName(format!(
                "{ANNOTATION_PREFIX}agent-inject-secret-{raw} → {file:?}"
            )));
        }
        let contents = match get(&format!("agent-inject-template-{raw}")) {
            Some(t) if !t.trim().is_empty() => t.clone(),
            _ if path.is_empty() => {
                return Err(IstioError::MissingAnnotation(format!(
                    "{ANNOTATION_PREFIX}agent-inject-secret-{raw}"
                )));
            }
            _ => default_template(&path),
        };
        let strict = get_bool(&format!("error-on-missing-key-{raw}"), false)?;
        let perms = match get(&format!("agent-inject-perms-{raw}")) {
            None => None,
            Some(p) => {
                let p = p.trim();
                let digits = p.strip_prefix("0o").unwrap_or(p);
                if digits.is_empty() || digits.len() > 4 || u32::from_str_radix(digits, 8).is_err()
                {
                    return Err(IstioError::BadAnnotation {
                        annotation: format!("{ANNOTATION_PREFIX}agent-inject-perms-{raw}"),
                        reason: format!("{p:?} is not an octal file mode"),
                    });
                }
                Some(p.to_string())
            }
        };
        s.push_str("\ntemplate {\n");
        s.push_str(&format!(
            "  destination = {}\n",
            hcl_string(&out_dir.join(&file).display().to_string())
        ));
        s.push_str(&format!("  contents = {}\n", hcl_string(&contents)));
        s.push_str("  left_delimiter = \"{{\"\n  right_delimiter = \"}}\"\n");
        s.push_str(&format!("  error_on_missing_key = {strict}\n"));
        if let Some(p) = perms {
            s.push_str(&format!("  perms = {}\n", hcl_string(&p)));
        }
        s.push_str("}\n");
    }
    Ok(s)
}

/// Former name of [`bao_agent_config_from_annotations`].
pub fn agent_config_from_annotations(
    annotations: &BTreeMap<String, String>,
    vault_addr: &str,
    token_file: &Path,
    out_dir: &Path,
) -> Result<String, AgentConfigError> {
    bao_agent_config_from_annotations(annotations, vault_addr, token_file, out_dir)
}

/// The agent config for a wiring, built through its annotations (so it is exactly what
/// the injector would run for the generated values).
pub fn bao_agent_config(
    wiring: &IstiodWiring,
    vault_addr: &str,
    token_file: &Path,
    out_dir: &Path,
) -> Result<String, IstioError> {
    bao_agent_config_from_annotations(&pod_annotations(wiring), vault_addr, token_file, out_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn cfg(a: &BTreeMap<String, String>) -> Result<String, IstioError> {
        bao_agent_config_from_annotations(
            a,
            "http://127.0.0.1:8200",
            &PathBuf::from("/t/token"),
            &PathBuf::from("/out"),
        )
    }

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{ANNOTATION_PREFIX}{k}"), v.to_string()))
            .collect()
    }

    #[test]
    fn four_templates_for_the_wiring() {
        let w = IstiodWiring::article_defaults("cluster1", 2);
        let h = bao_agent_config(
            &w,
            "http://v:8200",
            Path::new("/tok"),
            Path::new("/vault/secrets"),
        )
        .expect("config");
        assert_eq!(h.matches("\ntemplate {").count(), 4);
        assert!(h.contains("mount_path = \"auth/kubernetes-cluster1\""));
        assert!(h.contains("role = \"istiod\""));
        assert!(h.contains("token_path = \"/tok\""));
        assert!(h.contains("exit_after_auth = true"));
        assert!(h.contains("exit_on_retry_failure = true"));
        assert!(h.contains("destination = \"/vault/secrets/ca-key.pem\""));
        assert!(h.contains(".Data.data.ca_key"));
        assert_eq!(h.matches("error_on_missing_key = true").count(), 4);
        assert_eq!(h.matches("perms = \"0644\"").count(), 4);
    }

    #[test]
    fn injector_semantics_are_mirrored() {
        let a = ann(&[
            ("agent-inject", "1"),
            ("role", "r"),
            ("agent-inject-secret-Foo", "kv/foo"),
            ("agent-inject-file-Foo", "sub/foo.txt"),
            (
                "agent-inject-template-bar",
                "{{ with secret \"kv/bar\" }}x{{ end }}",
            ),
            ("agent-inject-secret-empty", ""),
            ("auth-config-audience", "vault"),
        ]);
        let h = cfg(&a).expect("config");
        assert!(h.contains("mount_path = \"auth/kubernetes\""));
        assert!(h.contains("destination = \"/out/sub/foo.txt\""));
        assert!(h.contains("destination = \"/out/bar\""));
        assert!(!h.contains("/out/empty"));
        assert!(h.contains("range $k, $v := .Data"));
        assert!(h.contains("audience = \"vault\""));
        assert_eq!(h.matches("error_on_missing_key = false").count(), 2);
        // Lower-cased name without preserve-secret-case.
        let a2 = ann(&[
            ("agent-inject", "true"),
            ("role", "r"),
            ("agent-inject-secret-Foo", "kv/foo"),
        ]);
        assert!(cfg(&a2).expect("config").contains("\"/out/foo\""));
        let mut a3 = a2.clone();
        a3.insert(
            format!("{ANNOTATION_PREFIX}preserve-secret-case"),
            "true".into(),
        );
        assert!(cfg(&a3).expect("config").contains("\"/out/Foo\""));
    }

    #[test]
    fn broken_annotations_are_errors() {
        assert_eq!(
            cfg(&ann(&[("role", "r")])).unwrap_err(),
            IstioError::InjectionDisabled
        );
        assert!(matches!(
            cfg(&ann(&[("agent-inject", "true")])).unwrap_err(),
            IstioError::MissingAnnotation(_)
        ));
        assert!(matches!(
            cfg(&ann(&[("agent-inject", "yes"), ("role", "r")])).unwrap_err(),
            IstioError::BadAnnotation { .. }
        ));
        let base = [("agent-inject", "true"), ("role", "r")];
        let with = |extra: &[(&str, &str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            cfg(&ann(&v))
        };
        assert!(matches!(
            with(&[
                ("agent-inject-secret-x", "kv/x"),
                ("agent-inject-file-x", "../x")
            ]),
            Err(IstioError::BadFileName(_))
        ));
        assert!(matches!(
            with(&[
                ("agent-inject-secret-x", "kv/x"),
                ("agent-inject-perms-x", "rw-r--r--")
            ]),
            Err(IstioError::BadAnnotation { .. })
        ));
        assert!(matches!(
            with(&[
                ("agent-inject-secret-x", "kv/x"),
                ("error-on-missing-key-x", "maybe")
            ]),
            Err(IstioError::BadAnnotation { .. })
        ));
    }

    #[test]
    fn hcl_strings_are_escaped() {
        assert_eq!(hcl_string("q\"\n"), "\"q\\\"\\n\"");
    }
}
