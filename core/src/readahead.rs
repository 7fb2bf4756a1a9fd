//! Reading a capture's source on a thread of its own, a few blocks ahead of the parser:
//! decompressing a gzipped capture then overlaps with the dissection on another core.
//! The bytes and any read error arrive in order.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Mutex;
use std::thread;

use crate::reader::{read_full, Source};

/// One block of what the thread read.
pub const BLOCK: usize = 1 << 20;
/// Blocks read ahead and not yet taken (memory: `AHEAD + 2` blocks, with the one being
/// filled and the one being copied out).
const AHEAD: usize = 4;

enum Msg {
    /// a block and how many of its bytes are data
    Data(Vec<u8>, usize),
    Failed(io::Error),
}

/// A `Read` whose source is read by a background thread. The thread ends at the source's
/// end or error, or at its next block once this is dropped.
pub struct ReadAhead {
    blocks: Mutex<Receiver<Msg>>,
    /// blocks handed back for the thread to fill again (no fresh pages per block)
    spent: SyncSender<Vec<u8>>,
    current: Option<Vec<u8>>,
    len: usize,
    pos: usize,
    done: bool,
    /// an error that came after bytes already handed out: the next read returns it
    failed: Option<io::Error>,
}

impl ReadAhead {
    /// Start reading `src` ahead; when no thread can be started, `src` comes back (to be
    /// read directly).
    pub fn spawn(src: Source) -> Result<ReadAhead, Source> {
        let (tx, blocks) = sync_channel::<Msg>(AHEAD);
        let (spent, free) = sync_channel::<Vec<u8>>(AHEAD + 2);
        // the source moves to the thread once it runs, so a failed start keeps it here
        let (go, started) = sync_channel::<Source>(1);
        let handle = thread::Builder::new()
            .name("otsec-read".into())
            .spawn(move || {
                let Ok(mut src) = started.recv() else { return };
                loop {
                    let mut block = free.try_recv().unwrap_or_else(|_| vec![0; BLOCK]);
                    match read_full(&mut *src, &mut block) {
                        Ok(0) => return, // the end: the closed channel says so
                        Ok(n) => {
                            if tx.send(Msg::Data(block, n)).is_err() {
                                return; // nobody reads any more
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Msg::Failed(e));
                            return;
                        }
                    }
                }
            });
        if handle.is_err() {
            return Err(src);
        }
        go.send(src).map_err(|unsent| unsent.0)?;
        Ok(ReadAhead {
            blocks: Mutex::new(blocks),
            spent,
            current: None,
            len: 0,
            pos: 0,
            done: false,
            failed: None,
        })
    }
}

impl ReadAhead {
    /// The next block: waits for it when `wait`, else only takes one that is ready.
    fn next_block(&mut self, wait: bool) -> io::Result<bool> {
        if let Some(block) = self.current.take() {
            let _ = self.spent.try_send(block);
        }
        let rx = match self.blocks.get_mut() {
            Ok(rx) => rx,
            Err(poisoned) => poisoned.into_inner(),
        };
        let next = if wait {
            rx.recv().map_err(|_| TryRecvError::Disconnected)
        } else {
            rx.try_recv()
        };
        match next {
            Ok(Msg::Data(block, n)) => {
                self.current = Some(block);
                self.len = n;
                self.pos = 0;
                Ok(true)
            }
            Ok(Msg::Failed(e)) => {
                self.done = true;
                Err(e)
            }
            Err(TryRecvError::Empty) => Ok(false),
            Err(TryRecvError::Disconnected) => {
                self.done = true;
                Ok(false)
            }
        }
    }
}

impl Read for ReadAhead {
    /// As much as `out` takes of what is read ahead; waits only while nothing is copied.
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut copied = 0;
        while copied < out.len() {
            if self.pos >= self.len {
                if self.done {
                    break;
                }
                match self.next_block(copied == 0) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) if copied == 0 => return Err(e),
                    Err(e) => {
                        self.failed = Some(e); // after the bytes before it
                        break;
                    }
                }
            }
            let block = self.current.as_deref().unwrap_or_default();
            let n = (out.len() - copied).min(self.len - self.pos);
            out[copied..copied + n].copy_from_slice(&block[self.pos..self.pos + n]);
            self.pos += n;
            copied += n;
        }
        if copied == 0 {
            if let Some(e) = self.failed.take() {
                return Err(e);
            }
        }
        Ok(copied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing {
        left: usize,
    }

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::other("disk gone"));
            }
            let n = buf.len().min(self.left).min(1000);
            buf[..n].fill(7);
            self.left -= n;
            Ok(n)
        }
    }

    fn read_all(mut r: impl Read) -> (Vec<u8>, Option<String>) {
        let mut out = Vec::new();
        let mut buf = vec![0; 777_777];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }

    #[test]
    fn the_bytes_arrive_whole_and_in_order() {
        let data: Vec<u8> = (0..3 * BLOCK + 12_345).map(|i| (i % 251) as u8).collect();
        let r = ReadAhead::spawn(Box::new(io::Cursor::new(data.clone())))
            .ok()
            .unwrap();
        assert_eq!(read_all(r), (data, None));
    }

    #[test]
    fn an_error_comes_after_the_bytes_read_before_it() {
        let r = ReadAhead::spawn(Box::new(Failing { left: 2500 }))
            .ok()
            .unwrap();
        let (bytes, err) = read_all(r);
        assert_eq!(bytes, vec![7; 2500]);
        assert_eq!(err.as_deref(), Some("disk gone"));
    }

    #[test]
    fn dropping_the_reader_ends_the_thread() {
        let data = vec![1u8; 8 * BLOCK];
        let mut r = ReadAhead::spawn(Box::new(io::Cursor::new(data)))
            .ok()
            .unwrap();
        let mut buf = [0u8; 10];
        assert_eq!(r.read(&mut buf).unwrap(), 10);
        drop(r); // the thread's next send fails and it returns: nothing to join, no hang
    }
}
