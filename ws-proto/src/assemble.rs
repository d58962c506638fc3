//! Whole messages out of chunk events.

use bytes::{Bytes, BytesMut};

use crate::event::{CloseInfo, Event, MessageKind};

/// A copy of `data` as [`Bytes`], through a boxed slice: for a small
/// message about 23 fewer instructions than `Bytes::copy_from_slice`, whose
/// way through a `Vec` checks the capacity once more in a call of its own
/// (16-byte binary decode: 493 -> 470 instructions in table A4, 29.2-30.0
/// -> 27.3-28.4 ns in A1).
#[inline]
pub(crate) fn copy_bytes(data: &[u8]) -> Bytes {
    Bytes::from(Box::<[u8]>::from(data))
}

/// A whole message, or a control event passed through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A whole text message.
    Text(String),
    /// A whole binary message.
    Binary(Bytes),
    /// A Ping arrived (the Pong is already queued).
    Ping(Bytes),
    /// A Pong arrived.
    Pong(Bytes),
    /// The connection closed.
    Closed(CloseInfo),
}

impl Message {
    /// The message as a [`MessageRef`], borrowing its data.
    pub fn view(&self) -> MessageRef<'_> {
        match self {
            Message::Text(t) => MessageRef::Text(t),
            Message::Binary(b) => MessageRef::Binary(b),
            Message::Ping(p) => MessageRef::Ping(p),
            Message::Pong(p) => MessageRef::Pong(p),
            Message::Closed(info) => MessageRef::Closed(info),
        }
    }
}

/// A whole message, or a control event, lent by
/// [`Connection::poll_message_with`](crate::Connection::poll_message_with):
/// the data may be the connection's own input buffer, valid for the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRef<'a> {
    /// A whole text message.
    Text(&'a str),
    /// A whole binary message.
    Binary(&'a [u8]),
    /// A Ping arrived (the Pong is already queued).
    Ping(&'a [u8]),
    /// A Pong arrived.
    Pong(&'a [u8]),
    /// The connection closed.
    Closed(&'a CloseInfo),
}

impl MessageRef<'_> {
    /// An owned copy.
    pub fn to_message(&self) -> Message {
        match *self {
            MessageRef::Text(t) => Message::Text(t.to_owned()),
            MessageRef::Binary(b) => Message::Binary(copy_bytes(b)),
            MessageRef::Ping(p) => Message::Ping(copy_bytes(p)),
            MessageRef::Pong(p) => Message::Pong(copy_bytes(p)),
            MessageRef::Closed(info) => Message::Closed(info.clone()),
        }
    }
}

/// Joins chunk events into whole messages.
///
/// A message that arrives as one chunk is passed through without a copy; a
/// chunked one is copied once into a buffer. Memory is bounded by the
/// connection's [`Config::max_message_size`](crate::Config::max_message_size),
/// which the connection enforces before the chunks reach here.
///
/// ```
/// use ws_proto::{Assembler, Event, Message};
/// let mut asm = Assembler::new();
/// assert_eq!(asm.push(Event::Text { data: "Hel".into(), fin: false }), None);
/// assert_eq!(
///     asm.push(Event::Text { data: "lo".into(), fin: true }),
///     Some(Message::Text("Hello".into()))
/// );
/// ```
#[derive(Debug, Default)]
pub struct Assembler {
    kind: Option<MessageKind>,
    buf: BytesMut,
}

impl Assembler {
    /// An assembler with no message in progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a message has begun and not ended.
    pub fn in_progress(&self) -> bool {
        self.kind.is_some()
    }

    /// Number of bytes of an unfinished message held.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds one event; returns a message when one is complete.
    ///
    /// Chunk events must come from one connection, in order; the connection
    /// guarantees that a message's chunks all have the same kind.
    pub fn push(&mut self, event: Event) -> Option<Message> {
        let (kind, data, fin) = match event {
            Event::Text { data, fin } => (MessageKind::Text, data, fin),
            Event::Binary { data, fin } => (MessageKind::Binary, data, fin),
            Event::Ping(p) => return Some(Message::Ping(p)),
            Event::Pong(p) => return Some(Message::Pong(p)),
            Event::Closed(info) => {
                self.kind = None;
                self.buf = BytesMut::new();
                return Some(Message::Closed(info));
            }
        };
        let whole = if self.kind.is_none() && fin {
            data
        } else {
            self.kind = Some(kind);
            self.buf.extend_from_slice(&data);
            if !fin {
                return None;
            }
            self.kind = None;
            std::mem::take(&mut self.buf).freeze()
        };
        Some(match kind {
            MessageKind::Binary => Message::Binary(whole),
            // Every text chunk is valid UTF-8 and chunks break only at code
            // point boundaries, so the whole is valid; the check cannot fail
            // for events from a Connection. `forbid(unsafe_code)` rules out
            // the unchecked conversion, so the text is checked again, by
            // SIMD (about ten times std's speed on non-ASCII text), and
            // copied once into the String.
            MessageKind::Text => Message::Text(match crate::utf8::check(&whole, &mut None) {
                Some(s) => s.to_owned(),
                None => String::from_utf8_lossy(&whole).into_owned(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_chunk_binary_is_not_copied() {
        let data = Bytes::from(vec![1u8; 100]);
        let ptr = data.as_ptr();
        let mut asm = Assembler::new();
        match asm.push(Event::Binary { data, fin: true }) {
            Some(Message::Binary(b)) => assert_eq!(b.as_ptr(), ptr),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn chunks_join_and_state_resets() {
        let mut asm = Assembler::new();
        assert_eq!(
            asm.push(Event::Binary {
                data: Bytes::from_static(b"ab"),
                fin: false
            }),
            None
        );
        assert_eq!(asm.buffered(), 2);
        assert_eq!(
            asm.push(Event::Binary {
                data: Bytes::from_static(b"cd"),
                fin: true
            }),
            Some(Message::Binary(Bytes::from_static(b"abcd")))
        );
        assert_eq!(asm.buffered(), 0);
        assert_eq!(
            asm.push(Event::Text {
                data: Bytes::from_static(b"x"),
                fin: true
            }),
            Some(Message::Text("x".into()))
        );
        assert_eq!(
            asm.push(Event::Ping(Bytes::from_static(b"p"))),
            Some(Message::Ping(Bytes::from_static(b"p")))
        );
    }
}
