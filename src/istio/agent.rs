//! Turns the injector annotations into a Vault/OpenBao agent configuration, as the
//! vault-k8s injector does for its init container: kubernetes auto-auth at the annotated
//! auth path and role, one template per `agent-inject-secret-<file>`, exit after auth.
//! It reads the annotations themselves (not the wiring struct), so running the agent with
//! it proves the annotations right.

use std::collections::BTreeMap;
use std::path::Path;

use super::wiring::ANNOTATION_PREFIX;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AgentConfigError {
    #[error("annotation {0} is missing")]
    Missing(String),
    #[error("annotation {0} has an unsafe file name")]
    BadName(String),
}

fn hcl_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

pub fn agent_config_from_annotations(
    annotations: &BTreeMap<String, String>,
    vault_addr: &str,
    token_file: &Path,
    out_dir: &Path,
) -> Result<String, AgentConfigError> {
    let get = |k: &str| annotations.get(&format!("{ANNOTATION_PREFIX}{k}"));
    let auth_path = get("auth-path")
        .cloned()
        .unwrap_or_else(|| "auth/kubernetes".into());
    let role =
        get("role").ok_or_else(|| AgentConfigError::Missing(format!("{ANNOTATION_PREFIX}role")))?;
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
    s.push_str(&format!(
        "    mount_path = {}\n",
        hcl_string(auth_path.trim_end_matches('/'))
    ));
    s.push_str(&format!(
        "    config = {{\n      role = {}\n      token_path = {}\n    }}\n  }}\n",
        hcl_string(role),
        hcl_string(&token_file.display().to_string())
    ));
    s.push_str(&format!(
        "  sink \"file\" {{\n    config = {{\n      path = {}\n    }}\n  }}\n}}\n\n",
        hcl_string(&out_dir.join(".vault-token").display().to_string())
    ));
    s.push_str("template_config {\n  exit_on_retry_failure = true\n}\n");
    let secret_prefix = format!("{ANNOTATION_PREFIX}agent-inject-secret-");
    for (key, path) in annotations {
        let Some(file) = key.strip_prefix(&secret_prefix) else {
            continue;
        };
        if file.is_empty() || file.contains('/') || file.contains("..") {
            return Err(AgentConfigError::BadName(key.clone()));
        }
        // Without a template annotation the injector renders the raw secret; mirror it.
        let contents = get(&format!("agent-inject-template-{file}"))
            .cloned()
            .unwrap_or_else(|| format!("{{{{ with secret {} }}}}{{{{ range $k, $v := .Data }}}}{{{{ $k }}}}: {{{{ $v }}}}\n{{{{ end }}}}{{{{ end }}}}", hcl_string(path)));
        let strict = get(&format!("error-on-missing-key-{file}")).is_some_and(|v| v == "true");
        let perms = get(&format!("agent-inject-perms-{file}")).cloned();
        s.push_str("\ntemplate {\n");
        s.push_str(&format!(
            "  destination = {}\n",
            hcl_string(&out_dir.join(file).display().to_string())
        ));
        s.push_str(&format!("  contents = {}\n", hcl_string(&contents)));
        s.push_str(&format!("  error_on_missing_key = {strict}\n"));
        if let Some(p) = perms {
            s.push_str(&format!("  perms = {}\n", hcl_string(&p)));
        }
        s.push_str("}\n");
    }
    Ok(s)
}
