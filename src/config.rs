//! Wizard configuration (wizard.toml).
