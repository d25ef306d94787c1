//! istiod logs: a capped ring buffer addressed by absolute line numbers, search, and the
//! pane's view state (autoscroll, wrap, timestamps). The streaming task lives in `runner`.

use std::collections::VecDeque;

/// Containers followed, in display order.
pub const CONTAINERS: [&str; 2] = ["vault-agent-init", "discovery"];

#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Index into `CONTAINERS`.
    pub container: u8,
    /// RFC 3339 timestamp from the API server (`timestamps=true`), if any.
    pub ts: Option<String>,
    pub text: String,
}

impl LogLine {
    /// Splits `2024-01-01T00:00:00.123Z text` as the API returns it with timestamps.
    pub fn parse(container: u8, raw: &str) -> LogLine {
        let raw = raw.trim_end_matches(['\r', '\n']);
        if let Some((ts, rest)) = raw.split_once(' ')
            && ts.len() >= 20
            && ts.as_bytes()[4] == b'-'
            && ts.contains('T')
        {
            return LogLine {
                container,
                ts: Some(ts.to_string()),
                text: rest.to_string(),
            };
        }
        LogLine {
            container,
            ts: None,
            text: raw.to_string(),
        }
    }
}

/// Capped ring buffer. Line numbers are absolute (`first()..end()`), so positions stay
/// valid while old lines fall off the front.
#[derive(Debug, Clone)]
pub struct LogBuffer {
    lines: VecDeque<LogLine>,
    cap: usize,
    first: u64,
}

pub const DEFAULT_CAP: usize = 100_000;

impl Default for LogBuffer {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAP)
    }
}

impl LogBuffer {
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            lines: VecDeque::with_capacity(cap.min(4096)),
            cap: cap.max(1),
            first: 0,
        }
    }
    pub fn push(&mut self, line: LogLine) {
        if self.lines.len() == self.cap {
            self.lines.pop_front();
            self.first += 1;
        }
        self.lines.push_back(line);
    }
    pub fn extend(&mut self, lines: impl IntoIterator<Item = LogLine>) {
        for l in lines {
            self.push(l);
        }
    }
    pub fn len(&self) -> usize {
        self.lines.len()
    }
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
    pub fn cap(&self) -> usize {
        self.cap
    }
    /// Absolute number of the oldest line kept.
    pub fn first(&self) -> u64 {
        self.first
    }
    /// One past the newest line.
    pub fn end(&self) -> u64 {
        self.first + self.lines.len() as u64
    }
    /// Lines dropped because of the cap.
    pub fn dropped(&self) -> u64 {
        self.first
    }
    pub fn get(&self, n: u64) -> Option<&LogLine> {
        n.checked_sub(self.first)
            .and_then(|i| self.lines.get(i as usize))
    }
    pub fn clear(&mut self) {
        self.first = self.end();
        self.lines.clear();
    }
    /// Next line at or after `from` (wrapping) whose text contains `needle`
    /// (case-insensitive when the needle is lowercase), passing `keep`.
    pub fn find(
        &self,
        needle: &str,
        from: u64,
        forward: bool,
        keep: impl Fn(&LogLine) -> bool,
    ) -> Option<u64> {
        if needle.is_empty() || self.lines.is_empty() {
            return None;
        }
        let n = self.lines.len() as u64;
        let start = from.clamp(self.first, self.end() - 1) - self.first;
        for k in 0..n {
            let i = if forward {
                (start + k) % n
            } else {
                (start + n - (k % n)) % n
            };
            let l = &self.lines[i as usize];
            if keep(l) && matches(&l.text, needle) {
                return Some(self.first + i);
            }
        }
        None
    }
    pub fn count_matches(&self, needle: &str, keep: impl Fn(&LogLine) -> bool) -> usize {
        if needle.is_empty() {
            return 0;
        }
        self.lines
            .iter()
            .filter(|l| keep(l) && matches(&l.text, needle))
            .count()
    }
    pub fn iter_from(&self, n: u64) -> impl Iterator<Item = (u64, &LogLine)> {
        let skip = n.saturating_sub(self.first) as usize;
        self.lines
            .iter()
            .enumerate()
            .skip(skip)
            .map(move |(i, l)| (self.first + i as u64, l))
    }
}

/// Smart case: a lowercase needle matches case-insensitively.
pub fn matches(text: &str, needle: &str) -> bool {
    if needle.chars().any(|c| c.is_uppercase()) {
        text.contains(needle)
    } else {
        find_ci(text, needle).is_some()
    }
}

/// Byte ranges of `needle` in `text` (smart case), for highlighting.
pub fn match_ranges(text: &str, needle: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    if needle.is_empty() {
        return out;
    }
    let sensitive = needle.chars().any(|c| c.is_uppercase());
    let mut at = 0;
    while at < text.len() {
        let hit = if sensitive {
            text[at..].find(needle).map(|i| at + i)
        } else {
            find_ci(&text[at..], needle).map(|i| at + i)
        };
        match hit {
            Some(i) => {
                out.push((i, i + needle.len()));
                at = i + needle.len().max(1);
            }
            None => break,
        }
    }
    out
}

fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let h = hay.as_bytes();
    let n = needle.as_bytes();
    if n.len() > h.len() {
        return None;
    }
    (0..=h.len() - n.len()).find(|&i| {
        hay.is_char_boundary(i)
            && hay.is_char_boundary(i + n.len())
            && h[i..i + n.len()].eq_ignore_ascii_case(n)
    })
}

/// The pane's view state.
#[derive(Debug, Clone)]
pub struct LogsView {
    pub buf: LogBuffer,
    /// Following the tail.
    pub autoscroll: bool,
    /// Top line when not following.
    pub top: u64,
    pub wrap: bool,
    pub timestamps: bool,
    pub search: String,
    /// Line of the current match.
    pub current: Option<u64>,
    /// None: all containers; Some(i): only `CONTAINERS[i]`.
    pub only: Option<u8>,
    /// "streaming pod X", "no istiod pod in istio-system", "reconnecting in 4s".
    pub status: String,
    pub pod: Option<String>,
    pub cluster: Option<String>,
}

impl Default for LogsView {
    fn default() -> Self {
        Self {
            buf: LogBuffer::default(),
            autoscroll: true,
            top: 0,
            wrap: false,
            timestamps: false,
            search: String::new(),
            current: None,
            only: None,
            status: "not started".into(),
            pod: None,
            cluster: None,
        }
    }
}

impl LogsView {
    pub fn keep(&self) -> impl Fn(&LogLine) -> bool + '_ {
        move |l: &LogLine| self.only.is_none_or(|o| o == l.container)
    }
    pub fn ingest(&mut self, lines: Vec<LogLine>) {
        self.buf.extend(lines);
        if self.top < self.buf.first() {
            self.top = self.buf.first();
        }
    }
    /// First line shown for a body of `height` rows.
    pub fn view_top(&self, height: usize) -> u64 {
        if self.autoscroll {
            // Walk back over kept lines only.
            let mut n = 0usize;
            let mut at = self.buf.end();
            while at > self.buf.first() && n < height {
                at -= 1;
                if self.buf.get(at).is_some_and(|l| self.keep()(l)) {
                    n += 1;
                }
            }
            at
        } else {
            self.top.max(self.buf.first())
        }
    }
    pub fn scroll(&mut self, delta: i64, height: usize) {
        let top = self.view_top(height);
        if self.autoscroll && delta < 0 {
            self.autoscroll = false;
        }
        let max = self.buf.end().saturating_sub(1).max(self.buf.first());
        let next = (top as i64 + delta).clamp(self.buf.first() as i64, max as i64);
        self.top = next as u64;
    }
    pub fn toggle_autoscroll(&mut self, height: usize) {
        if self.autoscroll {
            self.top = self.view_top(height);
            self.autoscroll = false;
        } else {
            self.autoscroll = true;
        }
    }
    pub fn next_match(&mut self, forward: bool, height: usize) -> bool {
        let (first, end) = (self.buf.first(), self.buf.end());
        let from = match self.current {
            // Strictly after / before the current match, wrapping around the buffer.
            Some(c) if forward => {
                if c + 1 >= end {
                    first
                } else {
                    c + 1
                }
            }
            Some(c) => {
                if c <= first {
                    end.saturating_sub(1)
                } else {
                    c - 1
                }
            }
            None if forward => self.view_top(height),
            None => end.saturating_sub(1),
        };
        let only = self.only;
        let keep = move |l: &LogLine| only.is_none_or(|o| o == l.container);
        match self.buf.find(&self.search, from, forward, keep) {
            Some(n) => {
                self.current = Some(n);
                self.autoscroll = false;
                self.top = n.saturating_sub((height / 2) as u64).max(self.buf.first());
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: usize) -> LogLine {
        LogLine {
            container: (i % 2) as u8,
            ts: None,
            text: format!(
                "line {i} {}",
                if i.is_multiple_of(10) {
                    "ERROR x"
                } else {
                    "info"
                }
            ),
        }
    }

    #[test]
    fn ring_caps_and_keeps_absolute_numbers() {
        let mut b = LogBuffer::with_capacity(100);
        b.extend((0..250).map(line));
        assert_eq!(b.len(), 100);
        assert_eq!(b.first(), 150);
        assert_eq!(b.end(), 250);
        assert_eq!(b.dropped(), 150);
        assert_eq!(b.get(150).unwrap().text, "line 150 ERROR x");
        assert!(b.get(149).is_none());
        assert_eq!(b.iter_from(248).count(), 2);
    }

    #[test]
    fn search_wraps_both_ways_with_smart_case() {
        let mut b = LogBuffer::with_capacity(1000);
        b.extend((0..100).map(line));
        assert_eq!(b.find("error", 11, true, |_| true), Some(20));
        assert_eq!(b.find("error", 95, true, |_| true), Some(0));
        assert_eq!(b.find("error", 19, false, |_| true), Some(10));
        assert_eq!(b.find("Error", 0, true, |_| true), None);
        assert_eq!(b.count_matches("ERROR", |_| true), 10);
        assert_eq!(
            match_ranges("a error b ERROR", "error"),
            vec![(2, 7), (10, 15)]
        );
    }

    #[test]
    fn autoscroll_stays_off() {
        let mut v = LogsView::default();
        v.ingest((0..50).map(line).collect());
        assert_eq!(v.view_top(10), 40);
        v.toggle_autoscroll(10);
        assert!(!v.autoscroll);
        v.ingest((50..100).map(line).collect());
        assert_eq!(v.view_top(10), 40, "new lines do not move the view");
        v.scroll(5, 10);
        assert!(!v.autoscroll);
        assert_eq!(v.view_top(10), 45);
    }

    #[test]
    fn next_match_moves_view() {
        let mut v = LogsView::default();
        v.ingest((0..100).map(line).collect());
        v.search = "ERROR".into();
        assert!(v.next_match(true, 10));
        let first = v.current.unwrap();
        assert!(v.next_match(true, 10));
        assert_eq!(v.current.unwrap(), (first + 10) % 100);
        assert!(v.next_match(false, 10));
        assert_eq!(v.current, Some(first));
    }

    #[test]
    fn parse_timestamps() {
        let l = LogLine::parse(1, "2024-05-01T10:00:00.123456789Z hello world\n");
        assert_eq!(l.ts.as_deref(), Some("2024-05-01T10:00:00.123456789Z"));
        assert_eq!(l.text, "hello world");
        let l = LogLine::parse(0, "plain");
        assert_eq!(l.ts, None);
    }
}
