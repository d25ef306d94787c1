//! Drawing: every screen and dialog from `&Model`. No state changes here.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};

use super::connect::FieldKind;
use super::keymap::Scope;
use super::logs::{CONTAINERS, match_ranges};
use super::model::{Dialog, LivePane, Mode, Model, Probe, RowState, Screen, StepRow, link_label};
use crate::doctor::LinkStatus;

/// Colours, or none at all under NO_COLOR (modifiers stay).
struct Theme {
    color: bool,
}

impl Theme {
    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }
    fn ok(&self) -> Style {
        self.fg(Color::Green)
    }
    fn warn(&self) -> Style {
        self.fg(Color::Yellow)
    }
    fn bad(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }
    fn dim(&self) -> Style {
        if self.color {
            Style::default().fg(Color::DarkGray)
        } else {
            Style::default().add_modifier(Modifier::DIM)
        }
    }
    fn accent(&self) -> Style {
        self.fg(Color::Cyan)
    }
    fn sel(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
    fn title(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }
    fn hl(&self) -> Style {
        if self.color {
            Style::default().fg(Color::Black).bg(Color::Yellow)
        } else {
            Style::default().add_modifier(Modifier::REVERSED | Modifier::UNDERLINED)
        }
    }
    fn state(&self, s: &RowState) -> Style {
        match s {
            RowState::Absent => self.warn(),
            RowState::Present | RowState::Done => self.ok(),
            RowState::Conflict(_) => self.fg(Color::Magenta).add_modifier(Modifier::BOLD),
            RowState::Blocked(_) | RowState::Skipped => self.dim(),
            RowState::Running => self.accent().add_modifier(Modifier::BOLD),
            RowState::Failed { .. } => self.bad(),
            RowState::RolledBack => self.fg(Color::Blue),
        }
    }
    fn days(&self, d: i64) -> Style {
        if d < 0 {
            self.bad()
        } else if d < 30 {
            self.warn().add_modifier(Modifier::BOLD)
        } else {
            self.ok()
        }
    }
}

fn theme(m: &Model) -> Theme {
    Theme { color: m.color }
}

fn block<'a>(t: &Theme, title: impl Into<String>, focused: bool) -> Block<'a> {
    let b = Block::default()
        .borders(Borders::ALL)
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        })
        .title(Span::styled(format!(" {} ", title.into()), t.title()));
    if focused {
        b.border_style(t.accent())
    } else {
        b
    }
}

/// Where things are on screen (also used to map mouse clicks).
pub struct Areas {
    pub tabs: Rect,
    pub body: Rect,
    /// The main list of the screen.
    pub list: Rect,
    pub detail: Rect,
    /// Live panes beside the steps list on wide screens.
    pub side: Option<Rect>,
    pub status: Rect,
    pub footer: Rect,
}

pub fn areas(m: &Model, full: Rect) -> Areas {
    let v = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .split(full);
    let body = v[1];
    let (list, detail, side) = match m.screen {
        Screen::Steps => {
            if body.width >= 150 {
                let h = Layout::horizontal([
                    Constraint::Percentage(40),
                    Constraint::Percentage(30),
                    Constraint::Percentage(30),
                ])
                .split(body);
                (h[0], h[1], Some(h[2]))
            } else if body.width >= 110 {
                let h =
                    Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
                        .split(body);
                (h[0], h[1], None)
            } else {
                let h = Layout::vertical([Constraint::Percentage(58), Constraint::Percentage(42)])
                    .split(body);
                (h[0], h[1], None)
            }
        }
        Screen::Doctor | Screen::Connect => {
            if body.width >= 110 {
                let h =
                    Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                        .split(body);
                (h[0], h[1], None)
            } else {
                let h = Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)])
                    .split(body);
                (h[0], h[1], None)
            }
        }
        _ => (body, body, None),
    };
    Areas {
        tabs: v[0],
        body,
        list,
        detail,
        side,
        status: v[2],
        footer: v[3],
    }
}

/// First row shown so that `sel` is visible.
pub fn list_offset(sel: usize, len: usize, height: usize) -> usize {
    if height == 0 || len <= height {
        0
    } else if sel >= height {
        (sel + 1 - height).min(len - height)
    } else {
        0
    }
}

const TAB_W: u16 = 14;

pub fn tab_at(col: u16) -> Option<Screen> {
    Screen::ALL.get((col / TAB_W) as usize).copied()
}

pub fn draw(m: &Model, f: &mut Frame) {
    let t = theme(m);
    let a = areas(m, f.area());
    draw_tabs(m, &t, f, a.tabs);
    match m.screen {
        Screen::Connect => draw_connect(m, &t, f, &a),
        Screen::Steps => draw_steps(m, &t, f, &a),
        Screen::Live => draw_live(m, &t, f, a.body),
        Screen::Logs => draw_logs(m, &t, f, a.body),
        Screen::Doctor => draw_doctor(m, &t, f, &a),
    }
    draw_status(m, &t, f, a.status);
    draw_footer(m, &t, f, a.footer);
    match &m.dialog {
        Some(Dialog::Help { scroll }) => draw_help(m, &t, f, *scroll),
        Some(Dialog::Preview { row, scroll }) => draw_preview(m, &t, f, *row, *scroll),
        Some(Dialog::Confirm(c)) => draw_confirm(&t, f, c),
        None => {}
    }
}

fn draw_tabs(m: &Model, t: &Theme, f: &mut Frame, r: Rect) {
    let mut spans = Vec::new();
    for (i, s) in Screen::ALL.iter().enumerate() {
        let label = format!(
            " {} {:<width$}",
            i + 1,
            s.title(),
            width = TAB_W as usize - 3
        );
        let style = if *s == m.screen {
            t.sel().add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        spans.push(Span::styled(label, style));
    }
    let used: usize = spans.iter().map(|s| s.width()).sum();
    let right = compact_status(m);
    let room = (r.width as usize).saturating_sub(used + 1);
    if room > 4 {
        let text: String = right.chars().take(room).collect();
        spans.push(Span::raw(" "));
        spans.push(Span::styled(
            format!("{text:>room$}"),
            if m.engine.is_some() { t.ok() } else { t.warn() },
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), r);
}

fn compact_status(m: &Model) -> String {
    let v = match &m.vault {
        Probe::Ok(v) if v.sealed => "vault sealed".to_string(),
        Probe::Ok(v) => format!("vault {}", v.version),
        Probe::Failed(_) => "vault ✗".into(),
        Probe::Checking => "vault …".into(),
        Probe::Unknown => "vault ?".into(),
    };
    let k: Vec<String> = m
        .kube
        .iter()
        .map(|(n, p)| {
            let mark = match p {
                Probe::Ok(_) => "✓",
                Probe::Failed(_) => "✗",
                Probe::Checking => "…",
                Probe::Unknown => "?",
            };
            format!("{n} {mark}")
        })
        .collect();
    let scope = m
        .cluster
        .as_ref()
        .map(|c| format!(" [:cluster {c}]"))
        .unwrap_or_default();
    format!("{v} · {}{scope}", k.join(" "))
}

fn draw_status(m: &Model, t: &Theme, f: &mut Frame, r: Rect) {
    let line = match &m.mode {
        Mode::Command(s) => Line::from(vec![
            Span::styled(":", t.accent()),
            Span::raw(s.clone()),
            Span::styled("█", t.dim()),
        ]),
        Mode::Filter(s) => Line::from(vec![
            Span::styled("/", t.accent()),
            Span::raw(s.clone()),
            Span::styled("█", t.dim()),
        ]),
        Mode::Normal => {
            if let Some(run) = &m.run {
                let el = m.now.saturating_duration_since(run.started).as_secs_f64();
                let verb = match run.kind {
                    super::model::RunKind::Apply => "applying",
                    super::model::RunKind::Rollback => "rolling back",
                };
                let cur = m
                    .steps
                    .iter()
                    .find(|r| r.state == RowState::Running)
                    .map(|r| format!(" · [{}] {}", r.cluster, r.step))
                    .unwrap_or_default();
                Line::from(Span::styled(
                    format!(
                        "⏵ {verb}… {}/{} finished · elapsed {el:.1}s{cur}",
                        run.finished, run.total
                    ),
                    t.accent().add_modifier(Modifier::BOLD),
                ))
            } else if let Some(msg) = &m.message {
                Line::from(Span::styled(msg.clone(), t.warn()))
            } else if let Some(w) = m.warnings.last() {
                Line::from(Span::styled(format!("⚠ {w}"), t.warn()))
            } else if let Some(e) = &m.engine_error {
                Line::from(Span::styled(format!("not connected: {e}"), t.bad()))
            } else if let Some(r) = &m.last_report {
                Line::from(Span::styled(r.clone(), t.dim()))
            } else {
                Line::from("")
            }
        }
    };
    f.render_widget(Paragraph::new(line), r);
}

fn draw_footer(m: &Model, t: &Theme, f: &mut Frame, r: Rect) {
    let scope = if m.screen == Screen::Connect && m.form.editing && m.dialog.is_none() {
        None
    } else {
        Some(m.scope())
    };
    let mut spans = Vec::new();
    let hints: Vec<(String, &str)> = match scope {
        None => vec![
            ("esc".into(), "done"),
            ("enter/↓".into(), "next field"),
            ("↑".into(), "previous"),
            ("tab".into(), "complete context"),
        ],
        Some(Scope::Dialog) => match &m.dialog {
            Some(Dialog::Preview { .. }) => vec![
                ("j/k".into(), "scroll"),
                (
                    m.keymap.key_of(super::keymap::Action::ApplyStep),
                    "apply this step",
                ),
                (
                    m.keymap.key_of(super::keymap::Action::Rollback),
                    "roll back",
                ),
                ("esc".into(), "close"),
            ],
            Some(Dialog::Help { .. }) => vec![("j/k".into(), "scroll"), ("esc".into(), "close")],
            _ => m.keymap.hints(Scope::Dialog),
        },
        Some(s) => m.keymap.hints(s),
    };
    let mut width = 0usize;
    for (k, h) in hints {
        let w = k.chars().count() + h.chars().count() + 3;
        if width + w > r.width as usize {
            break;
        }
        width += w;
        spans.push(Span::styled(format!("<{k}>"), t.accent()));
        spans.push(Span::raw(format!("{h} ")));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), r);
}

// ---------------------------------------------------------------- Connect

fn draw_connect(m: &Model, t: &Theme, f: &mut Frame, a: &Areas) {
    let form = &m.form;
    let title = format!("Connect · {}", form.path.display());
    let b = block(t, title, true);
    let inner = b.inner(a.list);
    f.render_widget(b, a.list);
    let label_w = 14u16;
    let off = list_offset(form.focus, form.fields.len(), inner.height as usize);
    for (row, (i, field)) in form.fields.iter().enumerate().skip(off).enumerate() {
        if row as u16 >= inner.height {
            break;
        }
        let y = inner.y + row as u16;
        let focused = i == form.focus;
        let label_style = if focused { t.sel() } else { Style::default() };
        let label = if field.kind == FieldKind::ClusterName {
            format!("Cluster {}", form.cluster_of(i).map(|c| c + 1).unwrap_or(0))
        } else {
            field.kind.label().to_string()
        };
        f.render_widget(
            Paragraph::new(Span::styled(
                format!("{label:<w$}", w = label_w as usize),
                label_style,
            )),
            Rect::new(inner.x, y, label_w.min(inner.width), 1),
        );
        let rest = inner.width.saturating_sub(label_w + 1);
        let check_w = (rest / 3).min(34);
        let input_w = rest.saturating_sub(check_w + 1);
        let input_r = Rect::new(inner.x + label_w + 1, y, input_w, 1);
        if focused && form.editing {
            f.render_widget(&field.input, input_r);
        } else {
            let shown = if field.kind == FieldKind::Token && !form.revealed {
                "•".repeat(field.value().chars().count().min(input_w as usize))
            } else {
                field.value()
            };
            let style = if shown.is_empty() {
                t.dim()
            } else {
                Style::default()
            };
            let shown = if shown.is_empty() {
                "—".to_string()
            } else {
                shown
            };
            f.render_widget(Paragraph::new(Span::styled(shown, style)), input_r);
        }
        let (mark, style) = match &field.check {
            Ok(n) if n.is_empty() => ("✓".to_string(), t.ok()),
            Ok(n) => (format!("✓ {n}"), t.dim()),
            Err(e) => (format!("✗ {e}"), t.bad()),
        };
        f.render_widget(
            Paragraph::new(Span::styled(mark, style)),
            Rect::new(input_r.x + input_w + 1, y, check_w, 1),
        );
        if focused {
            let cands = form.candidates(i);
            if !cands.is_empty() && row as u16 + 1 < inner.height && form.editing {
                let y2 = y + 1;
                let text = format!("tab → {}", cands.join("  "));
                f.render_widget(Clear, Rect::new(input_r.x, y2, input_w, 1));
                f.render_widget(
                    Paragraph::new(Span::styled(text, t.accent())),
                    Rect::new(input_r.x, y2, input_w, 1),
                );
            }
        }
    }
    draw_target_status(m, t, f, a.detail);
}

fn yes_no(t: &Theme, v: &Result<bool, String>) -> Span<'static> {
    match v {
        Ok(true) => Span::styled("yes", t.ok()),
        Ok(false) => Span::styled("NO", t.bad()),
        Err(e) => Span::styled(format!("? {e}"), t.warn()),
    }
}

fn draw_target_status(m: &Model, t: &Theme, f: &mut Frame, r: Rect) {
    let mut lines: Vec<Line> = Vec::new();
    lines.push(Line::from(Span::styled("Vault", t.title())));
    match &m.vault {
        Probe::Unknown => lines.push(Line::from(Span::styled(
            "  not checked yet: press c to connect",
            t.dim(),
        ))),
        Probe::Checking => lines.push(Line::from(Span::styled("  checking…", t.accent()))),
        Probe::Failed(e) => {
            lines.push(Line::from(vec![
                Span::raw("  reachable: "),
                Span::styled("NO", t.bad()),
            ]));
            lines.push(Line::from(Span::styled(format!("  {e}"), t.bad())));
        }
        Probe::Ok(v) => {
            lines.push(Line::from(vec![
                Span::raw("  reachable: "),
                Span::styled("yes", t.ok()),
                Span::raw(format!("  {}", v.address)),
            ]));
            lines.push(Line::from(vec![
                Span::raw(format!("  version {}  ", v.version)),
                if v.sealed {
                    Span::styled("SEALED", t.bad())
                } else {
                    Span::styled("unsealed", t.ok())
                },
                Span::raw(if v.initialized {
                    ""
                } else {
                    "  not initialised"
                }),
            ]));
            match &v.who {
                Ok(w) => lines.push(Line::from(vec![
                    Span::raw("  authenticated as "),
                    Span::styled(w.clone(), t.ok()),
                ])),
                Err(e) => lines.push(Line::from(vec![
                    Span::raw("  authenticated: "),
                    Span::styled(format!("NO ({e})"), t.bad()),
                ])),
            }
        }
    }
    for (name, p) in &m.kube {
        lines.push(Line::from(Span::styled(
            format!("Kubernetes {name}"),
            t.title(),
        )));
        match p {
            Probe::Unknown => lines.push(Line::from(Span::styled("  not checked yet", t.dim()))),
            Probe::Checking => lines.push(Line::from(Span::styled("  checking…", t.accent()))),
            Probe::Failed(e) => lines.push(Line::from(Span::styled(format!("  ✗ {e}"), t.bad()))),
            Probe::Ok(k) => {
                lines.push(Line::from(format!("  {}  ({})", k.api_url, k.context)));
                lines.push(Line::from(vec![
                    Span::raw("  server "),
                    Span::styled(k.version.clone(), t.ok()),
                ]));
                let mut spans = vec![Span::raw("  can create:")];
                for (res, ok) in &k.can_create {
                    spans.push(Span::raw(format!(" {res} ")));
                    spans.push(yes_no(t, ok));
                }
                lines.push(Line::from(spans));
            }
        }
    }
    if m.kube.is_empty() {
        lines.push(Line::from(Span::styled(
            "No cluster yet: press a to add one",
            t.dim(),
        )));
    }
    if let Some(e) = &m.engine_error {
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled(format!("engine: {e}"), t.bad())));
    }
    f.render_widget(
        Paragraph::new(lines)
            .block(block(t, "Targets", false))
            .wrap(Wrap { trim: false }),
        r,
    );
}

// ---------------------------------------------------------------- Steps

fn state_text(m: &Model, r: &StepRow) -> String {
    match &r.state {
        RowState::Running => {
            let el = r
                .started
                .map(|s| m.now.saturating_duration_since(s).as_secs_f64())
                .unwrap_or(0.0);
            format!("running {el:.1}s")
        }
        s => s.label().to_string(),
    }
}

fn draw_steps(m: &Model, t: &Theme, f: &mut Frame, a: &Areas) {
    let vis = m.visible_steps();
    let title = {
        let mut s = format!("Plan · {} step(s)", vis.len());
        if !m.filter.is_empty() {
            s.push_str(&format!(" · /{}", m.filter));
        }
        if m.plan_loading {
            s.push_str(" · checking…");
        }
        s
    };
    let b = block(t, title, true);
    let inner = b.inner(a.list);
    f.render_widget(b, a.list);
    let h = inner.height as usize;
    if m.steps.is_empty() {
        let msg = if let Some(e) = &m.plan_error {
            Span::styled(format!("plan failed: {e}"), t.bad())
        } else if m.engine_error.is_some() || m.config.is_none() {
            Span::styled("not connected: set up the targets on Connect (1)", t.warn())
        } else {
            Span::styled("checking every step…", t.dim())
        };
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), inner);
    } else {
        let sel = m.steps_sel.min(vis.len().saturating_sub(1));
        let off = list_offset(sel, vis.len(), h);
        let cw = m
            .steps
            .iter()
            .map(|r| r.cluster.len())
            .max()
            .unwrap_or(8)
            .min(14);
        let mut lines = Vec::new();
        for (k, &i) in vis.iter().enumerate().skip(off).take(h) {
            let r = &m.steps[i];
            let st = state_text(m, r);
            let mut line = Line::from(vec![
                Span::styled(format!(" {:<cw$} ", r.cluster), t.dim()),
                Span::raw(format!("{:<17} ", r.step.as_str())),
                Span::styled(format!("{st:<13}"), t.state(&r.state)),
                Span::raw(r.title.clone()),
            ]);
            if k == sel {
                line = line.style(t.sel());
            }
            lines.push(line);
        }
        f.render_widget(Paragraph::new(lines), inner);
    }
    draw_step_detail(m, t, f, a.detail);
    if let Some(side) = a.side {
        draw_live_summary(m, t, f, side);
    }
}

fn draw_step_detail(m: &Model, t: &Theme, f: &mut Frame, r: Rect) {
    let Some(i) = m.selected_step() else {
        f.render_widget(block(t, "Step", false), r);
        return;
    };
    let row = &m.steps[i];
    let mut lines = vec![
        Line::from(vec![
            Span::styled(format!("[{}] {}", row.cluster, row.step), t.title()),
            Span::raw("  "),
            Span::styled(state_text(m, row), t.state(&row.state)),
            Span::raw(
                row.took
                    .map(|d| format!(" ({:.1}s)", d.as_secs_f64()))
                    .unwrap_or_default(),
            ),
        ]),
        Line::from(row.preview.summary.clone()),
    ];
    match &row.state {
        RowState::Conflict(w) => {
            lines.push(Line::from(Span::styled(format!("conflict: {w}"), t.bad())))
        }
        RowState::Blocked(w) => {
            lines.push(Line::from(Span::styled(format!("blocked: {w}"), t.warn())))
        }
        RowState::Failed { error, hint } => {
            lines.push(Line::from(Span::styled(format!("error: {error}"), t.bad())));
            if let Some(h) = hint {
                lines.push(Line::from(Span::styled(format!("hint: {h}"), t.warn())));
            }
        }
        _ => {}
    }
    if let Some(p) = &row.progress {
        lines.push(Line::from(Span::styled(format!("⏵ {p}"), t.accent())));
    }
    for c in &row.preview.changes {
        lines.push(Line::from(format!("• {c}")));
    }
    if let Some(cmd) = row.preview.commands.first() {
        lines.push(Line::from(Span::styled("equivalent:", t.dim())));
        for l in cmd.lines().take(3) {
            lines.push(Line::from(Span::styled(format!("$ {l}"), t.dim())));
        }
    }
    lines.push(Line::from(Span::styled(
        format!(
            "{} preview · {} apply · {} roll back",
            m.keymap.key_of(super::keymap::Action::Preview),
            m.keymap.key_of(super::keymap::Action::ApplyStep),
            m.keymap.key_of(super::keymap::Action::Rollback)
        ),
        t.dim(),
    )));
    f.render_widget(
        Paragraph::new(lines)
            .block(block(t, "Step", false))
            .wrap(Wrap { trim: false }),
        r,
    );
}

/// Compact live panes beside the plan on wide screens.
fn draw_live_summary(m: &Model, t: &Theme, f: &mut Frame, r: Rect) {
    let v = Layout::vertical([
        Constraint::Percentage(30),
        Constraint::Percentage(40),
        Constraint::Percentage(30),
    ])
    .split(r);
    draw_mounts(m, t, f, v[0], false);
    draw_kv_compact(m, t, f, v[1]);
    draw_kube_compact(m, t, f, v[2]);
}

fn short_hex(s: &str) -> String {
    s.chars().take(16).collect::<String>() + "…"
}

fn draw_kv_compact(m: &Model, t: &Theme, f: &mut Frame, r: Rect) {
    let mut lines: Vec<Line> = Vec::new();
    for kv in &m.live.data.kv {
        lines.push(Line::from(vec![
            Span::styled(format!("{} ", kv.cluster), t.title()),
            Span::styled(format!("{}/{}", kv.mount, kv.path), t.dim()),
        ]));
        if let Some(e) = &kv.error {
            lines.push(Line::from(Span::styled(format!("  {e}"), t.warn())));
            continue;
        }
        let absent: Vec<&str> = kv
            .keys
            .iter()
            .filter(|(_, p)| !p)
            .map(|(k, _)| k.as_str())
            .collect();
        lines.push(if absent.is_empty() {
            Line::from(Span::styled(
                format!("  {} keys present", kv.keys.len()),
                t.ok(),
            ))
        } else {
            Line::from(Span::styled(
                format!("  ABSENT: {}", absent.join(", ")),
                t.bad(),
            ))
        });
        for c in &kv.certs {
            let cn = c
                .subject
                .split(", ")
                .find_map(|p| p.strip_prefix("CN="))
                .unwrap_or(&c.subject);
            lines.push(Line::from(vec![
                Span::raw(format!("  {:<10} {cn:<16} ", c.field)),
                Span::styled(
                    if c.days_left < 0 {
                        "EXPIRED".to_string()
                    } else {
                        format!("{:>5}d", c.days_left)
                    },
                    t.days(c.days_left),
                ),
                Span::styled(format!(" {}", short_hex(&c.sha256)), t.dim()),
            ]));
        }
    }
    f.render_widget(
        Paragraph::new(empty_or(lines, t, "no data yet")).block(block(
            t,
            live_title(m, LivePane::Kv),
            false,
        )),
        r,
    );
}

fn draw_kube_compact(m: &Model, t: &Theme, f: &mut Frame, r: Rect) {
    let mut lines: Vec<Line> = Vec::new();
    for k in &m.live.data.kube {
        let mut spans = vec![Span::styled(format!("{:<9}", k.cluster), t.title())];
        if let Some(e) = &k.error {
            spans.push(Span::styled(e.clone(), t.bad()));
        } else {
            for (kind, _, st) in &k.objects {
                let abbrev: String = kind.chars().filter(|c| c.is_uppercase()).collect();
                spans.push(Span::raw(format!(" {abbrev}:")));
                spans.push(match st {
                    Ok(_) => Span::styled("✓", t.ok()),
                    Err(_) => Span::styled("✗", t.bad()),
                });
            }
            spans.push(Span::raw(format!(
                " istiod:{}",
                if k.istiod.is_some() { "✓" } else { "-" }
            )));
        }
        lines.push(Line::from(spans));
    }
    f.render_widget(
        Paragraph::new(empty_or(lines, t, "no data yet"))
            .block(block(t, live_title(m, LivePane::Kube), false))
            .wrap(Wrap { trim: false }),
        r,
    );
}

// ---------------------------------------------------------------- Live

fn draw_live(m: &Model, t: &Theme, f: &mut Frame, r: Rect) {
    let focus = m.live.pane;
    if r.width < 120 {
        // One pane at a time, a pane bar on top.
        let v = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).split(r);
        let mut spans = Vec::new();
        for p in LivePane::ALL {
            let s = if p == focus { t.sel() } else { t.dim() };
            spans.push(Span::styled(format!(" {} ", p.title()), s));
        }
        f.render_widget(Paragraph::new(Line::from(spans)), v[0]);
        draw_pane(m, t, f, v[1], focus, true);
        return;
    }
    let h = Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).split(r);
    let left = Layout::vertical([
        Constraint::Percentage(30),
        Constraint::Percentage(30),
        Constraint::Percentage(40),
    ])
    .split(h[0]);
    let right =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).split(h[1]);
    draw_pane(
        m,
        t,
        f,
        left[0],
        LivePane::Mounts,
        focus == LivePane::Mounts,
    );
    draw_pane(m, t, f, left[1], LivePane::Roles, focus == LivePane::Roles);
    draw_pane(
        m,
        t,
        f,
        left[2],
        LivePane::Policies,
        focus == LivePane::Policies,
    );
    draw_pane(m, t, f, right[0], LivePane::Kv, focus == LivePane::Kv);
    draw_pane(m, t, f, right[1], LivePane::Kube, focus == LivePane::Kube);
}

fn draw_pane(m: &Model, t: &Theme, f: &mut Frame, r: Rect, p: LivePane, focused: bool) {
    match p {
        LivePane::Mounts => draw_mounts(m, t, f, r, focused),
        LivePane::Roles => draw_roles(m, t, f, r, focused),
        LivePane::Policies => draw_policies(m, t, f, r, focused),
        LivePane::Kv => draw_kv(m, t, f, r, focused),
        LivePane::Kube => draw_kube(m, t, f, r, focused),
    }
}

fn live_title(m: &Model, p: LivePane) -> String {
    let mut s = p.title().to_string();
    if m.live.loading {
        s.push_str(" · refreshing…");
    }
    s
}

fn sel_lines<'a>(
    lines: Vec<Line<'a>>,
    sel: usize,
    focused: bool,
    t: &Theme,
    h: usize,
) -> Vec<Line<'a>> {
    let off = list_offset(sel, lines.len(), h);
    lines
        .into_iter()
        .enumerate()
        .skip(off)
        .take(h)
        .map(|(i, l)| {
            if focused && i == sel {
                l.style(t.sel())
            } else {
                l
            }
        })
        .collect()
}

fn empty_or(lines: Vec<Line<'static>>, t: &Theme, what: &str) -> Vec<Line<'static>> {
    if lines.is_empty() {
        vec![Line::from(Span::styled(what.to_string(), t.dim()))]
    } else {
        lines
    }
}

fn draw_mounts(m: &Model, t: &Theme, f: &mut Frame, r: Rect, focused: bool) {
    let b = block(t, live_title(m, LivePane::Mounts), focused);
    let inner = b.inner(r);
    let lines: Vec<Line> = m
        .live
        .data
        .mounts
        .iter()
        .map(|x| {
            Line::from(vec![
                Span::raw(format!("{:<34} ", x.path)),
                Span::styled(format!("{:<11} ", x.kind), t.accent()),
                Span::styled(x.accessor.clone(), t.dim()),
            ])
        })
        .collect();
    let lines = sel_lines(
        lines,
        m.live.selected(LivePane::Mounts),
        focused,
        t,
        inner.height as usize,
    );
    f.render_widget(b, r);
    f.render_widget(Paragraph::new(empty_or(lines, t, "no data yet")), inner);
}

fn draw_roles(m: &Model, t: &Theme, f: &mut Frame, r: Rect, focused: bool) {
    let title = format!(
        "Roles of {}",
        m.live
            .roles_mount
            .as_deref()
            .unwrap_or("the selected mount")
    );
    let b = block(t, title, focused);
    let inner = b.inner(r);
    let lines: Vec<Line> = match &m.live.roles {
        Err(e) => vec![Line::from(Span::styled(e.clone(), t.warn()))],
        Ok(rows) => rows
            .iter()
            .map(|x| {
                Line::from(vec![
                    Span::styled(format!("{:<10} ", x.name), t.title()),
                    Span::raw(format!("sa={} ns={} ", x.sa_names, x.namespaces)),
                    Span::styled(format!("policies={} ttl={}", x.policies, x.ttl), t.dim()),
                ])
            })
            .collect(),
    };
    let lines = sel_lines(
        lines,
        m.live.selected(LivePane::Roles),
        focused,
        t,
        inner.height as usize,
    );
    f.render_widget(b, r);
    f.render_widget(Paragraph::new(empty_or(lines, t, "no roles")), inner);
}

fn draw_policies(m: &Model, t: &Theme, f: &mut Frame, r: Rect, focused: bool) {
    let b = block(t, live_title(m, LivePane::Policies), focused);
    let inner = b.inner(r);
    f.render_widget(b, r);
    let h = Layout::horizontal([
        Constraint::Length(26.min(inner.width / 2)),
        Constraint::Min(1),
    ])
    .split(inner);
    let sel = m.live.selected(LivePane::Policies);
    let names: Vec<Line> = m
        .live
        .data
        .policies
        .iter()
        .map(|p| Line::from(p.name.clone()))
        .collect();
    let names = sel_lines(names, sel, focused, t, h[0].height as usize);
    f.render_widget(Paragraph::new(empty_or(names, t, "no data yet")), h[0]);
    if let Some(p) = m.live.data.policies.get(sel) {
        f.render_widget(
            Paragraph::new(p.text.clone())
                .style(t.dim())
                .wrap(Wrap { trim: false }),
            h[1],
        );
    }
}

fn draw_kv(m: &Model, t: &Theme, f: &mut Frame, r: Rect, focused: bool) {
    let b = block(t, live_title(m, LivePane::Kv), focused);
    let inner = b.inner(r);
    f.render_widget(b, r);
    let mut lines: Vec<Line> = Vec::new();
    let sel = m.live.selected(LivePane::Kv);
    for (i, kv) in m.live.data.kv.iter().enumerate() {
        if focused && i < sel {
            continue;
        }
        let mut head = Line::from(vec![
            Span::styled(format!("{} ", kv.cluster), t.title()),
            Span::raw(format!("{}/{}", kv.mount, kv.path)),
        ]);
        if focused && i == sel {
            head = head.style(t.sel());
        }
        lines.push(head);
        if let Some(e) = &kv.error {
            lines.push(Line::from(Span::styled(format!("  {e}"), t.warn())));
            continue;
        }
        let mut keys = vec![Span::raw("  keys:")];
        for (k, present) in &kv.keys {
            keys.push(Span::raw(format!(" {k} ")));
            keys.push(if *present {
                Span::styled("present", t.ok())
            } else {
                Span::styled("ABSENT", t.bad())
            });
        }
        lines.push(Line::from(keys));
        for c in &kv.certs {
            lines.push(Line::from(vec![
                Span::styled(format!("  {:<10} ", c.field), t.accent()),
                Span::raw(format!("subject {}", c.subject)),
            ]));
            lines.push(Line::from(format!("    issuer {}", c.issuer)));
            lines.push(Line::from(vec![
                Span::raw(format!(
                    "    serial {}  not after {} ",
                    c.serial, c.not_after
                )),
                Span::styled(
                    if c.days_left < 0 {
                        format!("EXPIRED {}d ago", -c.days_left)
                    } else {
                        format!("{}d left", c.days_left)
                    },
                    t.days(c.days_left),
                ),
            ]));
            lines.push(Line::from(Span::styled(
                format!("    sha256 {}", c.sha256),
                t.dim(),
            )));
        }
    }
    f.render_widget(
        Paragraph::new(empty_or(lines, t, "no data yet")).wrap(Wrap { trim: false }),
        inner,
    );
}

fn draw_kube(m: &Model, t: &Theme, f: &mut Frame, r: Rect, focused: bool) {
    let b = block(t, live_title(m, LivePane::Kube), focused);
    let inner = b.inner(r);
    f.render_widget(b, r);
    let mut lines: Vec<Line> = Vec::new();
    let sel = m.live.selected(LivePane::Kube);
    for (i, k) in m.live.data.kube.iter().enumerate() {
        if focused && i < sel {
            continue;
        }
        let mut head = Line::from(Span::styled(format!("cluster {}", k.cluster), t.title()));
        if focused && i == sel {
            head = head.style(t.sel());
        }
        lines.push(head);
        if let Some(e) = &k.error {
            lines.push(Line::from(Span::styled(format!("  {e}"), t.bad())));
            continue;
        }
        for (kind, name, st) in &k.objects {
            let s = match st {
                Ok(d) => Span::styled(d.clone(), t.ok()),
                Err(d) => Span::styled(d.clone(), t.warn()),
            };
            lines.push(Line::from(vec![
                Span::raw(format!("  {kind:<19} {name:<28} ")),
                s,
            ]));
        }
        lines.push(Line::from(vec![
            Span::raw("  istiod Deployment   "),
            match &k.istiod {
                Some(d) => Span::styled(d.clone(), t.ok()),
                None => Span::styled("none", t.dim()),
            },
        ]));
        if k.pods.is_empty() {
            lines.push(Line::from(Span::styled("  no istiod pod", t.dim())));
        }
        for p in &k.pods {
            lines.push(Line::from(format!("  pod {} {}", p.name, p.phase)));
            for (n, s) in &p.init {
                lines.push(Line::from(Span::styled(
                    format!("    init {n}: {s}"),
                    t.dim(),
                )));
            }
            for (n, s) in &p.containers {
                lines.push(Line::from(Span::styled(format!("    {n}: {s}"), t.dim())));
            }
        }
    }
    f.render_widget(
        Paragraph::new(empty_or(lines, t, "no data yet")).wrap(Wrap { trim: false }),
        inner,
    );
}

// ---------------------------------------------------------------- Logs

fn draw_logs(m: &Model, t: &Theme, f: &mut Frame, r: Rect) {
    let lv = &m.logs;
    let only = match lv.only {
        None => "all containers".to_string(),
        Some(i) => CONTAINERS[i as usize].to_string(),
    };
    let flags = format!(
        "autoscroll {} · wrap {} · timestamps {}",
        if lv.autoscroll { "on" } else { "OFF" },
        if lv.wrap { "on" } else { "off" },
        if lv.timestamps { "on" } else { "off" },
    );
    let title = format!(
        "istiod logs · {} · {} · {only}",
        lv.cluster.as_deref().unwrap_or("-"),
        lv.pod.as_deref().unwrap_or("no pod")
    );
    let b = block(t, title, true);
    let inner = b.inner(r);
    f.render_widget(b, r);
    if inner.height < 2 {
        return;
    }
    let v = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).split(inner);
    let search = if lv.search.is_empty() {
        String::new()
    } else {
        let n = lv.buf.count_matches(&lv.search, lv.keep());
        format!(" · /{} ({n} lines)", lv.search)
    };
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(lv.status.clone(), t.accent()),
            Span::styled(
                format!(
                    " · {} lines{} · {flags}{search}",
                    lv.buf.len(),
                    if lv.buf.dropped() > 0 {
                        format!(" ({} dropped)", lv.buf.dropped())
                    } else {
                        String::new()
                    }
                ),
                t.dim(),
            ),
        ])),
        v[0],
    );
    let body = v[1];
    let h = body.height as usize;
    if lv.buf.is_empty() {
        f.render_widget(
            Paragraph::new(Span::styled(
                if lv.pod.is_none() {
                    format!("{} — nothing to show", lv.status)
                } else {
                    "waiting for lines…".to_string()
                },
                t.dim(),
            )),
            body,
        );
        return;
    }
    let top = lv.view_top(h);
    let keep = lv.keep();
    let mut lines = Vec::with_capacity(h);
    for (n, l) in lv.buf.iter_from(top) {
        if lines.len() >= h {
            break;
        }
        if !keep(l) {
            continue;
        }
        let mut spans = Vec::with_capacity(6);
        if lv.timestamps
            && let Some(ts) = &l.ts
        {
            spans.push(Span::styled(format!("{ts} "), t.dim()));
        }
        let tag = if l.container == 0 { "init " } else { "disc " };
        spans.push(Span::styled(
            tag,
            if l.container == 0 {
                t.warn()
            } else {
                t.accent()
            },
        ));
        let ranges = match_ranges(&l.text, &lv.search);
        let mut at = 0;
        let cur = lv.current == Some(n);
        for (s, e) in ranges {
            if s > at {
                spans.push(Span::raw(&l.text[at..s]));
            }
            let st = if cur {
                t.hl().add_modifier(Modifier::BOLD)
            } else {
                t.hl()
            };
            spans.push(Span::styled(&l.text[s..e], st));
            at = e;
        }
        if at < l.text.len() {
            spans.push(Span::raw(&l.text[at..]));
        }
        lines.push(Line::from(spans));
    }
    let mut p = Paragraph::new(lines);
    if lv.wrap {
        p = p.wrap(Wrap { trim: false });
    }
    f.render_widget(p, body);
}

// ---------------------------------------------------------------- Doctor

fn draw_doctor(m: &Model, t: &Theme, f: &mut Frame, a: &Areas) {
    let d = &m.doctor;
    let title = format!(
        "Doctor · the permission-denied chain{}",
        if d.loading { " · running…" } else { "" }
    );
    let b = block(t, title, true);
    let inner = b.inner(a.list);
    f.render_widget(b, a.list);
    let rows = d.rows();
    if rows.is_empty() {
        let msg = match (&d.error, m.engine.is_some()) {
            (Some(e), _) => Span::styled(format!("doctor failed: {e}"), t.bad()),
            (None, false) => {
                Span::styled("not connected: set up the targets on Connect (1)", t.warn())
            }
            (None, true) => Span::styled("walking the chain…", t.dim()),
        };
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), inner);
        f.render_widget(block(t, "Evidence", false), a.detail);
        return;
    }
    let sel = d.selected.min(rows.len() - 1);
    let mut lines = Vec::new();
    for (k, (c, l)) in rows.iter().enumerate() {
        let diag = &d.diagnoses[*c];
        let link = &diag.links[*l];
        let st = match link.status {
            LinkStatus::Ok => t.ok(),
            LinkStatus::Fail => t.bad(),
            LinkStatus::Skipped => t.dim(),
        };
        let mut line = Line::from(vec![
            Span::styled(format!(" {:<9}", diag.cluster), t.dim()),
            Span::raw(format!("{}. ", l + 1)),
            Span::styled(format!("{:<5}", link_label(link.status)), st),
            Span::raw(link.title.clone()),
        ]);
        if k == sel {
            line = line.style(t.sel());
        }
        lines.push(line);
    }
    let off = list_offset(sel, lines.len(), inner.height as usize);
    let lines: Vec<Line> = lines.into_iter().skip(off).collect();
    f.render_widget(Paragraph::new(lines), inner);
    let (c, l) = rows[sel];
    let link = &d.diagnoses[c].links[l];
    let mut ev = vec![Line::from(Span::styled(link.title.clone(), t.title()))];
    for e in &link.evidence {
        ev.push(Line::from(format!("• {e}")));
    }
    if let Some(fix) = &link.fix {
        ev.push(Line::from(""));
        ev.push(Line::from(Span::styled("fix:", t.warn())));
        for l in fix.lines() {
            ev.push(Line::from(Span::styled(format!("  {l}"), t.accent())));
        }
    }
    f.render_widget(
        Paragraph::new(ev)
            .block(block(
                t,
                format!("Evidence · {}", d.diagnoses[c].cluster),
                false,
            ))
            .wrap(Wrap { trim: false }),
        a.detail,
    );
}

// ---------------------------------------------------------------- Dialogs

fn centered(area: Rect, w_pct: u16, h: u16) -> Rect {
    let w = (area.width * w_pct / 100).max(40.min(area.width));
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn draw_help(m: &Model, t: &Theme, f: &mut Frame, scroll: u16) {
    let area = f.area();
    let r = centered(area, 80, area.height.saturating_sub(2));
    let mut lines = Vec::new();
    for (section, keys, help) in m.keymap.help_lines() {
        match section {
            Some(s) => {
                if !lines.is_empty() {
                    lines.push(Line::from(""));
                }
                lines.push(Line::from(Span::styled(s, t.title())));
            }
            None => lines.push(Line::from(vec![
                Span::styled(format!("  {keys:<20}"), t.accent()),
                Span::raw(help),
            ])),
        }
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        format!(
            "Keys can be changed in {} (see assets/tui/keymap.toml).",
            super::keymap::user_keymap_path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "$IVW_KEYMAP".into())
        ),
        t.dim(),
    )));
    for w in &m.warnings {
        lines.push(Line::from(Span::styled(format!("⚠ {w}"), t.warn())));
    }
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines)
            .block(block(t, "Help · keys", true))
            .scroll((scroll, 0)),
        r,
    );
}

fn draw_preview(m: &Model, t: &Theme, f: &mut Frame, row: usize, scroll: u16) {
    let Some(s) = m.steps.get(row) else { return };
    let area = f.area();
    let r = centered(area, 86, area.height.saturating_sub(2));
    let mut lines = vec![
        Line::from(vec![
            Span::raw("state: "),
            Span::styled(state_text(m, s), t.state(&s.state)),
        ]),
        Line::from(Span::styled(
            s.preview.summary.clone(),
            Style::default().add_modifier(Modifier::BOLD),
        )),
        Line::from(""),
        Line::from(Span::styled("Changes", t.title())),
    ];
    if s.preview.changes.is_empty() {
        lines.push(Line::from(Span::styled("  none", t.dim())));
    }
    for c in &s.preview.changes {
        lines.push(Line::from(format!("  • {c}")));
    }
    if let Some(d) = &s.preview.diff {
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled(
            "Diff (existing → wanted)",
            t.title(),
        )));
        for l in d.lines() {
            let st = if l.starts_with('+') && !l.starts_with("+++") {
                t.ok()
            } else if l.starts_with('-') && !l.starts_with("---") {
                t.bad()
            } else if l.starts_with("@@") {
                t.accent()
            } else {
                Style::default()
            };
            lines.push(Line::from(Span::styled(format!("  {l}"), st)));
        }
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled("Equivalent commands", t.title())));
    for c in &s.preview.commands {
        for l in c.lines() {
            lines.push(Line::from(Span::styled(format!("  $ {l}"), t.accent())));
        }
    }
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines)
            .block(block(
                t,
                format!("Preview · [{}] {} · {}", s.cluster, s.step, s.title),
                true,
            ))
            .wrap(Wrap { trim: false })
            .scroll((scroll, 0)),
        r,
    );
}

fn draw_confirm(t: &Theme, f: &mut Frame, c: &super::model::Confirm) {
    let area = f.area();
    let w = (area.width * 70 / 100)
        .max(40.min(area.width))
        .saturating_sub(2)
        .max(1) as usize;
    let rows: usize = c
        .lines
        .iter()
        .map(|l| l.chars().count().max(1).div_ceil(w))
        .sum();
    let want = rows as u16 + 5;
    let r = centered(area, 70, want.min(area.height.saturating_sub(2)));
    f.render_widget(Clear, r);
    let b = block(t, c.title.clone(), true);
    let inner = b.inner(r);
    f.render_widget(b, r);
    let v = Layout::vertical([Constraint::Min(1), Constraint::Length(2)]).split(inner);
    let lines: Vec<Line> = c
        .lines
        .iter()
        .map(|l| {
            let st = if l.starts_with("CONFLICT") || l.contains("OVERWRITES") {
                t.bad()
            } else if l.starts_with("  $") {
                t.accent()
            } else {
                Style::default()
            };
            Line::from(Span::styled(l.clone(), st))
        })
        .collect();
    f.render_widget(
        Paragraph::new(Text::from(lines))
            .wrap(Wrap { trim: false })
            .scroll((c.scroll, 0)),
        v[0],
    );
    let btn = |label: &str, on: bool| {
        let s = if on {
            t.sel().add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        Span::styled(format!("[ {label} ]"), s)
    };
    let buttons = Line::from(vec![
        btn(&format!("n {}", c.no), !c.on_yes),
        Span::raw("   "),
        btn(&format!("y {}", c.yes), c.on_yes),
        Span::styled("   enter = selected · default No", t.dim()),
    ]);
    f.render_widget(Paragraph::new(vec![Line::from(""), buttons]), v[1]);
}
