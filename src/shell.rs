//! Shell words for the commands the wizard prints: previews, the runbook, doctor fixes.

use std::path::Path;

/// Quotes `s` for a POSIX shell unless it is made of characters that need none.
pub fn quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '_' | '.' | '/' | ':' | '=' | '@' | ',' | '+')
        });
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `kubectl` aimed at one cluster: its kubeconfig and context, when known.
pub fn kubectl(kubeconfig: Option<&Path>, context: Option<&str>) -> String {
    let mut s = String::from("kubectl");
    if let Some(k) = kubeconfig {
        s.push_str(&format!(
            " --kubeconfig {}",
            quote(&k.display().to_string())
        ));
    }
    if let Some(c) = context {
        s.push_str(&format!(" --context {}", quote(c)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(
            quote("auth/kubernetes-cluster1"),
            "auth/kubernetes-cluster1"
        );
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(
            kubectl(Some(Path::new("/a b/k.yml")), Some("c1")),
            "kubectl --kubeconfig '/a b/k.yml' --context c1"
        );
    }
}
