//! A job's output as JSON, for scripts: `muster job logs --json` prints one object per line of
//! output (which stream, when the server received it, the text), then one for the end;
//! `muster job run --json` keeps the same line objects in the job it prints.
//!
//! The server sends output in chunks that need not end at a line, nor at a character: lines are
//! put together here, per stream, and cut at [`MAX_LINE`] bytes so a command that never prints
//! a newline cannot make us hold its whole output.

use muster_proto::api::{JobState, JobView, OutputStream};
use serde::Serialize;

use crate::error::JobExit;

/// The longest line kept whole; a longer one comes in pieces marked `partial`.
pub const MAX_LINE: usize = 64 * 1024;

/// One line of a job's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputLine {
    pub stream: OutputStream,
    /// When the server received the line's first byte (RFC 3339, UTC); `None` for output a
    /// server stored without a time.
    pub at: Option<String>,
    /// The text, without its line feed; bytes that are not UTF-8 read as U+FFFD.
    pub line: String,
    /// The line did not end here: the output stopped without a line feed, or the line was
    /// longer than [`MAX_LINE`] bytes and goes on in the next piece.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

/// The objects `job logs --json` prints, one a line, told apart by `type`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record<'a> {
    Output(&'a OutputLine),
    /// This many pieces of live output were skipped: the reader fell behind.
    Skipped {
        chunks: u64,
    },
    /// The server stored only this much of the job's output.
    Truncated {
        kept_bytes: u64,
    },
    /// The job as it ended (or as it is, for `job logs` without `--follow` on a job that runs),
    /// and the code `muster job run` exits with for it (`None` while it has not ended).
    End {
        exit: Option<u8>,
        job: &'a JobView,
    },
}

impl Record<'_> {
    pub fn print(&self) {
        match serde_json::to_string(self) {
            Ok(text) => println!("{text}"),
            Err(e) => crate::output::print_error(&format!("cannot encode as JSON: {e}"), None),
        }
    }
}

/// The exit code `job run` gives a job that has ended.
pub fn exit_of(job: &JobView) -> Option<u8> {
    if matches!(
        job.state,
        JobState::Queued | JobState::Running | JobState::Unknown
    ) {
        return None;
    }
    Some(JobExit::of(job).code())
}

/// A line being put together: its bytes so far and when its first one arrived.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    at: Option<String>,
}

/// Puts a job's output chunks together into lines, per stream.
#[derive(Default)]
pub struct Lines {
    stdout: Pending,
    stderr: Pending,
}

impl Lines {
    /// Takes a chunk and returns the lines it completes.
    pub fn push(&mut self, stream: OutputStream, data: &[u8], at: Option<&str>) -> Vec<OutputLine> {
        let pending = self.pending(stream);
        let mut done = Vec::new();
        for piece in data.split_inclusive(|b| *b == b'\n') {
            if pending.bytes.is_empty() {
                pending.at = at.map(str::to_owned);
            }
            let (text, ended) = match piece.strip_suffix(b"\n") {
                Some(text) => (text, true),
                None => (piece, false),
            };
            pending.bytes.extend_from_slice(text);
            if ended {
                done.push(take(pending, stream, false));
            }
            while pending.bytes.len() > MAX_LINE {
                let rest = pending.bytes.split_off(MAX_LINE);
                done.push(take(pending, stream, true));
                pending.bytes = rest;
                pending.at = at.map(str::to_owned);
            }
        }
        done
    }

    /// The unfinished lines, once the output has ended: stdout's, then stderr's.
    pub fn finish(&mut self) -> Vec<OutputLine> {
        [OutputStream::Stdout, OutputStream::Stderr]
            .into_iter()
            .filter_map(|stream| {
                let pending = self.pending(stream);
                (!pending.bytes.is_empty()).then(|| take(pending, stream, true))
            })
            .collect()
    }

    fn pending(&mut self, stream: OutputStream) -> &mut Pending {
        match stream {
            OutputStream::Stderr => &mut self.stderr,
            _ => &mut self.stdout,
        }
    }
}

fn take(pending: &mut Pending, stream: OutputStream, partial: bool) -> OutputLine {
    let bytes = std::mem::take(&mut pending.bytes);
    OutputLine {
        stream,
        at: pending.at.take(),
        line: String::from_utf8_lossy(&bytes).into_owned(),
        partial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: Option<&str> = Some("2026-03-04T12:00:00.001Z");
    const T2: Option<&str> = Some("2026-03-04T12:00:00.002Z");

    fn texts(lines: &[OutputLine]) -> Vec<(&str, bool)> {
        lines.iter().map(|l| (l.line.as_str(), l.partial)).collect()
    }

    #[test]
    fn lines_are_put_together_across_chunks_per_stream_with_the_time_they_began() {
        let mut lines = Lines::default();
        assert!(lines.push(OutputStream::Stdout, b"hel", T1).is_empty());
        let err = lines.push(OutputStream::Stderr, b"oops\n", T2);
        assert_eq!(texts(&err), [("oops", false)]);
        assert_eq!(err[0].stream, OutputStream::Stderr);
        let out = lines.push(OutputStream::Stdout, b"lo\nworld\n\nno newline", T2);
        assert_eq!(
            texts(&out),
            [("hello", false), ("world", false), ("", false)]
        );
        assert_eq!(out[0].at.as_deref(), T1, "when the line began");
        assert_eq!(out[1].at.as_deref(), T2);
        let rest = lines.finish();
        assert_eq!(texts(&rest), [("no newline", true)]);
        assert!(lines.finish().is_empty());
    }

    #[test]
    fn a_character_split_between_chunks_is_whole_and_bad_bytes_read_as_replacement() {
        let mut lines = Lines::default();
        let e_acute = "é".as_bytes();
        lines.push(OutputStream::Stdout, &e_acute[..1], None);
        let out = lines.push(OutputStream::Stdout, &[e_acute[1], b'\xff', b'\n'], None);
        assert_eq!(out[0].line, "é\u{fffd}");
        assert_eq!(out[0].at, None);
    }

    #[test]
    fn an_endless_line_comes_in_bounded_pieces() {
        let mut lines = Lines::default();
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let out = lines.push(OutputStream::Stdout, &long, T1);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|l| l.partial && l.line.len() == MAX_LINE));
        assert_eq!(texts(&lines.finish()), [(&*"x".repeat(10), true)]);
    }

    #[test]
    fn records_read_as_documented() {
        let line = OutputLine {
            stream: OutputStream::Stdout,
            at: T1.map(str::to_owned),
            line: "hi".into(),
            partial: false,
        };
        assert_eq!(
            serde_json::to_string(&Record::Output(&line)).unwrap(),
            r#"{"type":"output","stream":"stdout","at":"2026-03-04T12:00:00.001Z","line":"hi"}"#
        );
        assert_eq!(
            serde_json::to_string(&Record::Skipped { chunks: 3 }).unwrap(),
            r#"{"type":"skipped","chunks":3}"#
        );
    }
}
