//! Splitting a newline-delimited stream (a job's NDJSON output) into lines, with a bound on how
//! long a line may be.
//!
//! The bytes arrive in chunks that fall anywhere; a line is complete once its `\n` has arrived.
//! A server (or anything in the middle) that never sends a newline would otherwise make the
//! follower buffer without end, so a line longer than the limit is refused instead.

/// The longest line a follower accepts. The server's longest line is an output event carrying
/// one worker frame (at most 1 MiB, so about 1.4 MiB once base64-encoded); this leaves room
/// above it.
pub const MAX_LINE: usize = 2 * 1024 * 1024;

/// A line longer than the limit: the stream is not what a muster server sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a line of the stream is longer than {max} bytes")]
pub struct LineTooLong {
    pub max: usize,
}

/// Bytes fed in chunks, lines taken out whole (without their `\n`).
///
/// Holds at most the limit plus one chunk: the unfinished line and the chunk just pushed.
#[derive(Debug)]
pub struct LineSplitter {
    buffer: Vec<u8>,
    /// Where the first line not yet taken starts in `buffer`.
    start: usize,
    /// `buffer[start..scanned]` holds no newline, so a search resumes here (a long line fed in
    /// small chunks is searched once, not once per chunk).
    scanned: usize,
    max_line: usize,
}

impl LineSplitter {
    /// Refuses lines longer than `max_line` bytes (not counting the `\n`).
    pub fn new(max_line: usize) -> Self {
        Self {
            buffer: Vec::new(),
            start: 0,
            scanned: 0,
            max_line,
        }
    }

    /// Adds bytes received from the stream.
    pub fn push(&mut self, chunk: &[u8]) {
        // Lines already taken are dropped here, once per chunk, rather than once per line.
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete line, or `None` until more bytes are pushed.
    pub fn next_line(&mut self) -> Result<Option<&[u8]>, LineTooLong> {
        let from = self.scanned.max(self.start);
        match self.buffer[from..].iter().position(|b| *b == b'\n') {
            Some(offset) => {
                let end = from + offset;
                if end - self.start > self.max_line {
                    return Err(LineTooLong { max: self.max_line });
                }
                let line = self.start..end;
                self.start = end + 1;
                self.scanned = self.start;
                Ok(Some(&self.buffer[line]))
            }
            None => {
                self.scanned = self.buffer.len();
                if self.buffer.len() - self.start > self.max_line {
                    return Err(LineTooLong { max: self.max_line });
                }
                if self.start == self.buffer.len() {
                    // Everything was taken: give the memory back while the stream is quiet.
                    self.buffer = Vec::new();
                    self.start = 0;
                    self.scanned = 0;
                }
                Ok(None)
            }
        }
    }

    /// Bytes held: taken lines not yet dropped and the line under way.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(splitter: &mut LineSplitter) -> Result<Vec<Vec<u8>>, LineTooLong> {
        let mut out = Vec::new();
        while let Some(line) = splitter.next_line()? {
            out.push(line.to_vec());
        }
        Ok(out)
    }

    #[test]
    fn lines_split_across_chunks_come_out_whole() {
        let mut splitter = LineSplitter::new(16);
        splitter.push(b"{\"a\":1}\n{\"b\"");
        assert_eq!(
            lines_of(&mut splitter).unwrap(),
            vec![b"{\"a\":1}".to_vec()]
        );
        splitter.push(b":2}");
        assert_eq!(lines_of(&mut splitter).unwrap(), Vec::<Vec<u8>>::new());
        splitter.push(b"\n\nx\n");
        assert_eq!(
            lines_of(&mut splitter).unwrap(),
            vec![b"{\"b\":2}".to_vec(), Vec::new(), b"x".to_vec()]
        );
        assert_eq!(
            splitter.buffered(),
            0,
            "nothing is kept once every line is taken"
        );
    }

    #[test]
    fn a_line_longer_than_the_limit_is_refused_instead_of_buffered() {
        let mut splitter = LineSplitter::new(8);
        for _ in 0..8 {
            splitter.push(b"a");
            assert_eq!(splitter.next_line(), Ok(None));
        }
        splitter.push(b"a");
        assert_eq!(splitter.next_line(), Err(LineTooLong { max: 8 }));

        // Also when the newline came in the same chunk as the excess.
        let mut splitter = LineSplitter::new(8);
        splitter.push(b"12345678\n123456789\n");
        assert_eq!(splitter.next_line(), Ok(Some(&b"12345678"[..])));
        assert_eq!(splitter.next_line(), Err(LineTooLong { max: 8 }));
    }

    #[test]
    fn every_line_of_a_large_chunk_comes_out() {
        let chunk: Vec<u8> = b"{}\n".repeat(200_000);
        let mut splitter = LineSplitter::new(MAX_LINE);
        splitter.push(&chunk);
        let mut count = 0;
        while let Some(line) = splitter.next_line().unwrap() {
            assert_eq!(line, b"{}");
            count += 1;
        }
        assert_eq!(count, 200_000);
    }
}
