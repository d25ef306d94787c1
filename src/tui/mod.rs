//! The terminal wizard (the only module that imports ratatui).
//!
//! Elm-like: one `Msg` enum, one `update(&mut Model, Msg) -> Vec<Effect>` (`model`), effects
//! run as cancellable tokio tasks that answer with `Msg`s (`runner`), and `view::draw`
//! renders `&Model` only when something changed, at most ~60 times a second.

pub mod certinfo;
pub mod connect;
#[doc(hidden)]
pub mod fixtures;
pub mod keymap;
pub mod logs;
pub mod model;
pub mod runner;
pub mod view;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{
    self, DisableMouseCapture, EnableMouseCapture, Event as TermEvent,
};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};

pub use model::{Effect, Model, Msg, update};

const FRAME: Duration = Duration::from_millis(16);
const TICK: Duration = Duration::from_millis(250);

/// Puts the terminal back: raw mode off, main screen, mouse off, cursor shown.
fn restore_terminal() {
    let _ = disable_raw_mode();
    let mut out = std::io::stdout();
    let _ = execute!(
        out,
        DisableMouseCapture,
        LeaveAlternateScreen,
        ratatui::crossterm::cursor::Show
    );
    let _ = out.flush();
}

struct TermGuard;

impl Drop for TermGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Tracing to a file, never the screen: `IVW_TUI_LOG`, else `$XDG_STATE_HOME` or
/// `~/.local/state/istio-vault-wizard/tui.log`.
fn init_tracing() -> Option<PathBuf> {
    let path = std::env::var_os("IVW_TUI_LOG")
        .map(PathBuf::from)
        .or_else(|| {
            let base = std::env::var_os("XDG_STATE_HOME")
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state"))
                })?;
            Some(base.join("istio-vault-wizard").join("tui.log"))
        })?;
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ok()?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("IVW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
    Some(path)
}

/// Builds the first model: the config (if any), the environment's prefill, the keymap.
pub fn initial_model(config_path: Option<PathBuf>) -> std::io::Result<Model> {
    let config = match &config_path {
        Some(p) => Some(crate::config::load(p).map_err(|e| std::io::Error::other(e.to_string()))?),
        None => None,
    };
    let prefill = match &config {
        Some(c) => connect::Prefill::from_config(c),
        None => connect::Prefill::from_env(),
    };
    let (km, warnings) = keymap::Keymap::load_user();
    Ok(Model::new(config, prefill, km, warnings))
}

pub fn run(config: Option<PathBuf>) -> std::io::Result<u8> {
    let log = init_tracing();
    let mut model = initial_model(config)?;
    tracing::info!(log = ?log, "tui start");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        prev(info);
    }));

    enable_raw_mode()?;
    let guard = TermGuard;
    execute!(std::io::stdout(), EnterAlternateScreen, EnableMouseCapture)?;
    let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    terminal.clear()?;
    let result = rt.block_on(event_loop(&mut terminal, &mut model));
    drop(terminal);
    drop(guard);
    rt.shutdown_timeout(Duration::from_millis(200));
    tracing::info!("tui end");
    result.map(|_| crate::cli::exit::OK)
}

async fn event_loop<B: ratatui::backend::Backend>(
    terminal: &mut Terminal<B>,
    model: &mut Model,
) -> std::io::Result<()>
where
    B::Error: Send + Sync + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Msg>();
    let mut runner = runner::Runner::new(tx.clone());
    // Terminal input on a plain thread (crossterm's read blocks).
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            loop {
                match event::read() {
                    Ok(TermEvent::Key(k)) => {
                        if tx.send(Msg::Key(k)).is_err() {
                            break;
                        }
                    }
                    Ok(TermEvent::Mouse(m)) => {
                        let _ = tx.send(Msg::Mouse(m));
                    }
                    Ok(TermEvent::Resize(w, h)) => {
                        let _ = tx.send(Msg::Resize(w, h));
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
    }
    let size = terminal.size().map_err(std::io::Error::other)?;
    model.size = (size.width, size.height);
    for fx in model.init() {
        runner.run(fx);
    }
    let mut tick = tokio::time::interval(TICK);
    let mut last_draw = Instant::now() - FRAME;
    loop {
        if model.dirty && last_draw.elapsed() >= FRAME {
            terminal
                .draw(|f| view::draw(model, f))
                .map_err(std::io::Error::other)?;
            model.dirty = false;
            last_draw = Instant::now();
        }
        if model.quit {
            break;
        }
        let wait = if model.dirty {
            FRAME.saturating_sub(last_draw.elapsed())
        } else {
            Duration::from_secs(3600)
        };
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                let mut batch = vec![msg];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                    if batch.len() > 256 { break; }
                }
                for msg in batch {
                    for fx in update(model, msg) {
                        runner.run(fx);
                    }
                }
            }
            _ = tick.tick() => {
                for fx in update(model, Msg::Tick(Instant::now())) {
                    runner.run(fx);
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
    runner.shutdown();
    Ok(())
}
