//! Limits and timers, each with a documented default.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Limits and timers of one connection (and of its opening handshake).
///
/// Every limit names what happens when the peer exceeds it. Build one with
/// [`Config::default`] and change the fields you need:
///
/// ```
/// let mut config = ws_proto::Config::default();
/// config.max_message_size = 1 << 20;
/// config.keepalive_interval = Some(std::time::Duration::from_secs(20));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest payload of one received frame, in bytes. Default 16 MiB.
    /// A larger frame fails the connection with close code 1009 before any of
    /// its payload is buffered.
    pub max_frame_size: u64,
    /// Largest received message (all its fragments together), in bytes.
    /// Default 64 MiB. A larger message fails the connection with 1009 as soon
    /// as a frame header announces that it would pass the limit.
    pub max_message_size: u64,
    /// Most frames one received message may have. Default 131 072 (Autobahn
    /// sends 4 MiB in 64-byte fragments, 65 536 frames). Empty or tiny
    /// fragments cost CPU without moving data; past the limit the connection
    /// fails with 1008.
    pub max_fragments: u32,
    /// Largest piece of a frame's payload held back before it is handed out as
    /// a chunk event. Default 64 KiB. A frame that is already whole in the
    /// input buffer is handed out in one piece, whatever its size; a frame
    /// still arriving is handed out every `read_chunk_size` bytes, so a huge
    /// message streams through bounded memory.
    pub read_chunk_size: usize,
    /// Outgoing messages longer than this are sent as several frames of at
    /// most this many payload bytes. Default 16 MiB (the receive frame limit
    /// of most peers, ours included).
    pub send_fragment_size: usize,
    /// Largest HTTP head (request or response line plus headers) of the
    /// opening handshake, in bytes. Default 16 KiB. Past it a server answers
    /// 431; a client fails the handshake.
    pub max_head_size: usize,
    /// Most header lines in the opening handshake. Default 64. Past it a
    /// server answers 431; a client fails the handshake.
    pub max_headers: usize,
    /// Largest body of a non-101 handshake response that a client waits for
    /// (when the response announces it with Content-Length). Default 16 KiB.
    pub max_error_body: usize,
    /// Send a Ping when nothing has been received for this long. Default
    /// `None` (no keepalive).
    pub keepalive_interval: Option<Duration>,
    /// With keepalive on: fail the connection with 1011 when nothing at all
    /// (not even a Pong) arrives this long after the keepalive Ping. Default
    /// 30 s.
    pub keepalive_timeout: Duration,
    /// How long to wait for the peer's Close after ours, and for the peer to
    /// close TCP after the closing handshake. Default `Some(10 s)`. On expiry
    /// the connection is closed with 1006. `None` waits forever.
    pub close_timeout: Option<Duration>,
    /// How long a connection keeps buffers that grew past a few KiB for
    /// large messages (its input buffer, its output buffer, and one that
    /// the adapter hands back once written) after they were last needed.
    /// Default 2 s. While large messages keep coming or going, each one
    /// reuses the memory of the last instead of allocating anew (and, for
    /// the allocator, growing and trimming the heap and faulting in fresh
    /// pages every time); once none has for this long, the buffers are
    /// given back at the connection's next timer
    /// ([`Connection::poll_timeout`](crate::Connection::poll_timeout)
    /// names it), so an idle connection is back to its small size. An
    /// adapter that never calls `handle_timeout` gives them back only at
    /// its next input after that time: it should drive the timer, or set
    /// `Duration::ZERO`, which gives them back as soon as the connection
    /// is idle (one allocation per large message).
    pub release_buffers_after: Duration,
    /// permessage-deflate (RFC 7692). `Some`: a client offers it, a server
    /// accepts an offer it can honour. Default `None`: compression costs CPU
    /// and, with context takeover, about 420 KiB per connection (see
    /// [`crate::deflate`]), and compressing secrets next to attacker-chosen
    /// data leaks them through the compressed size (the CRIME and BREACH
    /// attacks), so it is the application's choice.
    #[cfg(feature = "deflate")]
    pub deflate: Option<crate::deflate::DeflateConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            max_fragments: 1 << 17,
            read_chunk_size: 64 << 10,
            send_fragment_size: 16 << 20,
            max_head_size: 16 << 10,
            max_headers: 64,
            max_error_body: 16 << 10,
            keepalive_interval: None,
            keepalive_timeout: Duration::from_secs(30),
            close_timeout: Some(Duration::from_secs(10)),
            release_buffers_after: Duration::from_secs(2),
            #[cfg(feature = "deflate")]
            deflate: None,
        }
    }
}

impl Config {
    /// The default configuration, one `Arc` for the whole process: every
    /// connection made with it shares it (a pointer each, where a `Config`
    /// of its own is 144 bytes with permessage-deflate built in, 128 without).
    pub fn shared_default() -> Arc<Config> {
        static DEFAULT: OnceLock<Arc<Config>> = OnceLock::new();
        DEFAULT.get_or_init(|| Arc::new(Config::default())).clone()
    }
}
