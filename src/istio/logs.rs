//! Recognisers for the two logs that show whether istiod took its CA from Vault: the
//! `vault-agent-init` container (Vault/OpenBao agent, hclog + consul-template runner
//! lines) and istiod's `discovery` container (pilot/pkg/bootstrap, istio_ca.go and
//! certcontroller.go).
//!
//! Formats handled: istiod `2022-11-18T11:01:21.398123Z\tinfo\t[scope\t]message`, the same
//! without timestamp (as the article quotes it), istiod `--log_as_json`; agent
//! `2022-11-18T11:01:21.398Z [INFO]  auth.handler: ...` (Vault <= 1.12) and
//! `agent.auth.handler: ...` (newer), consul-template `[INFO] (runner) ...`, hclog JSON,
//! and hclog's multi-line values (`error=` followed by `  | ...` lines), which
//! [`entries`] joins back into one entry. Nothing here panics on any input.
//!
//! istiod prints one line per certificate of its own serving chain (its DNS cert, then
//! the intermediate, then the root) with
//! `log.Infof("x509 cert - Issuer: %q, Subject: %q, SN: %x, NotBefore: %q, NotAfter: %q")`:
//! names are Go-quoted `pkix.Name` strings (`CN=..,O=..,L=..`), the serial is a
//! `*big.Int` in lowercase hex without leading zeros, times are RFC 3339.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::IstioError;
use super::values::{DEFAULT_SECRET_DIR, FILES};

/// One certificate line of istiod's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct X509Line {
    pub issuer: String,
    pub subject: String,
    /// Normalised with [`normalise_serial`]: lowercase hex, no leading zeros, no colons.
    pub serial: String,
    /// As printed (RFC 3339).
    pub not_before: String,
    pub not_after: String,
}

/// What one log entry says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum LogEvent {
    // --- Vault agent ---
    /// `authentication successful, sending token to sinks`
    AgentAuthOk,
    /// `error authenticating: error=...` (login refused, or Vault unreachable).
    AgentAuthFailed {
        reason: String,
        code: Option<u16>,
        /// The login path when the error names it, e.g. `auth/kubernetes-cluster1/login`.
        login_path: Option<String>,
    },
    /// Vault answered 403 "permission denied" to a read (the token's policy).
    PermissionDenied {
        path: Option<String>,
    },
    /// `no secret exists at <path>` (wrong mount, path, or KV version).
    NoSecret {
        path: Option<String>,
    },
    /// A template read a key the secret lacks (`map has no entry for key "x"`, `<no value>`).
    MissingKey {
        key: Option<String>,
    },
    /// `(runner) rendered "(dynamic)" => "/vault/secrets/ca-key.pem"`
    Rendered {
        file: String,
    },
    /// `template server received new token`
    TemplateServerNewToken,
    /// The agent gave up (`runtime error encountered`, `template server error`).
    AgentRuntimeError {
        reason: String,
    },
    // --- istiod ---
    /// `Using istiod file format for signing ca files` / `kubernetes.io/tls secret type`.
    CaFileFormat {
        format: String,
    },
    /// `Use plugged-in cert at <dir>/ca-key.pem` (istiod <= 1.20 wording).
    PluggedInCert {
        path: String,
    },
    /// `Use local CA certificate` (createIstioCA found ca-key.pem).
    LocalCaUsed,
    /// `Added cacerts files watcher at <dir>` (AUTO_RELOAD_PLUGIN_CERTS).
    CacertsWatcher {
        dir: String,
    },
    /// `Use root cert from <dir>/root-cert.pem` (newer wording of PluggedInCert).
    RootCertFrom {
        path: String,
    },
    X509Cert(X509Line),
    /// `Istiod certificates are reloaded`
    CertsReloaded,
    /// `Istiod has detected the newly added intermediate CA and updated its key and certs accordingly`
    CaRotated,
    /// istiod made or used its own CA instead of the plugged-in one.
    SelfSignedFallback {
        reason: String,
    },
    /// istiod failed to build its CA from the files.
    IstiodCaFailed {
        reason: String,
    },
    /// A *filesystem* permission error reading a rendered file (not Vault's 403).
    FilePermissionDenied {
        path: Option<String>,
    },
    Other,
}

/// Which container a log event comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Source {
    Agent,
    Istiod,
}

impl LogEvent {
    pub fn source(&self) -> Option<Source> {
        use LogEvent::*;
        match self {
            AgentAuthOk
            | AgentAuthFailed { .. }
            | PermissionDenied { .. }
            | NoSecret { .. }
            | MissingKey { .. }
            | Rendered { .. }
            | TemplateServerNewToken
            | AgentRuntimeError { .. } => Some(Source::Agent),
            CaFileFormat { .. }
            | PluggedInCert { .. }
            | LocalCaUsed
            | CacertsWatcher { .. }
            | RootCertFrom { .. }
            | X509Cert(_)
            | CertsReloaded
            | CaRotated
            | SelfSignedFallback { .. }
            | IstiodCaFailed { .. }
            | FilePermissionDenied { .. } => Some(Source::Istiod),
            Other => None,
        }
    }

    pub fn is_failure(&self) -> bool {
        use LogEvent::*;
        matches!(
            self,
            AgentAuthFailed { .. }
                | PermissionDenied { .. }
                | NoSecret { .. }
                | MissingKey { .. }
                | AgentRuntimeError { .. }
                | SelfSignedFallback { .. }
                | IstiodCaFailed { .. }
                | FilePermissionDenied { .. }
        )
    }

    /// What to look at for a failure event.
    pub fn hint(&self) -> Option<String> {
        use LogEvent::*;
        Some(match self {
            AgentAuthFailed {
                reason,
                code,
                login_path,
            } => {
                let l = reason.to_ascii_lowercase();
                let at = login_path
                    .as_deref()
                    .map(|p| format!(" at {p}"))
                    .unwrap_or_default();
                if *code == Some(403) || l.contains("permission denied") {
                    format!(
                        "Vault refused the kubernetes login{at}: the role's bound_service_account_names/namespaces must match istiod's ServiceAccount, the auth mount's config (kubernetes_host, kubernetes_ca_cert, token_reviewer_jwt) must let Vault call TokenReview, and vault.hashicorp.com/auth-path must name this cluster's mount"
                    )
                } else if code.is_some_and(|c| c == 400) || l.contains("invalid role") {
                    format!(
                        "Vault rejected the login request{at}: the role in vault.hashicorp.com/role does not exist on this mount"
                    )
                } else if l.contains("connection refused")
                    || l.contains("no such host")
                    || l.contains("deadline exceeded")
                    || l.contains("i/o timeout")
                    || l.contains("connection reset")
                {
                    "the agent cannot reach Vault: check the injector's externalVaultAddr and the network path from the pod".into()
                } else {
                    format!("the kubernetes login failed{at}: {reason}")
                }
            }
            PermissionDenied { path } => format!(
                "the login worked but the token's policy does not allow read on {}; with KV v2 the policy path needs /data/ after the mount",
                path.as_deref().unwrap_or("the secret path")
            ),
            NoSecret { path } => format!(
                "nothing at {}: wrong mount or path, or KV version mismatch (KV v2 reads need /data/ after the mount)",
                path.as_deref().unwrap_or("the secret path")
            ),
            MissingKey { key } => format!(
                "the template reads {} which the secret lacks: keys are ca_key, ca_cert, root_cert, cert_chain, and KV v2 templates need .Data.data.<key>",
                key.as_deref()
                    .map(|k| format!("key {k:?}"))
                    .unwrap_or_else(|| "a key".into())
            ),
            AgentRuntimeError { reason } => format!("the agent stopped: {reason}"),
            SelfSignedFallback { .. } => "istiod did not find ca-key.pem in ROOT_CA_DIR and is using its own self-signed CA: check ROOT_CA_DIR=/vault/secrets and that the agent init container ran first (agent-init-first) and rendered the files".into(),
            IstiodCaFailed { reason } => format!(
                "istiod could not build its CA from the files ({reason}): ca-cert.pem must match ca-key.pem, cert-chain.pem must chain to root-cert.pem, and no file may contain \"<no value>\""
            ),
            FilePermissionDenied { path } => format!(
                "istiod cannot read {}: the rendered files must be readable by istiod's uid (vault.hashicorp.com/agent-inject-perms-<file>: \"0644\")",
                path.as_deref().unwrap_or("a rendered file")
            ),
            _ => return None,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Line prefixes
// ---------------------------------------------------------------------------------------

const LEVELS: [&str; 9] = [
    "trace", "debug", "info", "warn", "warning", "error", "fatal", "panic", "critical",
];

fn is_level(s: &str) -> bool {
    LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s))
}

/// A bare (unbracketed) level word, as istiod prints it: lowercase, so that a message
/// like `Error encountered during run` keeps its first word.
fn is_bare_level(s: &str) -> bool {
    LEVELS.contains(&s)
}

fn looks_like_timestamp(tok: &str) -> bool {
    let b = tok.as_bytes();
    b.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && (b[4] == b'-' || b[4] == b'/')
}

fn looks_like_clock(tok: &str) -> bool {
    let b = tok.as_bytes();
    b.len() >= 5 && b[0].is_ascii_digit() && b[1].is_ascii_digit() && b[2] == b':'
}

/// Splits off the first whitespace-delimited token.
fn first_token(s: &str) -> (&str, &str) {
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// Level and message of one entry, prefixes (pod, timestamp, level, scope) removed.
fn split_prefix(entry: &str) -> (Option<String>, Cow<'_, str>) {
    let mut s = entry.trim_start_matches('\u{feff}').trim_start();
    if s.starts_with('{')
        && let Some((level, msg)) = json_entry(s)
    {
        return (level, Cow::Owned(msg));
    }
    // `kubectl logs --prefix`: `[pod/istiod-xyz/discovery] ...`
    if s.starts_with("[pod/")
        && let Some(i) = s.find(']')
    {
        s = s[i + 1..].trim_start();
    }
    let (tok, rest) = first_token(s);
    if looks_like_timestamp(tok) {
        s = rest.trim_start();
        let (tok2, rest2) = first_token(s);
        if tok.contains('/') && looks_like_clock(tok2) {
            s = rest2.trim_start();
        }
    }
    let mut level = None;
    if let Some(inner) = s.strip_prefix('[')
        && let Some(end) = inner.find(']')
        && end <= 10
        && is_level(inner[..end].trim())
    {
        level = Some(inner[..end].trim().to_ascii_lowercase());
        s = inner[end + 1..].trim_start();
    } else {
        let (tok, rest) = first_token(s);
        if is_bare_level(tok) && !rest.is_empty() {
            level = Some(tok.to_ascii_lowercase());
            // istiod: `info\tscope\tmessage`: drop a one-word scope before a tab.
            let after = rest.trim_start_matches([' ', '\t']);
            s = after;
            if rest.starts_with('\t')
                && let Some(tab) = after.find('\t')
            {
                let scope = &after[..tab];
                if !scope.is_empty()
                    && scope
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                {
                    s = after[tab + 1..].trim_start();
                }
            }
        }
    }
    (level, Cow::Borrowed(s))
}

/// istiod `--log_as_json` and hclog JSON.
fn json_entry(s: &str) -> Option<(Option<String>, String)> {
    let first_line = s.lines().next()?;
    let v: serde_json::Value = serde_json::from_str(first_line).ok()?;
    let o = v.as_object()?;
    let text = |k: &str| o.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let level = text("level").or_else(|| text("@level"));
    let mut msg = text("msg").or_else(|| text("@message"))?;
    if let Some(e) = text("error") {
        msg.push_str(&format!(" error={}", serde_json::to_string(&e).ok()?));
    }
    Some((level.map(|l| l.to_ascii_lowercase()), msg))
}

// ---------------------------------------------------------------------------------------
// Small extractors
// ---------------------------------------------------------------------------------------

/// The text after `pat`, up to the end of its line.
fn after<'a>(s: &'a str, pat: &str) -> Option<&'a str> {
    let i = s.find(pat)?;
    let rest = &s[i + pat.len()..];
    Some(rest.lines().next().unwrap_or("").trim())
}

/// The first whitespace-delimited word after `pat`, minus trailing punctuation.
fn word_after(s: &str, pat: &str) -> Option<String> {
    let rest = after(s, pat)?;
    let w = rest
        .split_whitespace()
        .next()?
        .trim_matches(|c| matches!(c, '"' | '\'' | ',' | ';'));
    (!w.is_empty()).then(|| w.to_string())
}

/// A `"quoted"` string right after `pat` (leading spaces skipped); also `\"quoted\"`
/// when the whole message sits inside an outer quoted `error="..."` value.
fn quoted_after(s: &str, pat: &str) -> Option<String> {
    let i = s.find(pat)?;
    let rest = s[i + pat.len()..].trim_start();
    if let Some(inner) = rest.strip_prefix("\\\"") {
        let end = inner.find("\\\"")?;
        return Some(inner[..end].to_string());
    }
    let (v, _) = go_unquote(rest)?;
    Some(v)
}

fn http_code(s: &str) -> Option<u16> {
    let rest = after(s, "Code: ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `URL: GET http://vault:8200/v1/<path>` → (`GET`, `<path>`).
fn api_url(s: &str) -> Option<(String, String)> {
    let rest = after(s, "URL: ")?;
    let (method, rest) = first_token(rest);
    let url = rest.split_whitespace().next()?;
    let path = url.split_once("/v1/").map(|(_, p)| p)?;
    let path = path.split(['?', '"']).next().unwrap_or(path);
    Some((method.to_string(), path.to_string()))
}

/// `vault.read(<path>)` → `<path>`.
fn vault_read_path(s: &str) -> Option<String> {
    let rest = &s[s.find("vault.read(")? + "vault.read(".len()..];
    let end = rest.find(')')?;
    let p = rest[..end].trim();
    (!p.is_empty()).then(|| p.to_string())
}

/// The value of `error=` (quoted or hclog multi-line), else the text after the marker.
fn error_value(s: &str, marker: &str) -> String {
    if let Some(i) = s.find("error=") {
        let rest = &s[i + "error=".len()..];
        if rest.starts_with('"')
            && let Some((v, _)) = go_unquote(rest)
        {
            return squash(&v);
        }
        // hclog multi-line value: `error=\n  | line\n  | line`
        let lines: Vec<&str> = rest
            .lines()
            .map(str::trim)
            .filter_map(|l| l.strip_prefix('|'))
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if !lines.is_empty() {
            return lines.join(" ");
        }
        let first = rest.lines().next().unwrap_or("").trim();
        if !first.is_empty() {
            return first.to_string();
        }
    }
    squash(
        after(s, marker)
            .unwrap_or("")
            .trim_start_matches(':')
            .trim(),
    )
}

/// Collapses whitespace runs (including newlines) to single spaces.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `open /vault/secrets/ca-key.pem: permission denied` → the path.
fn open_path(s: &str) -> Option<String> {
    let rest = &s[s.find("open ")? + "open ".len()..];
    let end = rest.find(':')?;
    let p = rest[..end].trim();
    (p.starts_with('/') || p.starts_with("./") || p.contains('/')).then(|| p.to_string())
}

// ---------------------------------------------------------------------------------------
// Go string quoting (strconv.Quote / Unquote)
// ---------------------------------------------------------------------------------------

/// `strconv.Quote`: what istiod's `%q` prints.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Reads one Go double-quoted string at the start of `s`; returns it and the rest.
/// `\xHH` escapes that do not form UTF-8 become U+FFFD.
pub fn go_unquote(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                return Some((String::from_utf8_lossy(&out).into_owned(), &body[i + 1..]));
            }
            '\\' => {
                let (_, e) = chars.next()?;
                let mut push = |c: char| {
                    let mut b = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                };
                match e {
                    'a' => push('\u{7}'),
                    'b' => push('\u{8}'),
                    'f' => push('\u{c}'),
                    'n' => push('\n'),
                    'r' => push('\r'),
                    't' => push('\t'),
                    'v' => push('\u{b}'),
                    '\\' => push('\\'),
                    '"' => push('"'),
                    '\'' => push('\''),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut hex = String::new();
                        for _ in 0..n {
                            hex.push(chars.next()?.1);
                        }
                        let v = u32::from_str_radix(&hex, 16).ok()?;
                        if e == 'x' {
                            out.push(v as u8);
                        } else {
                            push(char::from_u32(v)?);
                        }
                    }
                    '0'..='7' => {
                        let mut oct = String::from(e);
                        for _ in 0..2 {
                            oct.push(chars.next()?.1);
                        }
                        let v = u32::from_str_radix(&oct, 8).ok()?;
                        out.push(u8::try_from(v).ok()?);
                    }
                    _ => return None,
                }
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// x509 lines
// ---------------------------------------------------------------------------------------

/// Lowercase hex without colons, spaces, `0x` or leading zeros (`"0"` for zero), which is
/// how Go prints a `*big.Int` with `%x`. Accepts `3A:F0:01`, `00dedf...`, `0xABC`.
pub fn normalise_serial(s: &str) -> String {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-' | '\t'))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let trimmed = hex.trim_start_matches('0');
    let body = if trimmed.is_empty() { "0" } else { trimmed };
    if neg && body != "0" {
        format!("-{body}")
    } else {
        body.to_string()
    }
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339).ok()
}

fn same_time(a: &str, b: &str) -> bool {
    match (parse_time(a), parse_time(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.trim() == b.trim(),
    }
}

const X509_MARK: &str = "x509 cert - ";

impl X509Line {
    /// Parses the message of an istiod `x509 cert - Issuer: ...` line (the marker may be
    /// anywhere, so a whole log line works too). Lenient about separators; all five fields
    /// must be present, so a truncated line is an error.
    pub fn parse(line: &str) -> Result<X509Line, IstioError> {
        let err = || IstioError::NotX509Line(line.chars().take(200).collect());
        let start = line.find(X509_MARK).ok_or_else(err)? + X509_MARK.len();
        let mut rest = &line[start..];
        let mut fields: [Option<String>; 5] = Default::default();
        const KEYS: [&str; 5] = ["Issuer", "Subject", "SN", "NotBefore", "NotAfter"];
        loop {
            rest = rest.trim_start_matches([',', ' ', '\t']);
            if rest.is_empty() || rest.starts_with(['\n', '\r']) {
                break;
            }
            let Some(colon) = rest.find(':') else { break };
            let key = rest[..colon].trim();
            let Some(idx) = KEYS.iter().position(|k| *k == key) else {
                break;
            };
            rest = rest[colon + 1..].trim_start_matches([' ', '\t']);
            let value = if rest.starts_with('"') {
                let (v, r) = go_unquote(rest).ok_or_else(err)?;
                rest = r;
                v
            } else {
                let end = rest
                    .find(|c: char| c == ',' || c.is_whitespace())
                    .unwrap_or(rest.len());
                let v = rest[..end].to_string();
                rest = &rest[end..];
                v
            };
            fields[idx] = Some(value);
        }
        let [Some(issuer), Some(subject), Some(sn), Some(nb), Some(na)] = fields else {
            return Err(err());
        };
        let digits = sn.strip_prefix('-').unwrap_or(&sn);
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(err());
        }
        Ok(X509Line {
            issuer,
            subject,
            serial: normalise_serial(&sn),
            not_before: nb,
            not_after: na,
        })
    }

    /// The message as istiod prints it.
    pub fn to_log_message(&self) -> String {
        format!(
            "x509 cert - Issuer: {}, Subject: {}, SN: {}, NotBefore: {}, NotAfter: {}",
            go_quote(&self.issuer),
            go_quote(&self.subject),
            normalise_serial(&self.serial),
            go_quote(&self.not_before),
            go_quote(&self.not_after)
        )
    }

    pub fn not_before_time(&self) -> Option<OffsetDateTime> {
        parse_time(&self.not_before)
    }

    pub fn not_after_time(&self) -> Option<OffsetDateTime> {
        parse_time(&self.not_after)
    }

    /// Subject equals issuer (a root, or a self-signed CA istiod made).
    pub fn is_self_issued(&self) -> bool {
        !self.subject.is_empty() && same_dn(&self.subject, &self.issuer)
    }
}

impl std::str::FromStr for X509Line {
    type Err = IstioError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        X509Line::parse(s)
    }
}

fn dn_attrs(dn: &str) -> Vec<(String, String)> {
    let dn = dn.trim();
    let slash = dn.starts_with('/');
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = dn.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ',' | '+' | ';' if !slash => parts.push(std::mem::take(&mut cur)),
            '/' if slash => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    let mut out: Vec<(String, String)> = parts
        .iter()
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let k = k.trim().to_ascii_uppercase();
            let k = match k.as_str() {
                "S" | "STATEORPROVINCENAME" | "2.5.4.8" => "ST".to_string(),
                "COMMONNAME" | "2.5.4.3" => "CN".to_string(),
                "ORGANIZATIONNAME" | "2.5.4.10" => "O".to_string(),
                "ORGANIZATIONALUNITNAME" | "2.5.4.11" => "OU".to_string(),
                "LOCALITYNAME" | "2.5.4.7" => "L".to_string(),
                "COUNTRYNAME" | "2.5.4.6" => "C".to_string(),
                "E" | "EMAIL" => "EMAILADDRESS".to_string(),
                _ => k,
            };
            Some((k, v.trim().to_string()))
        })
        .collect();
    out.sort();
    out
}

/// Whether two distinguished names hold the same attributes, whatever their order and
/// separators: Go prints `CN=Root CA,O=Istio`, x509-parser `O=Istio, CN=Root CA`,
/// openssl `-nameopt compat` `/O=Istio/CN=Root CA`.
pub fn same_dn(a: &str, b: &str) -> bool {
    dn_attrs(a) == dn_attrs(b)
}

// ---------------------------------------------------------------------------------------
// Recognition
// ---------------------------------------------------------------------------------------

/// What one log line (or one joined entry from [`entries`]) says.
pub fn recognise(line: &str) -> LogEvent {
    let (_, msg) = split_prefix(line);
    recognise_message(&msg)
}

fn recognise_message(m: &str) -> LogEvent {
    use LogEvent::*;
    if m.contains(X509_MARK) {
        return X509Line::parse(m).map(X509Cert).unwrap_or(Other);
    }
    // Errors quoted onto one line (`error="...\n\nURL: ...\nCode: 403..."`): unescape the
    // newlines so the URL / Code / Errors parts read like hclog's multi-line form.
    let unescaped;
    let m = if m.contains("\\n") {
        unescaped = m.replace("\\n", "\n").replace("\\t", "\t");
        unescaped.as_str()
    } else {
        m
    };
    let lower = m.to_ascii_lowercase();
    let has = |p: &str| m.contains(p);
    // --- Vault agent ---
    if lower.contains("authentication successful") {
        return AgentAuthOk;
    }
    if has("error authenticating") {
        let login_path = api_url(m)
            .map(|(_, p)| p)
            .filter(|p| p.starts_with("auth/"));
        return AgentAuthFailed {
            reason: error_value(m, "error authenticating"),
            code: http_code(m),
            login_path,
        };
    }
    if let Some(file) = has("rendered ").then(|| quoted_after(m, "=>")).flatten() {
        return Rendered { file };
    }
    if has("template server received new token") {
        return TemplateServerNewToken;
    }
    if has("map has no entry for key") {
        return MissingKey {
            key: quoted_after(m, "map has no entry for key"),
        };
    }
    if lower.contains("missing key") || has("<no value>") {
        return MissingKey {
            key: word_after(m, "missing key").filter(|k| k != "<no"),
        };
    }
    if has("no secret exists at") {
        return NoSecret {
            path: word_after(m, "no secret exists at").or_else(|| vault_read_path(m)),
        };
    }
    // --- istiod ---
    if let Some(path) = word_after(m, "Use plugged-in cert at ") {
        return PluggedInCert { path };
    }
    if has("No plugged-in cert at ")
        || has("Use self-signed certificate as the CA certificate")
        || has("Use local self-signed CA certificate")
        || has("Use istio-generated cacerts at")
        || has("Use roots from istio-ca-secret")
        || (has("Use roots from ") && has(" and watch"))
        || (has("Failed to get secret (error:") && has("will create one"))
        || has("Load signing key and cert from existing secret")
    {
        return SelfSignedFallback {
            reason: squash(m.lines().next().unwrap_or(m)),
        };
    }
    if has("Use local CA certificate") {
        return LocalCaUsed;
    }
    if let Some(dir) = word_after(m, "Added cacerts files watcher at ") {
        return CacertsWatcher { dir };
    }
    if let Some(path) = word_after(m, "Use root cert from ") {
        return RootCertFrom { path };
    }
    if has("Istiod certificates are reloaded") {
        return CertsReloaded;
    }
    if has("Istiod has detected the newly added intermediate CA") {
        return CaRotated;
    }
    if let Some(f) = after(m, "Using ").filter(|_| has(" for signing ca files")) {
        let format = f
            .split(" for signing ca files")
            .next()
            .unwrap_or(f)
            .trim()
            .to_string();
        return CaFileFormat { format };
    }
    // A filesystem permission error (istiod opening a rendered file) before Vault's 403.
    if lower.contains("permission denied")
        && !has("Code: 403")
        && !has("vault.read(")
        && let Some(path) = open_path(m)
    {
        return FilePermissionDenied { path: Some(path) };
    }
    if lower.contains("failed to create an istiod ca")
        || lower.contains("failed to create istiod ca")
        || lower.contains("failed to create a self-signed istiod ca")
        || has("Failed to update new Plug-in CA certs")
        || has("Failed generating plugged-in istiod key cert")
        || has("failed reading root-cert.pem")
        || (lower.contains("failed reading") && has("root-cert.pem"))
    {
        return IstiodCaFailed {
            reason: squash(m.lines().next().unwrap_or(m)),
        };
    }
    // --- Vault agent, generic ---
    if lower.contains("permission denied") {
        let path = vault_read_path(m).or_else(|| api_url(m).map(|(_, p)| p));
        return PermissionDenied { path };
    }
    if has("runtime error encountered")
        || has("Error encountered during run")
        || has("template server error")
    {
        let reason = error_value(m, "error=");
        return AgentRuntimeError {
            reason: if reason.is_empty() {
                squash(m.lines().next().unwrap_or(m))
            } else {
                reason
            },
        };
    }
    Other
}

// ---------------------------------------------------------------------------------------
// Entries and summary
// ---------------------------------------------------------------------------------------

fn starts_entry(line: &str) -> bool {
    let s = line.trim_start();
    if s.is_empty() {
        return false;
    }
    let (tok, rest) = first_token(s);
    looks_like_timestamp(tok)
        || s.starts_with('{')
        || s.starts_with("==>")
        || s.starts_with("[pod/")
        || s.strip_prefix('[')
            .and_then(|i| i.find(']').map(|e| &i[..e]))
            .is_some_and(|l| is_level(l.trim()))
        || (is_bare_level(tok) && !rest.is_empty())
}

fn continues_entry(line: &str) -> bool {
    let s = line.trim();
    s.is_empty()
        || s.starts_with('|')
        || s.starts_with('*')
        || s.starts_with("URL:")
        || s.starts_with("Code:")
        || s.starts_with("Errors:")
        || s.starts_with("error=")
        || s.starts_with("backoff=")
        || s.starts_with("(retry attempt")
        || s.starts_with("template: ")
}

/// Joins the continuation lines of multi-line entries (hclog `error=` blocks, Vault API
/// errors spread over lines) onto their first line. Returns (1-based line number, entry).
pub fn entries<I>(lines: I) -> Vec<(usize, String)>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let mut out: Vec<(usize, String)> = Vec::new();
    for (i, l) in lines.into_iter().enumerate() {
        let l = l.as_ref().trim_end_matches(['\r', '\n']);
        if !starts_entry(l)
            && continues_entry(l)
            && let Some(last) = out.last_mut()
        {
            if !l.trim().is_empty() {
                last.1.push('\n');
                last.1.push_str(l);
            }
            continue;
        }
        out.push((i + 1, l.to_string()));
    }
    out
}

/// Overall state of a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum LogStatus {
    /// Everything the log's containers should do is done and nothing failed after it.
    Success,
    Failure {
        /// 1-based line number of the first failure that was not recovered from.
        line_no: usize,
        line: String,
        event: LogEvent,
        hint: String,
    },
    InProgress {
        waiting_for: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogSummary {
    pub status: LogStatus,
    pub agent_authenticated: bool,
    /// Rendered files, as the agent names them, in order.
    pub rendered: Vec<String>,
    /// Where istiod took its CA (`Use plugged-in cert at` / `Use root cert from` path).
    pub ca_path: Option<String>,
    pub self_signed: Option<String>,
    pub certs_reloaded: bool,
    /// The last batch of consecutive `x509 cert` lines (istiod's current serving chain).
    pub loaded_certs: Vec<X509Line>,
    /// Failures a later success superseded (retries that worked): (line number, line).
    pub recovered: Vec<(usize, String)>,
    /// Entries recognised as something other than [`LogEvent::Other`].
    pub recognised: usize,
}

fn dir_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[..i],
        None => "",
    }
}

fn norm_dir(d: &str) -> &str {
    let d = d.trim().trim_end_matches('/');
    d.strip_prefix("./").unwrap_or(d)
}

/// [`summarise_for`] with the wizard's directory, `/vault/secrets`.
pub fn summarise<I>(lines: I) -> LogSummary
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    summarise_for(lines, DEFAULT_SECRET_DIR)
}

/// Reads a vault-agent-init log, an istiod discovery log, or both concatenated, and says
/// whether istiod is running on the CA the agent rendered into `root_ca_dir`.
pub fn summarise_for<I>(lines: I, root_ca_dir: &str) -> LogSummary
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    struct Failure {
        idx: usize,
        line_no: usize,
        line: String,
        event: LogEvent,
    }
    let mut s = LogSummary {
        status: LogStatus::InProgress {
            waiting_for: vec![],
        },
        agent_authenticated: false,
        rendered: vec![],
        ca_path: None,
        self_signed: None,
        certs_reloaded: false,
        loaded_certs: vec![],
        recovered: vec![],
        recognised: 0,
    };
    let mut failures: Vec<Failure> = Vec::new();
    let (mut agent_seen, mut istiod_seen) = (false, false);
    // Entry index of the last event that moved each component forward.
    let (mut agent_progress, mut istiod_progress) = (None::<usize>, None::<usize>);
    let mut in_batch = false;
    for (idx, (line_no, entry)) in entries(lines).into_iter().enumerate() {
        let ev = recognise(&entry);
        if ev == LogEvent::Other {
            in_batch = false;
            continue;
        }
        s.recognised += 1;
        match ev.source() {
            Some(Source::Agent) => agent_seen = true,
            Some(Source::Istiod) => istiod_seen = true,
            None => {}
        }
        match &ev {
            LogEvent::AgentAuthOk => {
                s.agent_authenticated = true;
                agent_progress = Some(idx);
            }
            LogEvent::Rendered { file } => {
                if !s.rendered.contains(file) {
                    s.rendered.push(file.clone());
                }
                agent_progress = Some(idx);
            }
            LogEvent::PluggedInCert { path } | LogEvent::RootCertFrom { path } => {
                s.ca_path = Some(path.clone());
                s.self_signed = None;
                istiod_progress = Some(idx);
            }
            LogEvent::LocalCaUsed => {
                s.self_signed = None;
            }
            LogEvent::SelfSignedFallback { reason } => {
                s.self_signed = Some(reason.clone());
                s.ca_path = None;
            }
            LogEvent::CertsReloaded | LogEvent::CaRotated => {
                s.certs_reloaded = true;
                istiod_progress = Some(idx);
            }
            LogEvent::X509Cert(x) => {
                if !in_batch {
                    s.loaded_certs.clear();
                }
                s.loaded_certs.push(x.clone());
            }
            _ => {}
        }
        in_batch = matches!(ev, LogEvent::X509Cert(_));
        if ev.is_failure() {
            failures.push(Failure {
                idx,
                line_no,
                line: entry.lines().next().unwrap_or("").trim().to_string(),
                event: ev,
            });
        }
    }

    let agent_done = s.agent_authenticated
        && FILES
            .iter()
            .all(|(f, _)| s.rendered.iter().any(|r| r.rsplit('/').next() == Some(*f)));
    let dir_ok = s
        .ca_path
        .as_deref()
        .map(|p| norm_dir(dir_of(p)) == norm_dir(root_ca_dir));
    let istiod_done = s.ca_path.is_some() && s.self_signed.is_none() && s.certs_reloaded;

    let mut open: Vec<Failure> = Vec::new();
    for f in failures {
        let (done, progress) = match f.event.source() {
            Some(Source::Agent) => (agent_done, agent_progress),
            _ => (istiod_done, istiod_progress),
        };
        let superseded = match &f.event {
            // Only a later plugged-in CA clears a self-signed fallback (state tracks it).
            LogEvent::SelfSignedFallback { .. } => s.self_signed.is_none() && istiod_done,
            _ => done && progress.is_some_and(|p| p > f.idx),
        };
        if superseded {
            s.recovered.push((f.line_no, f.line));
        } else {
            open.push(f);
        }
    }

    // The first specific failure; the agent's generic "Error encountered during run" only
    // when nothing else explains it (it can come first when stdout precedes stderr).
    let generic = |e: &LogEvent| matches!(e, LogEvent::AgentRuntimeError { reason } if reason.starts_with("Error encountered during run"));
    let first = match open.iter().position(|f| !generic(&f.event)) {
        Some(i) => Some(open.swap_remove(i)),
        None => open.into_iter().next(),
    };
    s.status = if let Some(f) = first {
        LogStatus::Failure {
            hint: f.event.hint().unwrap_or_default(),
            line_no: f.line_no,
            line: f.line,
            event: f.event,
        }
    } else if dir_ok == Some(false) {
        let path = s.ca_path.clone().unwrap_or_default();
        LogStatus::Failure {
            line_no: 0,
            line: format!("istiod CA from {path}"),
            event: LogEvent::PluggedInCert { path: path.clone() },
            hint: format!(
                "istiod loaded a plugged-in CA from {:?}, not from {root_ca_dir:?}: ROOT_CA_DIR is not set on the discovery container, so the cacerts Secret is used instead of Vault",
                dir_of(&path)
            ),
        }
    } else {
        let mut waiting = Vec::new();
        if agent_seen && !agent_done {
            if !s.agent_authenticated {
                waiting.push("vault agent: authentication".to_string());
            }
            for (f, _) in FILES {
                if !s.rendered.iter().any(|r| r.rsplit('/').next() == Some(f)) {
                    waiting.push(format!("vault agent: render {f}"));
                }
            }
        }
        if istiod_seen && !istiod_done {
            if s.ca_path.is_none() {
                waiting.push("istiod: Use plugged-in cert / Use root cert from".into());
            }
            if !s.certs_reloaded {
                waiting.push("istiod: Istiod certificates are reloaded".into());
            }
        }
        if !agent_seen && !istiod_seen {
            waiting.push("no vault agent or istiod lines yet".into());
        }
        if waiting.is_empty() {
            LogStatus::Success
        } else {
            LogStatus::InProgress {
                waiting_for: waiting,
            }
        }
    };
    s
}

// ---------------------------------------------------------------------------------------
// Comparison with what Vault holds
// ---------------------------------------------------------------------------------------

/// A certificate Vault holds for the cluster (intermediate or root), as the certs module
/// describes it: serial in any hex form, RFC 3339 validity, subject in any DN form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpectedCert {
    pub serial_hex: String,
    pub subject: String,
    pub not_before: String,
    pub not_after: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CertMismatch {
    /// No loaded certificate has this serial.
    Missing {
        serial: String,
        subject: String,
        /// A loaded certificate with the same subject but another serial (stale copy,
        /// other cluster's intermediate, or a regenerated CA).
        loaded_with_same_subject: Option<String>,
    },
    /// Same serial, different validity (should not happen for the same certificate).
    Validity {
        serial: String,
        expected: (String, String),
        loaded: (String, String),
    },
    /// Same serial, different subject.
    Subject {
        serial: String,
        expected: String,
        loaded: String,
    },
}

impl fmt::Display for CertMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertMismatch::Missing {
                serial,
                subject,
                loaded_with_same_subject,
            } => {
                write!(f, "istiod has not loaded {subject:?} (serial {serial})")?;
                if let Some(other) = loaded_with_same_subject {
                    write!(
                        f,
                        "; it loaded a certificate with that subject but serial {other}"
                    )?;
                }
                Ok(())
            }
            CertMismatch::Validity {
                serial,
                expected,
                loaded,
            } => write!(
                f,
                "serial {serial}: Vault's certificate is valid {} .. {}, istiod's {} .. {}",
                expected.0, expected.1, loaded.0, loaded.1
            ),
            CertMismatch::Subject {
                serial,
                expected,
                loaded,
            } => write!(
                f,
                "serial {serial}: Vault's subject is {expected:?}, istiod's {loaded:?}"
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum CaVerdict {
    /// Every expected certificate is in istiod's chain with the same serial and validity.
    UsingVaultCa { matched: Vec<String> },
    NotUsingVaultCa {
        mismatches: Vec<CertMismatch>,
        /// istiod's chain ends in a self-issued CA that is not one of Vault's.
        self_signed_hint: bool,
    },
    /// Nothing to compare (no x509 lines yet, or no expected certificates).
    Inconclusive { reason: String },
}

impl CaVerdict {
    pub fn is_vault_ca(&self) -> bool {
        matches!(self, CaVerdict::UsingVaultCa { .. })
    }
}

impl fmt::Display for CaVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaVerdict::UsingVaultCa { matched } => write!(
                f,
                "istiod is using the Vault CA ({} certificates matched: {})",
                matched.len(),
                matched.join(", ")
            ),
            CaVerdict::NotUsingVaultCa {
                mismatches,
                self_signed_hint,
            } => {
                write!(f, "istiod is NOT using the Vault CA:")?;
                for m in mismatches {
                    write!(f, "\n  - {m}")?;
                }
                if *self_signed_hint {
                    write!(
                        f,
                        "\n  istiod's chain ends in a self-signed CA that Vault does not hold: it fell back to its own CA"
                    )?;
                }
                Ok(())
            }
            CaVerdict::Inconclusive { reason } => write!(f, "inconclusive: {reason}"),
        }
    }
}

/// Says "istiod is using the Vault CA" only when every expected certificate (the
/// intermediate and the root) appears among the loaded ones with the same serial and the
/// same validity; otherwise lists what differs.
pub fn compare_with_vault(loaded: &[X509Line], expected: &[ExpectedCert]) -> CaVerdict {
    if expected.is_empty() {
        return CaVerdict::Inconclusive {
            reason: "no certificates from Vault to compare with".into(),
        };
    }
    if loaded.is_empty() {
        return CaVerdict::Inconclusive {
            reason: "istiod has printed no \"x509 cert\" lines yet".into(),
        };
    }
    let mut matched = Vec::new();
    let mut mismatches = Vec::new();
    for e in expected {
        let serial = normalise_serial(&e.serial_hex);
        match loaded
            .iter()
            .find(|l| normalise_serial(&l.serial) == serial)
        {
            None => mismatches.push(CertMismatch::Missing {
                serial: serial.clone(),
                subject: e.subject.clone(),
                loaded_with_same_subject: loaded
                    .iter()
                    .find(|l| !e.subject.is_empty() && same_dn(&l.subject, &e.subject))
                    .map(|l| l.serial.clone()),
            }),
            Some(l) => {
                let mut ok = true;
                if !same_time(&l.not_before, &e.not_before)
                    || !same_time(&l.not_after, &e.not_after)
                {
                    ok = false;
                    mismatches.push(CertMismatch::Validity {
                        serial: serial.clone(),
                        expected: (e.not_before.clone(), e.not_after.clone()),
                        loaded: (l.not_before.clone(), l.not_after.clone()),
                    });
                }
                if !e.subject.is_empty() && !same_dn(&l.subject, &e.subject) {
                    ok = false;
                    mismatches.push(CertMismatch::Subject {
                        serial: serial.clone(),
                        expected: e.subject.clone(),
                        loaded: l.subject.clone(),
                    });
                }
                if ok {
                    matched.push(format!("{serial} {:?}", l.subject));
                }
            }
        }
    }
    if mismatches.is_empty() {
        CaVerdict::UsingVaultCa { matched }
    } else {
        let self_signed_hint = loaded.iter().any(|l| {
            l.is_self_issued()
                && !expected
                    .iter()
                    .any(|e| normalise_serial(&e.serial_hex) == normalise_serial(&l.serial))
        });
        CaVerdict::NotUsingVaultCa {
            mismatches,
            self_signed_hint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARTICLE_X509: &str = "  info\tx509 cert - Issuer: \"CN=Root CA,O=Istio\", Subject: \"CN=Intermediate CA,O=Istio,L=istiod-cluster1\", SN: dedf298a147681d6, NotBefore: \"2022-11-17T22:01:54Z\", NotAfter: \"2024-11-16T22:01:54Z\"";

    #[test]
    fn prefixes_are_stripped() {
        let cases = [
            (
                "2022-11-18T11:01:21.398123Z\tinfo\tUse plugged-in cert at /vault/secrets/ca-key.pem",
                "info",
                "Use plugged-in cert at /vault/secrets/ca-key.pem",
            ),
            (
                "  info\tUse plugged-in cert at /x",
                "info",
                "Use plugged-in cert at /x",
            ),
            (
                "2022-11-18T11:01:21.402Z\tinfo\tspiffe\tAdded 1 certs to trust domain",
                "info",
                "Added 1 certs to trust domain",
            ),
            (
                "  2022-11-18T11:01:21.402Z [INFO]  auth.handler: authentication successful",
                "info",
                "auth.handler: authentication successful",
            ),
            (
                "2021/04/13 17:09:35.001560 [WARN] (view) vault.read(x): no secret exists at x",
                "warn",
                "(view) vault.read(x): no secret exists at x",
            ),
            (
                "[pod/istiod-1/discovery] 2022-10-05T19:50:32.288667Z    info    Use plugged-in cert at etc/cacerts/tls.key",
                "info",
                "Use plugged-in cert at etc/cacerts/tls.key",
            ),
        ];
        for (line, level, msg) in cases {
            let (l, m) = split_prefix(line);
            assert_eq!(l.as_deref(), Some(level), "{line}");
            assert_eq!(m, msg, "{line}");
        }
    }

    #[test]
    fn json_lines() {
        let l = r#"{"level":"info","time":"2024-01-01T00:00:00Z","msg":"Use root cert from /vault/secrets/root-cert.pem"}"#;
        assert_eq!(
            recognise(l),
            LogEvent::RootCertFrom {
                path: "/vault/secrets/root-cert.pem".into()
            }
        );
        let l = r#"{"@level":"error","@message":"error authenticating","@module":"agent.auth.handler","error":"Error making API request.\n\nURL: PUT http://v:8200/v1/auth/kubernetes-cluster1/login\nCode: 403. Errors:\n\n* permission denied","backoff":"1s"}"#;
        match recognise(l) {
            LogEvent::AgentAuthFailed {
                code, login_path, ..
            } => {
                assert_eq!(code, Some(403));
                assert_eq!(
                    login_path.as_deref(),
                    Some("auth/kubernetes-cluster1/login")
                );
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn article_x509_line() {
        let x = X509Line::parse(ARTICLE_X509).expect("parse");
        assert_eq!(x.issuer, "CN=Root CA,O=Istio");
        assert_eq!(x.subject, "CN=Intermediate CA,O=Istio,L=istiod-cluster1");
        assert_eq!(x.serial, "dedf298a147681d6");
        assert_eq!(x.not_after, "2024-11-16T22:01:54Z");
        assert!(!x.is_self_issued());
        assert_eq!(X509Line::parse(&x.to_log_message()), Ok(x));
    }

    #[test]
    fn truncated_x509_line_is_not_a_cert() {
        let t = &ARTICLE_X509[..ARTICLE_X509.find("NotAfter").expect("has")];
        assert!(X509Line::parse(t).is_err());
        assert_eq!(recognise(t), LogEvent::Other);
        assert_eq!(recognise("x509 cert - Issuer: \"CN=a"), LogEvent::Other);
    }

    #[test]
    fn go_quoting_roundtrips() {
        for s in ["", "CN=a\\b,O=\"x\"", "tab\tnl\n\u{1}\u{7f}é日本", "\u{85}"] {
            let q = go_quote(s);
            assert_eq!(go_unquote(&q), Some((s.to_string(), "")), "{q}");
        }
        assert_eq!(
            go_unquote(r#""\x41\u00e9\101" rest"#),
            Some(("AéA".to_string(), " rest"))
        );
        assert_eq!(go_unquote("\"unterminated"), None);
        assert_eq!(go_unquote("\"bad \\q\""), None);
    }

    #[test]
    fn serials_normalise() {
        assert_eq!(normalise_serial("00:DE:DF:29"), "dedf29");
        assert_eq!(normalise_serial("0xABC"), "abc");
        assert_eq!(normalise_serial("000"), "0");
        assert_eq!(
            normalise_serial("39f67569f10d36a1fc91e9d82156b07d"),
            "39f67569f10d36a1fc91e9d82156b07d"
        );
    }

    #[test]
    fn dns_compare_across_formats() {
        assert!(same_dn("CN=Root CA,O=Istio", "O=Istio, CN=Root CA"));
        assert!(same_dn("CN=Root CA,O=Istio", "/O=Istio/CN=Root CA"));
        assert!(same_dn("", ""));
        assert!(!same_dn("CN=Root CA,O=Istio", "CN=Root CA"));
        assert!(same_dn("commonName=a\\,b", "CN=a\\,b"));
    }

    #[test]
    fn entries_join_hclog_multiline_values() {
        let log = "2023-05-25T05:49:05.463Z [ERROR] agent.auth.handler: error authenticating:\n  error=\n  | Error making API request.\n  | \n  | URL: PUT http://vault:8200/v1/auth/kubernetes-cluster1/login\n  | Code: 403. Errors:\n  | \n  | * permission denied\n   backoff=1s\n2023-05-25T05:49:06.463Z [INFO]  agent.auth.handler: authenticating";
        let e = entries(log.lines());
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].0, 10);
        match recognise(&e[0].1) {
            LogEvent::AgentAuthFailed {
                reason,
                code,
                login_path,
            } => {
                assert_eq!(code, Some(403));
                assert_eq!(
                    login_path.as_deref(),
                    Some("auth/kubernetes-cluster1/login")
                );
                assert!(reason.contains("permission denied"), "{reason}");
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn filesystem_permission_denied_is_not_vault() {
        let l = "2024-01-01T00:00:00.000000Z\terror\tfailed to create discovery service: failed to create an istiod CA: failed to create CA KeyCertBundle (open /vault/secrets/ca-key.pem: permission denied)";
        assert_eq!(
            recognise(l),
            LogEvent::FilePermissionDenied {
                path: Some("/vault/secrets/ca-key.pem".into())
            }
        );
    }

    #[test]
    fn verdict_needs_every_expected_cert() {
        let inter = X509Line::parse(ARTICLE_X509).expect("parse");
        let root = X509Line {
            issuer: "CN=Root CA,O=Istio".into(),
            subject: "CN=Root CA,O=Istio".into(),
            serial: "f5bcd7e89bdb6248".into(),
            not_before: "2022-11-17T22:01:52Z".into(),
            not_after: "2032-11-14T22:01:52Z".into(),
        };
        let e_inter = ExpectedCert {
            serial_hex: "00:DE:DF:29:8A:14:76:81:D6".into(),
            subject: "CN=Intermediate CA, O=Istio, L=istiod-cluster1".into(),
            not_before: "2022-11-17T22:01:54Z".into(),
            not_after: "2024-11-16T22:01:54+00:00".into(),
        };
        let e_root = ExpectedCert {
            serial_hex: "f5:bc:d7:e8:9b:db:62:48".into(),
            subject: "O=Istio, CN=Root CA".into(),
            not_before: "2022-11-17T22:01:52Z".into(),
            not_after: "2032-11-14T22:01:52Z".into(),
        };
        let v = compare_with_vault(
            &[inter.clone(), root.clone()],
            &[e_inter.clone(), e_root.clone()],
        );
        assert!(v.is_vault_ca(), "{v}");
        let v = compare_with_vault(std::slice::from_ref(&root), &[e_inter, e_root]);
        assert!(!v.is_vault_ca());
        assert!(
            compare_with_vault(&[], &[])
                .to_string()
                .contains("inconclusive")
        );
    }
}
