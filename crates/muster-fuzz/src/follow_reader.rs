//! Target `follow_reader`: the job-output stream a client follows (NDJSON from the server),
//! split into lines by [`LineSplitter`] as it arrives in chunks, each line parsed as a
//! [`JobEvent`]. The lines must be exactly the stream's, wherever the chunks fall; a line over
//! the limit must be refused, not buffered; and the splitter must never hold more than the
//! limit plus the chunk just pushed.
//!
//! Input layout: `[limit][n chunks][1 byte per chunk size][stream…]`. A limit byte of 0 means
//! the real limit ([`MAX_LINE`]); otherwise the limit is that many bytes, so short inputs reach it.

use arbitrary::Unstructured;
use muster_client::lines::{LineSplitter, LineTooLong, MAX_LINE};
use muster_proto::api::JobEvent;

const MAX_CHUNKS: usize = 16;

/// The fuzz target.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut byte = || u.arbitrary::<u8>().unwrap_or(0);
    let max_line = match byte() {
        0 => MAX_LINE,
        n => usize::from(n),
    };
    let n_chunks = usize::from(byte()) % (MAX_CHUNKS + 1);
    let sizes: Vec<usize> = (0..n_chunks).map(|_| usize::from(byte()).max(1)).collect();
    let stream = u.take_rest();

    let expected = expected_lines(stream, max_line);
    let mut got = Vec::new();
    let mut splitter = LineSplitter::new(max_line);
    let mut rest = stream;
    let mut next = 0;
    let refused = 'feed: loop {
        if rest.is_empty() {
            break None;
        }
        let size = if sizes.is_empty() {
            rest.len()
        } else {
            sizes[next % sizes.len()]
        };
        next += 1;
        let (chunk, after) = rest.split_at(size.min(rest.len()));
        rest = after;
        splitter.push(chunk);
        assert!(
            splitter.buffered() <= max_line + chunk.len(),
            "the splitter holds {} bytes, more than the limit {max_line} and a chunk of {}",
            splitter.buffered(),
            chunk.len()
        );
        loop {
            match splitter.next_line() {
                Ok(Some(line)) => {
                    let _ = serde_json::from_slice::<JobEvent>(line);
                    got.push(line.to_vec());
                }
                Ok(None) => break,
                Err(e) => break 'feed Some(e),
            }
        }
    };
    assert_eq!((got, refused), expected);
}

/// The complete lines of `stream` up to the first one over `max_line`, and the refusal of that
/// one (a last, unfinished line is refused too once it is over the limit).
fn expected_lines(stream: &[u8], max_line: usize) -> (Vec<Vec<u8>>, Option<LineTooLong>) {
    let mut lines = Vec::new();
    let mut pieces = stream.split(|b| *b == b'\n').peekable();
    while let Some(piece) = pieces.next() {
        let complete = pieces.peek().is_some();
        if piece.len() > max_line {
            return (lines, Some(LineTooLong { max: max_line }));
        }
        if complete {
            lines.push(piece.to_vec());
        }
    }
    (lines, None)
}
