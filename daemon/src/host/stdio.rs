//! The guest's stdout and stderr: kept as a bounded tail, so a panic message (which Rust
//! prints last, to stderr) survives any amount of earlier output.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

#[derive(Clone)]
pub struct TailBuffer {
    inner: Arc<Mutex<VecDeque<u8>>>,
    capacity: usize,
}

impl TailBuffer {
    pub fn new(capacity: usize) -> Self {
        TailBuffer {
            inner: Arc::new(Mutex::new(VecDeque::with_capacity(capacity))),
            capacity,
        }
    }

    pub fn text(&self) -> String {
        let bytes: Vec<u8> = self
            .inner
            .lock()
            .map(|b| b.iter().copied().collect())
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn push(&self, data: &[u8]) {
        if let Ok(mut buf) = self.inner.lock() {
            let data = &data[data.len().saturating_sub(self.capacity)..];
            let overflow = (buf.len() + data.len()).saturating_sub(self.capacity);
            buf.drain(..overflow);
            buf.extend(data);
        }
    }

    /// The message of a Rust panic printed by the guest, if any.
    pub fn panic_message(&self) -> Option<String> {
        let text = self.text();
        let start = text.rfind("panicked at ")?;
        let after = &text[start..];
        // "panicked at src/lib.rs:1:2:\nMESSAGE\nnote: ..."
        let message = after.split_once('\n').map_or(after, |(_, rest)| rest);
        let message = message.split("\nnote:").next().unwrap_or(message).trim();
        Some(if message.is_empty() {
            after.trim().to_string()
        } else {
            message.to_string()
        })
    }
}

impl IsTerminal for TailBuffer {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for TailBuffer {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for TailBuffer {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_tail_and_finds_the_panic() {
        let b = TailBuffer::new(64);
        b.push(&[b'x'; 1000]);
        b.push(b"\nthread '<unnamed>' panicked at src/lib.rs:3:5:\nboom\nnote: run with");
        assert_eq!(b.text().len(), 64);
        assert_eq!(b.panic_message().as_deref(), Some("boom"));
    }
}
