//! The terminal wizard (the only module that imports ratatui).

use std::path::PathBuf;

pub fn run(_config: Option<PathBuf>) -> std::io::Result<u8> {
    Err(std::io::Error::other("the TUI is not available yet"))
}
