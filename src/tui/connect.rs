//! The Connect form: Vault address, token (masked), CA file, namespace, and the clusters
//! (name, kubeconfig, context). ratatui-textarea inputs with live validation; it builds a
//! `Config` through `config::parse` (same validation as the file) and the text of a
//! `wizard.toml`. The token is never written to the file.

use std::path::{Path, PathBuf};

use ratatui_textarea::TextArea;

use crate::config::{self, ClusterSection, Config, ConfigFile};
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Address,
    Token,
    CaFile,
    Namespace,
    ClusterName,
    Kubeconfig,
    Context,
}

impl FieldKind {
    pub fn label(self) -> &'static str {
        match self {
            FieldKind::Address => "Vault address",
            FieldKind::Token => "Vault token",
            FieldKind::CaFile => "CA file",
            FieldKind::Namespace => "Namespace",
            FieldKind::ClusterName => "Cluster",
            FieldKind::Kubeconfig => "  kubeconfig",
            FieldKind::Context => "  context",
        }
    }
}

pub struct Field {
    pub kind: FieldKind,
    pub input: TextArea<'static>,
    /// Live validation: Err(problem) or Ok(note).
    pub check: Result<String, String>,
}

impl Field {
    fn new(kind: FieldKind, value: &str) -> Field {
        let mut input = TextArea::new(vec![value.to_string()]);
        input.set_cursor_line_style(ratatui::style::Style::default());
        input.move_cursor(ratatui_textarea::CursorMove::End);
        if kind == FieldKind::Token {
            input.set_mask_char('•');
        }
        Field {
            kind,
            input,
            check: Ok(String::new()),
        }
    }
    pub fn value(&self) -> String {
        self.input
            .lines()
            .first()
            .cloned()
            .unwrap_or_default()
            .trim()
            .to_string()
    }
    pub fn set_value(&mut self, v: &str) {
        let masked = self.input.mask_char();
        let mut input = TextArea::new(vec![v.to_string()]);
        input.set_cursor_line_style(ratatui::style::Style::default());
        input.move_cursor(ratatui_textarea::CursorMove::End);
        if let Some(m) = masked {
            input.set_mask_char(m);
        }
        self.input = input;
    }
}

/// What the form starts from (config file or environment).
#[derive(Debug, Clone, Default)]
pub struct Prefill {
    pub address: String,
    pub token: String,
    pub token_source: String,
    pub ca_file: String,
    pub namespace: String,
    pub clusters: Vec<(String, String, String)>,
}

impl Prefill {
    /// VAULT_* env and ~/.vault-token.
    pub fn from_env() -> Prefill {
        let (token, token_source) = crate::vault::token_from_env()
            .map(|(t, s)| (t.expose().to_string(), s))
            .unwrap_or_else(|| (String::new(), "none".into()));
        Prefill {
            address: std::env::var("VAULT_ADDR").unwrap_or_default(),
            token,
            token_source,
            ca_file: std::env::var("VAULT_CACERT").unwrap_or_default(),
            namespace: std::env::var("VAULT_NAMESPACE").unwrap_or_default(),
            clusters: Vec::new(),
        }
    }
    pub fn from_config(c: &Config) -> Prefill {
        Prefill {
            address: c.vault.address.clone(),
            token: c.vault.token.expose().to_string(),
            token_source: c.vault.token_source.clone(),
            ca_file: c
                .vault
                .ca_cert
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            namespace: c.vault.namespace.clone().unwrap_or_default(),
            clusters: c
                .clusters
                .iter()
                .map(|k| {
                    (
                        k.name.clone(),
                        k.kubeconfig
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default(),
                        k.context.clone().unwrap_or_default(),
                    )
                })
                .collect(),
        }
    }
}

pub const VAULT_FIELDS: usize = 4;

pub struct ConnectForm {
    pub fields: Vec<Field>,
    pub focus: usize,
    pub editing: bool,
    pub revealed: bool,
    pub token_source: String,
    /// Contexts per cluster, read from its kubeconfig.
    pub contexts: Vec<Vec<String>>,
    /// Where `s` saves; the file the form came from, else ./wizard.toml.
    pub path: PathBuf,
    /// The loaded file (names, certs, state_dir are kept when saving).
    pub base: ConfigFile,
}

impl ConnectForm {
    pub fn new(p: &Prefill, path: Option<PathBuf>, base: ConfigFile) -> ConnectForm {
        let mut fields = vec![
            Field::new(FieldKind::Address, &p.address),
            Field::new(FieldKind::Token, &p.token),
            Field::new(FieldKind::CaFile, &p.ca_file),
            Field::new(FieldKind::Namespace, &p.namespace),
        ];
        for (n, k, c) in &p.clusters {
            fields.push(Field::new(FieldKind::ClusterName, n));
            fields.push(Field::new(FieldKind::Kubeconfig, k));
            fields.push(Field::new(FieldKind::Context, c));
        }
        let mut f = ConnectForm {
            contexts: vec![Vec::new(); p.clusters.len()],
            fields,
            focus: 0,
            editing: false,
            revealed: false,
            token_source: p.token_source.clone(),
            path: path.unwrap_or_else(|| PathBuf::from("wizard.toml")),
            base,
        };
        f.validate_all();
        f
    }

    pub fn cluster_count(&self) -> usize {
        (self.fields.len() - VAULT_FIELDS) / 3
    }
    /// Cluster index of a field, if it belongs to a cluster.
    pub fn cluster_of(&self, idx: usize) -> Option<usize> {
        idx.checked_sub(VAULT_FIELDS).map(|i| i / 3)
    }
    pub fn cluster_field(&self, c: usize, kind: FieldKind) -> &Field {
        let off = match kind {
            FieldKind::ClusterName => 0,
            FieldKind::Kubeconfig => 1,
            _ => 2,
        };
        &self.fields[VAULT_FIELDS + c * 3 + off]
    }
    pub fn value(&self, kind: FieldKind) -> String {
        self.fields
            .iter()
            .find(|f| f.kind == kind)
            .map(Field::value)
            .unwrap_or_default()
    }

    pub fn add_cluster(&mut self) {
        let n = self.cluster_count() + 1;
        let kubeconfig = std::env::var("KUBECONFIG").unwrap_or_default();
        self.fields
            .push(Field::new(FieldKind::ClusterName, &format!("cluster{n}")));
        self.fields
            .push(Field::new(FieldKind::Kubeconfig, &kubeconfig));
        self.fields.push(Field::new(FieldKind::Context, ""));
        self.contexts.push(Vec::new());
        self.focus = self.fields.len() - 3;
        self.validate_all();
    }

    pub fn remove_cluster(&mut self) -> Option<String> {
        let c = self.cluster_of(self.focus)?;
        let start = VAULT_FIELDS + c * 3;
        let name = self.fields[start].value();
        self.fields.drain(start..start + 3);
        self.contexts.remove(c);
        self.focus = self.focus.min(self.fields.len() - 1);
        self.validate_all();
        Some(name)
    }

    /// Tab in a context field: the next context that starts with what is typed.
    pub fn complete(&mut self) -> bool {
        let Some(c) = self.cluster_of(self.focus) else {
            return false;
        };
        if self.fields[self.focus].kind != FieldKind::Context || self.contexts[c].is_empty() {
            return false;
        }
        let cur = self.fields[self.focus].value();
        let list = &self.contexts[c];
        let next = match list.iter().position(|x| *x == cur) {
            Some(i) => list[(i + 1) % list.len()].clone(),
            None => list
                .iter()
                .find(|x| x.starts_with(&cur))
                .unwrap_or(&list[0])
                .clone(),
        };
        self.fields[self.focus].set_value(&next);
        self.validate_all();
        true
    }

    /// Candidates shown under a context field.
    pub fn candidates(&self, idx: usize) -> Vec<&str> {
        let Some(c) = self.cluster_of(idx) else {
            return Vec::new();
        };
        if self.fields[idx].kind != FieldKind::Context {
            return Vec::new();
        }
        let cur = self.fields[idx].value();
        self.contexts[c]
            .iter()
            .filter(|x| x.starts_with(&cur) && **x != cur)
            .map(String::as_str)
            .collect()
    }

    pub fn validate_all(&mut self) {
        let names: Vec<String> = (0..self.cluster_count())
            .map(|c| self.cluster_field(c, FieldKind::ClusterName).value())
            .collect();
        for i in 0..self.fields.len() {
            let v = self.fields[i].value();
            let cluster = self.cluster_of(i);
            let check = match self.fields[i].kind {
                FieldKind::Address => match url::Url::parse(&v) {
                    _ if v.is_empty() => Err("required (VAULT_ADDR is not set)".into()),
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                        Ok(String::new())
                    }
                    Ok(_) => Err("must be an http(s) URL".into()),
                    Err(e) => Err(format!("not a URL: {e}")),
                },
                FieldKind::Token => {
                    if v.is_empty() {
                        Err("required (no VAULT_TOKEN, no ~/.vault-token)".into())
                    } else {
                        Ok(format!("from {} · never saved", self.token_source))
                    }
                }
                FieldKind::CaFile | FieldKind::Kubeconfig => {
                    if v.is_empty() {
                        Ok(if self.fields[i].kind == FieldKind::Kubeconfig {
                            "KUBECONFIG / ~/.kube/config".into()
                        } else {
                            "system roots".into()
                        })
                    } else if Path::new(&v).is_file() {
                        Ok(String::new())
                    } else {
                        Err("file not found".into())
                    }
                }
                FieldKind::Namespace => Ok(String::new()),
                FieldKind::ClusterName => {
                    let valid = !v.is_empty()
                        && v.len() <= 63
                        && v.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                    if !valid {
                        Err("lowercase letters, digits and '-'".into())
                    } else if names.iter().filter(|n| **n == v).count() > 1 {
                        Err("defined twice".into())
                    } else {
                        Ok(String::new())
                    }
                }
                FieldKind::Context => {
                    let list = cluster.map(|c| &self.contexts[c]);
                    match list {
                        _ if v.is_empty() => Ok("current-context".into()),
                        Some(l) if !l.is_empty() && !l.contains(&v) => {
                            Err(format!("not in the kubeconfig ({})", l.join(", ")))
                        }
                        _ => Ok(String::new()),
                    }
                }
            };
            self.fields[i].check = check;
        }
    }

    pub fn errors(&self) -> Vec<String> {
        self.fields
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                f.check.as_ref().err().map(|e| match self.cluster_of(i) {
                    Some(c) => format!("cluster {} {}: {e}", c + 1, f.kind.label().trim()),
                    None => format!("{}: {e}", f.kind.label()),
                })
            })
            .collect()
    }

    /// The file the form describes. The token is never part of it.
    pub fn to_file(&self) -> ConfigFile {
        let mut f = self.base.clone();
        let opt = |s: String| (!s.is_empty()).then_some(s);
        f.vault.address = opt(self.value(FieldKind::Address));
        f.vault.ca_cert = opt(self.value(FieldKind::CaFile)).map(PathBuf::from);
        f.vault.namespace = opt(self.value(FieldKind::Namespace));
        let old = std::mem::take(&mut f.clusters);
        for c in 0..self.cluster_count() {
            let name = self.cluster_field(c, FieldKind::ClusterName).value();
            let certs_dir = old
                .iter()
                .find(|o| o.name == name)
                .and_then(|o| o.certs_dir.clone());
            f.clusters.push(ClusterSection {
                name,
                kubeconfig: opt(self.cluster_field(c, FieldKind::Kubeconfig).value())
                    .map(PathBuf::from),
                context: opt(self.cluster_field(c, FieldKind::Context).value()),
                certs_dir,
            });
        }
        f
    }

    pub fn toml_text(&self) -> String {
        let body = toml::to_string_pretty(&self.to_file()).unwrap_or_default();
        format!(
            "# Written by istio-vault-wizard. The Vault token is not stored here: it comes from\n# [vault] token_file, VAULT_TOKEN or ~/.vault-token.\n{body}"
        )
    }

    /// A `Config` for the engine: the file's validation, plus the token typed in the form.
    pub fn to_config(&self) -> Result<Config, String> {
        let errs = self.errors();
        if !errs.is_empty() {
            return Err(errs.join("; "));
        }
        let text = self.toml_text();
        let mut c = config::parse(&text, Some(&self.path)).map_err(|e| e.to_string())?;
        c.path = Some(self.path.clone());
        let token = self.value(FieldKind::Token);
        c.vault.token = Secret::new(token);
        c.vault.token_source = self.token_source.clone();
        Ok(c)
    }
}

/// Context names of a kubeconfig file (the Connect screen's completion).
pub fn read_contexts(path: &Path) -> Result<Vec<String>, String> {
    let kc = ::kube::config::Kubeconfig::read_from(path).map_err(|e| e.to_string())?;
    Ok(kc.contexts.into_iter().map(|c| c.name).collect())
}
