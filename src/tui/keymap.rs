//! The one keymap table `{keys, action, help}`: it feeds key dispatch, the footer hints and
//! the generated `?` help. A TOML file (`IVW_KEYMAP`, else
//! `~/.config/istio-vault-wizard/keymap.toml`) overrides the keys of any action; unknown
//! actions or keys become warnings shown in the UI, never a crash.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Where a binding applies. Screen scopes are looked up before `Global`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Global,
    Connect,
    Steps,
    Live,
    Logs,
    Doctor,
    Dialog,
}

impl Scope {
    pub fn title(self) -> &'static str {
        match self {
            Scope::Global => "Everywhere",
            Scope::Connect => "Connect",
            Scope::Steps => "Steps",
            Scope::Live => "Live state",
            Scope::Logs => "Logs",
            Scope::Doctor => "Doctor",
            Scope::Dialog => "Dialogs",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Quit,
    Help,
    Command,
    Filter,
    Back,
    Up,
    Down,
    Top,
    Bottom,
    PageUp,
    PageDown,
    NextPane,
    PrevPane,
    Refresh,
    GoConnect,
    GoSteps,
    GoLive,
    GoLogs,
    GoDoctor,
    // Connect
    Edit,
    AddCluster,
    RemoveCluster,
    CheckConnect,
    SaveConfig,
    RevealToken,
    // Steps
    Preview,
    ApplyWalk,
    ApplyStep,
    ApplyAll,
    Rollback,
    RollbackAll,
    // Logs
    Autoscroll,
    Wrap,
    Timestamps,
    Search,
    NextMatch,
    PrevMatch,
    SaveLogs,
    Container,
    // Doctor
    Rerun,
    // Dialogs
    Yes,
    No,
    Toggle,
    Confirm,
    AbortRun,
}

/// (name in TOML, action, scope, default keys, help, shown in the footer)
type Row = (
    &'static str,
    Action,
    Scope,
    &'static [&'static str],
    &'static str,
    bool,
);

/// The table. Names are unique; the TOML override file uses them.
pub const TABLE: &[Row] = &[
    (
        "help",
        Action::Help,
        Scope::Global,
        &["?"],
        "this help",
        true,
    ),
    (
        "quit",
        Action::Quit,
        Scope::Global,
        &["q", "ctrl-c"],
        "quit",
        true,
    ),
    (
        "command",
        Action::Command,
        Scope::Global,
        &[":"],
        "command mode (:ctx, :cluster NAME, :q)",
        true,
    ),
    (
        "filter",
        Action::Filter,
        Scope::Global,
        &["/"],
        "filter the list",
        false,
    ),
    (
        "back",
        Action::Back,
        Scope::Global,
        &["esc"],
        "back / close / clear filter",
        false,
    ),
    (
        "up",
        Action::Up,
        Scope::Global,
        &["k", "up"],
        "move up",
        false,
    ),
    (
        "down",
        Action::Down,
        Scope::Global,
        &["j", "down"],
        "move down",
        false,
    ),
    (
        "top",
        Action::Top,
        Scope::Global,
        &["g", "home"],
        "first row",
        false,
    ),
    (
        "bottom",
        Action::Bottom,
        Scope::Global,
        &["G", "end"],
        "last row",
        false,
    ),
    (
        "page-up",
        Action::PageUp,
        Scope::Global,
        &["pageup", "ctrl-b"],
        "page up",
        false,
    ),
    (
        "page-down",
        Action::PageDown,
        Scope::Global,
        &["pagedown", "ctrl-f"],
        "page down",
        false,
    ),
    (
        "next-pane",
        Action::NextPane,
        Scope::Global,
        &["tab"],
        "next pane",
        false,
    ),
    (
        "prev-pane",
        Action::PrevPane,
        Scope::Global,
        &["backtab"],
        "previous pane",
        false,
    ),
    (
        "refresh",
        Action::Refresh,
        Scope::Global,
        &["r", "ctrl-r"],
        "refresh now",
        true,
    ),
    (
        "go-connect",
        Action::GoConnect,
        Scope::Global,
        &["1"],
        "Connect screen",
        false,
    ),
    (
        "go-steps",
        Action::GoSteps,
        Scope::Global,
        &["2"],
        "Steps screen",
        false,
    ),
    (
        "go-live",
        Action::GoLive,
        Scope::Global,
        &["3"],
        "Live state screen",
        false,
    ),
    (
        "go-logs",
        Action::GoLogs,
        Scope::Global,
        &["4"],
        "istiod logs screen",
        false,
    ),
    (
        "go-doctor",
        Action::GoDoctor,
        Scope::Global,
        &["5"],
        "Doctor screen",
        false,
    ),
    (
        "edit",
        Action::Edit,
        Scope::Connect,
        &["enter", "i"],
        "edit the field (esc leaves it)",
        true,
    ),
    (
        "add-cluster",
        Action::AddCluster,
        Scope::Connect,
        &["a"],
        "add a cluster",
        true,
    ),
    (
        "remove-cluster",
        Action::RemoveCluster,
        Scope::Connect,
        &["d"],
        "remove the selected cluster",
        true,
    ),
    (
        "check",
        Action::CheckConnect,
        Scope::Connect,
        &["c"],
        "connect and check every target",
        true,
    ),
    (
        "save",
        Action::SaveConfig,
        Scope::Connect,
        &["s"],
        "save wizard.toml",
        true,
    ),
    (
        "reveal-token",
        Action::RevealToken,
        Scope::Connect,
        &["R"],
        "reveal the Vault token (asks first)",
        false,
    ),
    (
        "preview",
        Action::Preview,
        Scope::Steps,
        &["enter"],
        "preview the step",
        true,
    ),
    (
        "apply-walk",
        Action::ApplyWalk,
        Scope::Steps,
        &["a"],
        "apply, confirming each step",
        true,
    ),
    (
        "apply-step",
        Action::ApplyStep,
        Scope::Steps,
        &["y"],
        "apply the selected step (asks first)",
        false,
    ),
    (
        "apply-all",
        Action::ApplyAll,
        Scope::Steps,
        &["A"],
        "apply all remaining (one confirmation)",
        true,
    ),
    (
        "rollback",
        Action::Rollback,
        Scope::Steps,
        &["u"],
        "roll back the selected step",
        true,
    ),
    (
        "rollback-all",
        Action::RollbackAll,
        Scope::Steps,
        &["U"],
        "roll back everything the wizard created",
        true,
    ),
    (
        "autoscroll",
        Action::Autoscroll,
        Scope::Logs,
        &["s"],
        "autoscroll on/off",
        true,
    ),
    (
        "wrap",
        Action::Wrap,
        Scope::Logs,
        &["w"],
        "wrap lines",
        true,
    ),
    (
        "timestamps",
        Action::Timestamps,
        Scope::Logs,
        &["t"],
        "timestamps",
        true,
    ),
    (
        "search",
        Action::Search,
        Scope::Logs,
        &["/"],
        "search",
        true,
    ),
    (
        "next-match",
        Action::NextMatch,
        Scope::Logs,
        &["n"],
        "next match",
        true,
    ),
    (
        "prev-match",
        Action::PrevMatch,
        Scope::Logs,
        &["N"],
        "previous match",
        false,
    ),
    (
        "save-logs",
        Action::SaveLogs,
        Scope::Logs,
        &["S"],
        "save the buffer to a file",
        true,
    ),
    (
        "container",
        Action::Container,
        Scope::Logs,
        &["c"],
        "containers: all / vault-agent-init / discovery",
        true,
    ),
    (
        "rerun",
        Action::Rerun,
        Scope::Doctor,
        &["enter"],
        "run the chain again",
        true,
    ),
    ("yes", Action::Yes, Scope::Dialog, &["y"], "yes", true),
    (
        "no",
        Action::No,
        Scope::Dialog,
        &["n", "esc"],
        "no (the default)",
        true,
    ),
    (
        "toggle",
        Action::Toggle,
        Scope::Dialog,
        &["left", "right", "tab"],
        "switch button",
        false,
    ),
    (
        "confirm",
        Action::Confirm,
        Scope::Dialog,
        &["enter"],
        "press the selected button",
        true,
    ),
    (
        "abort-run",
        Action::AbortRun,
        Scope::Dialog,
        &["x"],
        "stop the run (engine questions)",
        false,
    ),
];

/// A key with modifiers, as written in the table and in TOML (`j`, `G`, `ctrl-r`, `enter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeySpec {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

impl KeySpec {
    pub fn parse(s: &str) -> Option<KeySpec> {
        let mut mods = KeyModifiers::NONE;
        let mut rest = s;
        loop {
            if let Some(r) = rest
                .strip_prefix("ctrl-")
                .or_else(|| rest.strip_prefix("ctrl+"))
            {
                mods |= KeyModifiers::CONTROL;
                rest = r;
            } else if let Some(r) = rest
                .strip_prefix("alt-")
                .or_else(|| rest.strip_prefix("alt+"))
            {
                mods |= KeyModifiers::ALT;
                rest = r;
            } else {
                break;
            }
        }
        let code = match rest {
            "enter" => KeyCode::Enter,
            "esc" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "backtab" => KeyCode::BackTab,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "pageup" => KeyCode::PageUp,
            "pagedown" => KeyCode::PageDown,
            "backspace" => KeyCode::Backspace,
            "delete" => KeyCode::Delete,
            "space" => KeyCode::Char(' '),
            f if f.len() >= 2 && f.starts_with('f') && f[1..].parse::<u8>().is_ok() => {
                KeyCode::F(f[1..].parse().ok()?)
            }
            c if c.chars().count() == 1 => KeyCode::Char(c.chars().next()?),
            _ => return None,
        };
        Some(KeySpec { code, mods })
    }

    /// Normalises a terminal key event (shift is part of the character).
    pub fn from_event(k: &KeyEvent) -> KeySpec {
        let mut mods = k.modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT);
        if !matches!(k.code, KeyCode::Char(_)) {
            mods |= k.modifiers & KeyModifiers::SHIFT;
            if k.code == KeyCode::BackTab {
                mods -= KeyModifiers::SHIFT;
            }
        }
        KeySpec { code: k.code, mods }
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mods.contains(KeyModifiers::CONTROL) {
            f.write_str("ctrl-")?;
        }
        if self.mods.contains(KeyModifiers::ALT) {
            f.write_str("alt-")?;
        }
        match self.code {
            KeyCode::Enter => f.write_str("enter"),
            KeyCode::Esc => f.write_str("esc"),
            KeyCode::Tab => f.write_str("tab"),
            KeyCode::BackTab => f.write_str("backtab"),
            KeyCode::Up => f.write_str("up"),
            KeyCode::Down => f.write_str("down"),
            KeyCode::Left => f.write_str("left"),
            KeyCode::Right => f.write_str("right"),
            KeyCode::Home => f.write_str("home"),
            KeyCode::End => f.write_str("end"),
            KeyCode::PageUp => f.write_str("pageup"),
            KeyCode::PageDown => f.write_str("pagedown"),
            KeyCode::Backspace => f.write_str("backspace"),
            KeyCode::Delete => f.write_str("delete"),
            KeyCode::Char(' ') => f.write_str("space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::F(n) => write!(f, "f{n}"),
            _ => f.write_str("?"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Binding {
    pub name: &'static str,
    pub action: Action,
    pub scope: Scope,
    pub keys: Vec<KeySpec>,
    pub help: &'static str,
    pub footer: bool,
}

#[derive(Debug, Clone)]
pub struct Keymap {
    pub bindings: Vec<Binding>,
}

impl Default for Keymap {
    fn default() -> Self {
        let bindings = TABLE
            .iter()
            .map(|(name, action, scope, keys, help, footer)| Binding {
                name,
                action: *action,
                scope: *scope,
                keys: keys
                    .iter()
                    .map(|k| KeySpec::parse(k).expect("default key parses"))
                    .collect(),
                help,
                footer: *footer,
            })
            .collect();
        Keymap { bindings }
    }
}

#[derive(serde::Deserialize)]
struct KeymapFile {
    #[serde(default)]
    keys: BTreeMap<String, toml::Value>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

impl Keymap {
    /// The action bound to `key` in `scope`, else in `Global`.
    pub fn lookup(&self, scope: Scope, key: &KeyEvent) -> Option<Action> {
        let spec = KeySpec::from_event(key);
        let find = |s: Scope| {
            self.bindings
                .iter()
                .find(|b| b.scope == s && b.keys.contains(&spec))
                .map(|b| b.action)
        };
        if scope == Scope::Dialog {
            return find(Scope::Dialog);
        }
        find(scope).or_else(|| find(Scope::Global))
    }

    /// First key of an action, for hints ("press U").
    pub fn key_of(&self, action: Action) -> String {
        self.bindings
            .iter()
            .find(|b| b.action == action)
            .and_then(|b| b.keys.first())
            .map(|k| k.to_string())
            .unwrap_or_else(|| "?".into())
    }

    /// Footer hints for a scope: `key action` pairs.
    pub fn hints(&self, scope: Scope) -> Vec<(String, &'static str)> {
        let pick = |s: Scope| {
            self.bindings
                .iter()
                .filter(move |b| b.footer && b.scope == s)
                .filter_map(|b| b.keys.first().map(|k| (k.to_string(), short(b.help))))
        };
        let mut out: Vec<_> = pick(scope).collect();
        if scope != Scope::Dialog && scope != Scope::Global {
            out.extend(pick(Scope::Global));
        }
        out
    }

    /// The `?` help, generated from the table: one section per scope.
    pub fn help_lines(&self) -> Vec<(Option<&'static str>, String, &'static str)> {
        let mut out = Vec::new();
        let mut scopes: Vec<Scope> = self.bindings.iter().map(|b| b.scope).collect();
        scopes.dedup();
        for s in scopes {
            out.push((Some(s.title()), String::new(), ""));
            for b in self.bindings.iter().filter(|b| b.scope == s) {
                let keys = b
                    .keys
                    .iter()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join(" ");
                out.push((None, keys, b.help));
            }
        }
        out
    }

    /// Applies an override file's text; returns warnings (unknown actions or keys).
    pub fn apply_overrides(&mut self, text: &str, origin: &str) -> Vec<String> {
        let mut warnings = Vec::new();
        let file: KeymapFile = match toml::from_str(text) {
            Ok(f) => f,
            Err(e) => {
                return vec![format!("keymap {origin}: {}: defaults kept", e.message())];
            }
        };
        for k in file.other.keys() {
            warnings.push(format!(
                "keymap {origin}: unknown table or key {k:?} ignored"
            ));
        }
        for (name, value) in file.keys {
            let Some(b) = self.bindings.iter_mut().find(|b| b.name == name) else {
                warnings.push(format!("keymap {origin}: unknown action {name:?} ignored"));
                continue;
            };
            let list: Vec<String> = match value {
                toml::Value::String(s) => vec![s],
                toml::Value::Array(a) => a
                    .into_iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                _ => {
                    warnings.push(format!(
                        "keymap {origin}: {name}: expected a key or a list of keys"
                    ));
                    continue;
                }
            };
            let mut keys = Vec::new();
            for k in &list {
                match KeySpec::parse(k) {
                    Some(spec) => keys.push(spec),
                    None => warnings.push(format!(
                        "keymap {origin}: {name}: unknown key {k:?} ignored"
                    )),
                }
            }
            if !keys.is_empty() {
                b.keys = keys;
            }
        }
        warnings
    }

    /// Defaults plus the user's file, if any.
    pub fn load_user() -> (Keymap, Vec<String>) {
        let mut km = Keymap::default();
        let path = user_keymap_path();
        let Some(path) = path else {
            return (km, Vec::new());
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let w = km.apply_overrides(&text, &path.display().to_string());
                (km, w)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let explicit = std::env::var_os("IVW_KEYMAP").is_some();
                let w = if explicit {
                    vec![format!(
                        "keymap {}: not found, defaults used",
                        path.display()
                    )]
                } else {
                    Vec::new()
                };
                (km, w)
            }
            Err(e) => (km, vec![format!("keymap {}: {e}", path.display())]),
        }
    }
}

fn short(help: &'static str) -> &'static str {
    // "apply, confirming each step" -> "apply"; keep the first words up to a comma/paren.
    let end = help.find([',', '(']).unwrap_or(help.len());
    help[..end].trim_end()
}

pub fn user_keymap_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("IVW_KEYMAP") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("istio-vault-wizard").join("keymap.toml"))
}

/// The shipped default keymap (documentation and a template for overrides).
pub const DEFAULT_KEYMAP_TOML: &str = include_str!("../../assets/tui/keymap.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_unique_and_keys_parse() {
        let km = Keymap::default();
        let mut names: Vec<_> = km.bindings.iter().map(|b| b.name).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len());
    }

    #[test]
    fn shipped_toml_matches_defaults() {
        let mut km = Keymap::default();
        let w = km.apply_overrides(DEFAULT_KEYMAP_TOML, "asset");
        assert!(w.is_empty(), "{w:?}");
        let d = Keymap::default();
        for (a, b) in km.bindings.iter().zip(&d.bindings) {
            assert_eq!(a.keys, b.keys, "{}", a.name);
        }
        for b in &d.bindings {
            assert!(
                DEFAULT_KEYMAP_TOML.contains(&format!("\n{} =", b.name)),
                "asset lacks {}",
                b.name
            );
        }
    }

    #[test]
    fn overrides_and_warnings() {
        let mut km = Keymap::default();
        let w = km.apply_overrides(
            "[keys]\nquit = [\"ctrl-q\"]\nnope = \"x\"\ndown = [\"j\", \"hyper-x\"]\n",
            "t",
        );
        assert_eq!(w.len(), 2, "{w:?}");
        let ev = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::CONTROL);
        assert_eq!(km.lookup(Scope::Steps, &ev), Some(Action::Quit));
        let ev = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
        assert_eq!(km.lookup(Scope::Steps, &ev), None);
        let bad = km.apply_overrides("this is not toml", "t");
        assert_eq!(bad.len(), 1);
    }

    #[test]
    fn scope_before_global() {
        let km = Keymap::default();
        let s = KeyEvent::new(KeyCode::Char('s'), KeyModifiers::NONE);
        assert_eq!(km.lookup(Scope::Logs, &s), Some(Action::Autoscroll));
        assert_eq!(km.lookup(Scope::Connect, &s), Some(Action::SaveConfig));
        let g = KeyEvent::new(KeyCode::Char('G'), KeyModifiers::SHIFT);
        assert_eq!(km.lookup(Scope::Steps, &g), Some(Action::Bottom));
    }
}
