//! The journal: one entry per step the wizard touched, written atomically (temp file,
//! fsync, rename) before and after every apply, so a crash at any point leaves a record
//! from which `apply` resumes and `rollback` cleans up. It never holds a key or a token:
//! only names, fingerprints (SHA-256) and restorable non-secret values.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::StepId;
use crate::fsutil;

pub const JOURNAL_FILE: &str = "journal.json";
const LOCK_FILE: &str = "lock";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("journal {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error(
        "another run holds the lock on {0} (wait for it, or remove the lock file if no run is active)"
    )]
    Locked(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The wizard created the object; rollback deletes it.
    Created,
    /// The wizard changed an existing object after an explicit decision; rollback restores
    /// `previous`.
    Modified,
    /// It already existed and matched; never touched.
    Found,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryStatus {
    /// Recorded before the call: the object may or may not exist (crash window).
    Started,
    Applied,
    RolledBack,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub cluster: String,
    pub step: StepId,
    /// What it is about, e.g. `namespace istio-system`, `kubernetes-cluster1-secrets/istiod-service/certs`.
    pub resource: String,
    pub action: Action,
    pub status: EntryStatus,
    /// SHA-256 of what was written (never the value itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Non-secret state needed to undo: e.g. a policy's old text, a KV v2 version number.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub previous: serde_json::Value,
    pub at: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    pub entries: Vec<JournalEntry>,
    #[serde(skip)]
    path: PathBuf,
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Journal {
    pub fn load(state_dir: &Path) -> Result<Self, JournalError> {
        let path = state_dir.join(JOURNAL_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut j: Journal =
                    serde_json::from_str(&text).map_err(|e| JournalError::Corrupt {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                j.path = path;
                Ok(j)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Journal {
                version: 1,
                entries: Vec::new(),
                path,
            }),
            Err(e) => Err(JournalError::Io {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn save(&self) -> Result<(), JournalError> {
        if let Some(dir) = self.path.parent() {
            fsutil::create_private_dir(dir).map_err(|e| JournalError::Io {
                path: dir.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        let text = serde_json::to_vec_pretty(self).map_err(|e| JournalError::Corrupt {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        fsutil::write_atomic(&self.path, &text).map_err(|e| JournalError::Io {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// The live entry (not rolled back) for a cluster's step.
    pub fn live(&self, cluster: &str, step: StepId) -> Option<&JournalEntry> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.cluster == cluster && e.step == step && e.status != EntryStatus::RolledBack)
    }

    pub fn live_mut(&mut self, cluster: &str, step: StepId) -> Option<&mut JournalEntry> {
        self.entries
            .iter_mut()
            .rev()
            .find(|e| e.cluster == cluster && e.step == step && e.status != EntryStatus::RolledBack)
    }

    /// Records (or replaces) the live entry of a step.
    pub fn record(&mut self, entry: JournalEntry) {
        if let Some(e) = self.live_mut(&entry.cluster, entry.step) {
            *e = entry;
        } else {
            self.entries.push(entry);
        }
    }

    /// Entries rollback must undo, newest first.
    pub fn undoable(&self) -> Vec<JournalEntry> {
        self.entries
            .iter()
            .rev()
            .filter(|e| {
                e.status != EntryStatus::RolledBack
                    && matches!(e.action, Action::Created | Action::Modified)
            })
            .cloned()
            .collect()
    }
}

/// Exclusive lock on a state directory, held for the life of the value.
pub struct StateLock {
    _file: File,
}

impl StateLock {
    pub fn acquire(state_dir: &Path) -> Result<Self, JournalError> {
        fsutil::create_private_dir(state_dir).map_err(|e| JournalError::Io {
            path: state_dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let path = state_dir.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| JournalError::Io {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(JournalError::Locked(state_dir.display().to_string()))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(JournalError::Io {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }
}
