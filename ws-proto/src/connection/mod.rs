//! The connection state machine (RFC 6455 §5-§7).
//!
//! Every state change lives in this module: the frame and handshake parsers
//! return values and never change state.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::assemble::{Assembler, Message, MessageRef};
use crate::close::CloseCode;
use crate::config::Config;
use crate::error::{ConnectionError, ProtocolError, SendError};
use crate::event::{CloseInfo, Event, Initiator, MessageKind};
use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::mask::{apply_mask, extend_masked, extend_masked_at, mask_into};
use crate::utf8::Utf8Validator;

mod input;
use input::Input;

/// RSV1: the first frame of a compressed message (RFC 7692 §6).
const RSV1: u8 = 0b100;

/// Input capacity an idle connection keeps; more is released once every
/// buffered byte has been handed out and `Config::release_buffers_after`
/// has passed since input last needed it.
#[cfg(not(fuzzing))]
const IDLE_INPUT_CAPACITY: usize = 4 << 10;
/// Small under the fuzzer, whose inputs are a few KiB, so that it keeps
/// and gives back buffers.
#[cfg(fuzzing)]
const IDLE_INPUT_CAPACITY: usize = 64;

/// The same for the output buffer, once empty.
#[cfg(not(fuzzing))]
const IDLE_OUTPUT_CAPACITY: usize = 4 << 10;
#[cfg(fuzzing)]
const IDLE_OUTPUT_CAPACITY: usize = 64;

/// Largest binary frame `poll_message_with` waits for to lend it whole
/// from the input; a larger one that arrives in pieces goes into its
/// buffer as it comes, as for `poll_message`.
const LEND_WAIT: usize = 64 << 10;

/// The same for a text frame. Text waited for is checked as it arrives (to
/// fail as early as `poll_message`) and again whole (to lend it as a
/// `&str`): larger text goes into its `String` as it comes, checked once.
const LEND_WAIT_TEXT: usize = 4 << 10;

/// What `poll_message_with` finds at the head of the input.
enum Lend {
    /// A whole frame: its header's length, its payload's, and whether it
    /// is text (unmasked already).
    Whole { n: usize, len: usize, text: bool },
    /// The rest of a frame to lend (or of its header) is still to come.
    Wait,
    /// Anything else: the general path.
    General,
}

/// While [`Connection::handle_data_reply`] lends a frame from its caller's
/// buffer: if the closure panics, the input (the frame, unmasked, and what
/// follows it) goes into the connection as `handle_data` would have put it,
/// so that the next poll lends the frame again.
struct KeepInput<'a> {
    inbuf: &'a mut Input,
    fed: &'a mut u64,
    unmasked_to: &'a mut u64,
    lent_unmasked: &'a mut bool,
    /// The lent frame and the input after it; `None` once lent.
    input: Option<(&'a [u8], &'a [u8])>,
}

impl Drop for KeepInput<'_> {
    fn drop(&mut self) {
        let Some((frame, rest)) = self.input.take() else {
            return;
        };
        // `fed` counts the frame already: it ends there.
        *self.unmasked_to = (*self.unmasked_to).max(*self.fed);
        *self.lent_unmasked = true;
        self.inbuf.reserve(frame.len() + rest.len());
        self.inbuf.extend_from_slice(frame);
        self.inbuf.extend_from_slice(rest);
        *self.fed += rest.len() as u64;
    }
}

/// What [`Connection::in_place`] did with a read.
enum InPlace<R, F> {
    /// The message that began it was lent; the rest was taken in.
    Lent(R),
    /// It was taken in (and found wrong: the next poll reports it).
    Consumed(F),
    /// Nothing was done with it.
    Not(F),
}

/// Payloads from this size on that [`Connection::send_owned`] takes over
/// are written from their own `Bytes` (a copy of fewer bytes costs less
/// than the extra buffer to write).
pub const OWNED_MIN: usize = 2048;

/// A whole binary message up to this size leaves `poll_message` as a copy
/// rather than a split of the input.
const SMALL_COPY: usize = 128;

/// Text unmasked per block on the stack by the direct text path: large
/// enough that the validator's and the copy's cost per call is small
/// against the block. Only the block is read again (by the validator, then
/// by the copy into the `String`); the input and the `String` stream
/// through once.
const TEXT_BLOCK: usize = 16 << 10;

/// Blocks for shorter pieces (small reads, small messages, or a frame's
/// last bytes in the next read): the block is zeroed once per piece, so a
/// piece under 32 KiB gets the largest block that is at most a quarter of
/// it (at least the short one). A 16 KiB message unmasked through the
/// large block was zeroing as many bytes as it carried (`memset` 1.3-1.6%
/// of a server's samples echoing 16 KiB text, BENCHMARKS.md session 26).
/// From 32 KiB on the large block costs at most half the piece to zero,
/// and saves the smaller blocks' calls per block (64 KiB reads of large
/// messages keep the block they were measured with).
const TEXT_BLOCK_SHORT: usize = 1 << 10;
const TEXT_BLOCK_MID: usize = 4 << 10;

/// Validates masked text into `out`, unmasking it block by block on the
/// stack (`offset` is the mask phase of `src[0]`).
fn feed_masked(
    utf8: &mut Utf8Validator,
    src: &[u8],
    mask: [u8; 4],
    offset: usize,
    out: &mut String,
) -> Result<(), crate::utf8::Utf8Error> {
    if src.len() < 4 * TEXT_BLOCK_MID {
        feed_masked_in::<TEXT_BLOCK_SHORT>(utf8, src, mask, offset, out)
    } else if src.len() < 2 * TEXT_BLOCK {
        feed_masked_in::<TEXT_BLOCK_MID>(utf8, src, mask, offset, out)
    } else {
        feed_masked_in::<TEXT_BLOCK>(utf8, src, mask, offset, out)
    }
}

/// [`feed_masked`] through a block of `N` bytes, a multiple of 4 (so that
/// the mask phase is the same at the start of each block).
fn feed_masked_in<const N: usize>(
    utf8: &mut Utf8Validator,
    src: &[u8],
    mask: [u8; 4],
    offset: usize,
    out: &mut String,
) -> Result<(), crate::utf8::Utf8Error> {
    const { assert!(N % 4 == 0) };
    let mut block = [0u8; N];
    for chunk in src.chunks(N) {
        let b = &mut block[..chunk.len()];
        mask_into(b, chunk, mask, offset);
        utf8.feed_into(b, out)?;
    }
    Ok(())
}

/// Room in `text` for the rest of the frame being received (at most
/// [`RESERVE_AHEAD_MAX`] ahead), so that a message arriving in many reads
/// is not copied each time its `String` doubles.
fn reserve_text(text: &mut String, remaining: u64) {
    let want = reserve_ahead(remaining);
    if text.capacity() - text.len() < want {
        text.reserve_exact(want);
    }
}

/// At most this much room is reserved ahead for the rest of a frame being
/// received (its header announced the size; the bytes are not here yet).
/// Only once payload of the frame arrives; pages not yet written are not
/// resident.
const RESERVE_AHEAD_MAX: usize = 1 << 20;

/// Room reserved past the end of a large frame being received, for the
/// start of the next frame arriving in the same read (at most the frame's
/// size).
const FOLLOW_ROOM: usize = 64 << 10;

/// Room to reserve for `remaining` bytes still to come.
fn reserve_ahead(remaining: u64) -> usize {
    remaining.min(RESERVE_AHEAD_MAX as u64) as usize
}

/// A [`Reply`] on a connection's sending fields alone, so that a message
/// lent from its other fields can be borrowed at the same time.
macro_rules! reply {
    ($c:ident, $ready:expr) => {
        Reply {
            out: &mut $c.out,
            rng: &mut $c.rng,
            #[cfg(feature = "deflate")]
            deflate: &mut $c.deflate,
            max: $c.config.send_fragment_size.max(1),
            ready: $ready,
        }
    };
}

/// Which end of the connection this is. It decides the masking rules: "a
/// client MUST mask all frames that it sends to the server" and "A server
/// MUST NOT mask any frames that it sends to the client" (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that opened the connection.
    Client,
    /// The end that accepted it.
    Server,
}

/// Where the closing handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Data flows both ways.
    Open,
    /// We sent a Close and wait for the peer's; received data is still
    /// delivered, nothing more can be sent.
    Closing,
    /// The closing handshake is complete, or the connection failed. The
    /// [`Event::Closed`] is queued or delivered.
    Closed,
}

/// What [`Connection::poll_transmit`] asks of the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Transmit {
    /// Nothing to write now.
    Nothing,
    /// This many bytes were appended to the buffer: write them.
    Data(usize),
    /// Every byte has been handed out: after writing them, shut down the
    /// write side of the socket (TCP FIN, or TLS close_notify then FIN).
    /// Reported once.
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShutdownState {
    NotYet,
    Pending,
    Done,
}

/// The frame being received.
#[derive(Debug, Clone, Copy)]
struct RxFrame {
    header: FrameHeader,
    /// Payload bytes not yet handed out (some may already be in `inbuf`).
    remaining: u64,
    /// Payload bytes handed out so far (the mask phase of `inbuf[0]`).
    consumed: u64,
    /// Bytes at the start of `inbuf` already unmasked and validated.
    checked: usize,
}

/// Where the end of the input buffer stands in the peer's frame stream,
/// when `handle_data` knows it: it then unmasks payload while copying it
/// in (one pass) and reads the headers that follow on its own.
#[derive(Debug, Clone, Copy)]
struct Scan {
    /// Payload bytes of the current frame still to come; 0 at a header.
    left: u64,
    mask: [u8; 4],
    /// The mask phase of the next payload byte.
    phase: usize,
    /// The rest of the frame may be reserved ahead: its header passed
    /// `check_header`, or at least announced a data frame within
    /// `max_frame_size`.
    reserve: bool,
    /// Stream offset where the frame's bytes in `inbuf` begin.
    base: u64,
}

/// `handle_data` reads a header itself only with at least this much input
/// in hand, and keeps unmasking on the way in only for frames whose payload
/// is at least this long: for small frames the second header parse costs
/// more than the pass it saves.
#[cfg(not(fuzzing))]
const SCAN_MIN: usize = 4096;
/// Small under the fuzzer, whose inputs are a few KiB, so that it reaches
/// this path.
#[cfg(fuzzing)]
const SCAN_MIN: usize = 8;

/// A WebSocket connection after the opening handshake: bytes in, events and
/// bytes out. See the [crate documentation](crate) for the run loop.
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Arc<Config>,
    /// Payload lengths from this on are not taken by `small_message`:
    /// one past the least of the frame, message and chunk limits, or 0
    /// when no fragment is allowed (every limit checked in one compare).
    small_end: usize,
    state: State,
    now: Instant,
    rng: Option<Box<StdRng>>,
    /// Extension-claimed RSV bits (none until an extension is negotiated).
    rsv_allowed: u8,
    /// permessage-deflate, once negotiated.
    #[cfg(feature = "deflate")]
    deflate: Option<Box<crate::deflate::Codec>>,

    // Receiving.
    inbuf: Input,
    /// Input that follows `inbuf`, started by `handle_data` at the header
    /// of a large frame when `inbuf` holds only whole frames: the next
    /// frame gets a buffer of its size at once, and the start of it is not
    /// moved (or copied into a new allocation) when the earlier frames
    /// leave. The poll path takes it as `inbuf` when `inbuf` is used up.
    next: BytesMut,
    /// The allocation of the last `inbuf` that `next` replaced, emptied: the
    /// next `next` reuses it once the messages taken from it are dropped
    /// (memory still in cache, no page faults). Dropped when idle.
    spare: BytesMut,
    /// Bytes ever added to `inbuf` and `next` or consumed straight from
    /// the input: the stream offset of the end of `next`.
    fed: u64,
    /// Stream offset before which every payload byte is unmasked (and
    /// after which none is). Headers are never changed.
    unmasked_to: u64,
    /// Set while `handle_data` knows where the end of `inbuf` stands.
    scan: Option<Scan>,
    rx: Option<RxFrame>,
    rx_msg: Option<MessageKind>,
    rx_msg_len: u64,
    rx_msg_frames: u32,
    /// The message being received is compressed (its first frame had RSV1).
    rx_compressed: bool,
    /// Decompressed bytes of that message so far.
    #[cfg_attr(not(feature = "deflate"), allow(dead_code))]
    rx_msg_out: u64,
    rx_utf8: Utf8Validator,
    /// The next text message is built as a `String` while it is validated
    /// (`poll_message` was called last, not `poll_event`).
    whole_text: bool,
    /// The text message being received is built in `rx_text`.
    rx_whole_text: bool,
    /// The text of that message so far, each byte validated once.
    rx_text: String,
    /// `rx_text` holds a whole message: the event just returned stands
    /// for it.
    rx_text_done: bool,
    /// Whole text messages that `handle_data` built straight from its input
    /// (every byte after them is still to be parsed): the polls hand them
    /// out first. At most what one call of `handle_data` brought.
    ready: VecDeque<String>,
    /// Joins binary messages and compressed text for `poll_message`.
    asm: Assembler,
    /// For `poll_message_with`, waiting for the rest of a text frame at the
    /// head of `inbuf`: the frame's stream offset, the payload bytes checked
    /// so far and the validator's state after them.
    lend_wait: Option<(u64, usize, Utf8Validator)>,
    /// A message taken out for a `poll_message_with` closure that
    /// panicked: the next poll hands it out again.
    unlent: Option<Box<Message>>,
    /// A small frame at the head of `inbuf` may be unmasked in place
    /// already (`poll_message_with` unmasked it and its closure panicked,
    /// or it waited for the rest of it): `unmasked_to` says how far. False
    /// lets the hot path skip that sum for small frames.
    lent_unmasked: bool,
    /// Input that `handle_data` found bad, for the next poll to report.
    rx_failed: Option<ProtocolError>,
    /// When large buffers were last needed: input of more than
    /// `IDLE_INPUT_CAPACITY` between two idle points, or a large output
    /// buffer handed back by `reuse_output`. Buffers grown past the idle
    /// sizes are kept until `Config::release_buffers_after` after it.
    busy_at: Instant,
    /// `fed` at the last idle point.
    fed_at_idle: u64,
    /// Bytes of a code point split across frames, handed out with the next chunk.
    carry: [u8; 4],
    carry_len: u8,
    /// False once a Close arrived or the connection failed: input is ignored.
    reading: bool,
    eof: bool,

    // Sending.
    out: Vec<u8>,
    /// Payloads the connection took over ([`Connection::send_owned`]),
    /// each to leave right after `out[..position]` (its frame's header):
    /// written from the `Bytes` itself, never copied into `out`.
    out_owned: Vec<(usize, Bytes)>,
    pending_pong: Option<Bytes>,
    tx_msg: Option<MessageKind>,
    /// The streamed message being sent is compressed.
    tx_compressed: bool,
    tx_utf8: Utf8Validator,
    close_sent: bool,

    // Ending.
    /// Boxed: set once, at the end, and 56 bytes smaller in every
    /// connection until then.
    closed: Option<Box<CloseInfo>>,
    closed_delivered: bool,
    shutdown: ShutdownState,
    /// No more input is needed: the adapter may drop the socket once output
    /// is written.
    finished: bool,

    // Timers.
    last_rx: Instant,
    ping_sent: Option<Instant>,
    ping_counter: u64,
    close_deadline: Option<Instant>,
    linger_deadline: Option<Instant>,
}

impl Connection {
    /// A connection whose opening handshake is done.
    ///
    /// `now` starts the keepalive clock. `seed` feeds the random number
    /// generator of the masking keys (a client needs it: "The masking key is a
    /// 32-bit value chosen at random by the client", §5.3); a server ignores
    /// it. Use a seed from a strong entropy source in production, a fixed one
    /// in tests.
    ///
    /// `config` may be shared: an `Arc<Config>` that many connections hold
    /// costs each of them a pointer, where a `Config` of its own costs 144
    /// bytes with permessage-deflate built in (the servers of ws-smol and
    /// ws-blocking share theirs).
    pub fn new(
        role: Role,
        config: impl Into<Arc<Config>>,
        now: Instant,
        seed: [u8; 32],
    ) -> Connection {
        let config = config.into();
        let rng = match role {
            Role::Client => Some(Box::new(StdRng::from_seed(seed))),
            Role::Server => None,
        };
        let small_end = if config.max_fragments == 0 {
            0
        } else {
            let frame = config.max_frame_size.min(config.max_message_size);
            usize::try_from(frame)
                .unwrap_or(usize::MAX)
                .min(config.read_chunk_size)
                .saturating_add(1)
        };
        Connection {
            role,
            small_end,
            config,
            state: State::Open,
            now,
            rng,
            rsv_allowed: 0,
            #[cfg(feature = "deflate")]
            deflate: None,
            inbuf: Input::new(),
            next: BytesMut::new(),
            spare: BytesMut::new(),
            fed: 0,
            unmasked_to: 0,
            scan: None,
            rx: None,
            rx_msg: None,
            rx_msg_len: 0,
            rx_msg_frames: 0,
            rx_compressed: false,
            rx_msg_out: 0,
            rx_utf8: Utf8Validator::new(),
            whole_text: false,
            rx_whole_text: false,
            rx_text: String::new(),
            rx_text_done: false,
            ready: VecDeque::new(),
            asm: Assembler::new(),
            lend_wait: None,
            unlent: None,
            lent_unmasked: false,
            rx_failed: None,
            busy_at: now,
            fed_at_idle: 0,
            carry: [0; 4],
            carry_len: 0,
            reading: true,
            eof: false,
            out: Vec::new(),
            out_owned: Vec::new(),
            pending_pong: None,
            tx_msg: None,
            tx_compressed: false,
            tx_utf8: Utf8Validator::new(),
            close_sent: false,
            closed: None,
            closed_delivered: false,
            shutdown: ShutdownState::NotYet,
            finished: false,
            last_rx: now,
            ping_sent: None,
            ping_counter: 0,
            close_deadline: None,
            linger_deadline: None,
        }
    }

    /// Turns on permessage-deflate with negotiated `params` (the opening
    /// handshake does this when both sides agreed).
    #[cfg(feature = "deflate")]
    pub(crate) fn set_deflate(
        &mut self,
        params: crate::deflate::DeflateParams,
        config: &crate::deflate::DeflateConfig,
    ) {
        self.deflate = Some(Box::new(crate::deflate::Codec::new(
            self.role, params, config,
        )));
        self.rsv_allowed |= RSV1;
    }

    // ----- getters -----------------------------------------------------------

    /// The negotiated permessage-deflate parameters, if it is in use.
    #[cfg(feature = "deflate")]
    pub fn deflate(&self) -> Option<&crate::deflate::DeflateParams> {
        self.deflate.as_deref().map(|c| c.params())
    }

    /// Client or server.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Open, Closing or Closed.
    pub fn state(&self) -> State {
        self.state
    }

    /// The limits and timers in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Bytes queued for sending and not yet taken by
    /// [`poll_transmit`](Self::poll_transmit), like the browser's
    /// `bufferedAmount`. An adapter adds what it took and has not yet written.
    pub fn buffered_amount(&self) -> usize {
        let owned = if self.out_owned.is_empty() {
            0
        } else {
            self.out_owned.iter().map(|(_, b)| b.len()).sum::<usize>()
        };
        self.out.len() + owned + self.pending_pong.as_ref().map_or(0, |p| p.len() + 6)
    }

    /// Whether [`poll_transmit`](Self::poll_transmit) has anything to hand
    /// out: bytes, or the shutdown. An adapter can skip its write path when
    /// it has nothing of its own to write either.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
            || self.pending_pong.is_some()
            || self.shutdown == ShutdownState::Pending
    }

    /// Bytes of input buffer held (capacity, or the allocation a message
    /// taken from it shares, which it keeps alive), for memory accounting.
    pub fn input_capacity(&self) -> usize {
        self.inbuf.held() + self.next.capacity() + self.spare.capacity()
    }

    /// Bytes of output buffer held (capacity), for memory accounting.
    pub fn output_capacity(&self) -> usize {
        self.out.capacity()
    }

    /// Hands back a buffer that [`poll_transmit`](Self::poll_transmit) (or
    /// [`poll_transmit_owned`](Self::poll_transmit_owned)) filled, once its
    /// bytes are written, still holding them: the connection queues its
    /// next output there instead of in a new allocation. An adapter that
    /// passes an empty buffer to each `poll_transmit` then moves one buffer
    /// round, allocated once, while large messages leave.
    ///
    /// The buffer's length tells a large batch of output (more than a few
    /// KiB) from a small one that happens to sit in a large buffer: the
    /// connection keeps a large buffer until
    /// [`Config::release_buffers_after`] has passed since the last large
    /// batch, then gives it back (with its timer, see
    /// [`poll_timeout`](Self::poll_timeout), or here). A buffer of a few KiB is the
    /// adapter's to keep; it is dropped here, as is a buffer when output is
    /// queued already or when `release_buffers_after` is zero. `now` is
    /// when it was written.
    pub fn reuse_output(&mut self, now: Instant, mut buf: Vec<u8>) {
        let large = buf.len() > IDLE_OUTPUT_CAPACITY;
        if large {
            // Large output went, whether or not this buffer is kept.
            self.busy_at = self.busy_at.max(now);
        }
        if buf.capacity() <= IDLE_OUTPUT_CAPACITY
            || !self.out.is_empty()
            || self.out.capacity() >= buf.capacity()
            || self.config.release_buffers_after.is_zero()
        {
            return;
        }
        if !large && self.hold_end().is_some_and(|d| now >= d) {
            // Large output stopped long enough ago: not kept.
            return;
        }
        buf.clear();
        self.out = buf;
    }

    /// Whether no input is buffered or expected within a message: the
    /// point at which buffers grown for input may be given back.
    #[inline]
    fn input_idle(&self) -> bool {
        self.inbuf.is_empty() && self.rx.is_none() && self.rx_msg.is_none()
    }

    /// Input buffers grown for large messages and not in use.
    fn large_idle_input(&self) -> bool {
        self.input_idle() && (self.spare.capacity() > 0 || self.inbuf.held() > IDLE_INPUT_CAPACITY)
    }

    /// An output buffer grown for large messages and empty.
    fn large_idle_output(&self) -> bool {
        self.out.is_empty() && self.out.capacity() > IDLE_OUTPUT_CAPACITY
    }

    /// When the hold of grown buffers ends (`None`: never).
    fn hold_end(&self) -> Option<Instant> {
        self.busy_at.checked_add(self.config.release_buffers_after)
    }

    /// When buffers grown for large messages are to be given back, if any
    /// are held.
    fn release_due(&self) -> Option<Instant> {
        if !self.large_idle_input() && !self.large_idle_output() {
            return None;
        }
        self.hold_end()
    }

    /// Gives back the buffers grown for large messages that are not in use,
    /// once `Config::release_buffers_after` has passed since they were
    /// last needed.
    fn release_buffers(&mut self, now: Instant) {
        if self.release_due().is_none_or(|d| now < d) {
            return;
        }
        if self.large_idle_input() {
            self.spare = BytesMut::new();
            if self.inbuf.held() > IDLE_INPUT_CAPACITY {
                self.inbuf = Input::new();
            }
        }
        if self.large_idle_output() {
            self.out = Vec::new();
        }
    }

    /// Bytes received and not yet handed out as events.
    pub fn buffered_input(&self) -> usize {
        self.inbuf.len()
            + self.next.len()
            + self.carry_len as usize
            + self.ready.iter().map(String::len).sum::<usize>()
    }

    /// Whether nothing more will happen on this connection: the
    /// [`Event::Closed`] was taken, every byte and the shutdown were handed
    /// out, and no more input is awaited. The adapter may then drop the
    /// socket.
    pub fn is_finished(&self) -> bool {
        self.finished
            && self.closed_delivered
            && self.shutdown != ShutdownState::Pending
            && self.out.is_empty()
            && self.pending_pong.is_none()
    }

    // ----- inputs --------------------------------------------------------------

    /// Bytes from the peer. Never fails: a peer fault comes out of
    /// [`poll_event`](Self::poll_event) as [`Event::Closed`] with the error,
    /// after the right Close frame was queued. Input after a Close or a
    /// failure is ignored ("nothing processed after close").
    ///
    /// Events are still parsed lazily by the polls, but the copy into the
    /// connection does some of their work in the same pass: on a server,
    /// the payload of large masked frames (4 KiB or more, with 4 KiB or
    /// more in hand) is unmasked as it is copied, and text for
    /// [`poll_message`](Self::poll_message) that continues a frame, or
    /// arrives with nothing buffered in large text frames (4 KiB or more,
    /// one after another), goes straight into the message's `String`
    /// (whole messages wait there for the polls, in order). A large frame
    /// that begins after another in the same input and goes on past it
    /// gets a buffer of its own, sized for it, so that nothing is moved when the frames
    /// before it leave; while such frames stream in, the connection keeps
    /// the buffer they leave behind for the next one (given back when
    /// idle).
    pub fn handle_data(&mut self, now: Instant, data: &[u8]) {
        if !self.note_input(now, data.len()) || self.rx_failed.is_some() {
            return;
        }
        let mut data = data;
        // Large text for `poll_message` goes straight from `data` into its
        // `String`, frame after frame while they are large text frames.
        loop {
            match self.accept_text_header(data) {
                Ok(n) => data = &data[n..],
                Err(e) => {
                    // Reported by the next poll; the rest is never read.
                    self.rx_failed = Some(e);
                    return;
                }
            }
            let Some(rx) = &mut self.rx else {
                break;
            };
            if !self.rx_whole_text
                || self.rx_compressed
                || rx.header.opcode.is_control()
                || !self.inbuf.is_empty()
                || !self.next.is_empty()
            {
                break;
            }
            // Unmasked a block at a time on the stack, validated and
            // appended to the message's String from there, never buffered.
            let n = (data.len() as u64).min(rx.remaining) as usize;
            let (text, rest) = data.split_at(n);
            reserve_text(&mut self.rx_text, rx.remaining);
            let r = match rx.header.mask {
                Some(mask) => feed_masked(
                    &mut self.rx_utf8,
                    text,
                    mask,
                    rx.consumed as usize,
                    &mut self.rx_text,
                ),
                None => self.rx_utf8.feed_into(text, &mut self.rx_text),
            };
            rx.remaining -= n as u64;
            rx.consumed += n as u64;
            self.fed += n as u64;
            // Known again from `rx` when needed.
            self.scan = None;
            data = rest;
            if r.is_err() {
                // Reported by the next poll; the rest is never read.
                self.rx_failed = Some(ProtocolError::InvalidUtf8);
                return;
            }
            if rx.remaining > 0 {
                return;
            }
            let fin = rx.header.fin;
            self.rx = None;
            if fin {
                if self.rx_utf8.finish().is_err() {
                    self.rx_failed = Some(ProtocolError::InvalidUtf8);
                    return;
                }
                self.end_message();
                self.ready.push_back(std::mem::take(&mut self.rx_text));
            }
            if data.is_empty() {
                return;
            }
        }
        // Small input between frames (every read of small messages) has
        // nothing for the scan to follow.
        if self.role == Role::Server
            && !data.is_empty()
            && (data.len() >= SCAN_MIN
                || self.rx.is_some()
                || self.scan.is_some_and(|s| s.left > 0))
        {
            data = self.scan_in(data);
        }
        if !data.is_empty() {
            self.scan = None;
            self.fed += data.len() as u64;
            let end = self.input_end();
            if end.capacity() - end.len() < data.len() {
                let room = self.frame_room().max(data.len());
                self.input_end().reserve(room);
            }
            self.input_end().extend_from_slice(data);
        }
    }

    /// For [`poll_message`](Self::poll_message), with nothing buffered:
    /// accepts the header at the start of `data` here, instead of leaving it
    /// to the poll path, when it starts a large text frame (a new message,
    /// or the next frame of one being built as a `String`). Its payload then
    /// takes the direct text path, straight from `data` into the `String`,
    /// rather than being copied into the input and then again into the
    /// `String`. The header's length, or 0 if the poll path reads it; a rule
    /// the header breaks is returned (nothing was changed).
    fn accept_text_header(&mut self, data: &[u8]) -> Result<usize, ProtocolError> {
        if data.len() < SCAN_MIN
            || !self.whole_text
            || self.rx.is_some()
            || self.rx_text_done
            || self.rx_failed.is_some()
            || !self.inbuf.is_empty()
            || !self.next.is_empty()
        {
            return Ok(0);
        }
        let Ok(Some((header, n))) = FrameHeader::parse(data) else {
            // The poll path reports a bad header.
            return Ok(0);
        };
        let text = match header.opcode {
            OpCode::Text => self.rx_msg.is_none(),
            OpCode::Continuation => {
                self.rx_msg == Some(MessageKind::Text) && self.rx_whole_text && !self.rx_compressed
            }
            _ => false,
        };
        if !text || header.rsv != 0 || header.len < SCAN_MIN as u64 {
            return Ok(0);
        }
        self.check_header(&header)?;
        self.rx = Some(RxFrame {
            header,
            remaining: header.len,
            consumed: 0,
            checked: 0,
        });
        self.fed += n as u64;
        self.scan = None;
        Ok(n)
    }

    /// Room for the rest of the frame at the start of `inbuf` (known from
    /// `rx` or read from its header), at most [`RESERVE_AHEAD_MAX`]: the
    /// input that must grow for a large frame arriving in pieces grows once
    /// instead of by doubling (each step a copy).
    fn frame_room(&self) -> usize {
        if !self.next.is_empty() {
            return 0;
        }
        let buffered = self.inbuf.len() as u64;
        let rest = match &self.rx {
            Some(rx) => rx.remaining.saturating_sub(buffered),
            None => match FrameHeader::parse(&self.inbuf) {
                Ok(Some((h, n)))
                    if !h.opcode.is_control() && h.len <= self.config.max_frame_size =>
                {
                    (n as u64 + h.len).saturating_sub(buffered)
                }
                _ => 0,
            },
        };
        reserve_ahead(rest)
    }

    /// The buffer that new input goes to: `next` once it is started.
    fn input_end(&mut self) -> &mut BytesMut {
        if self.next.is_empty() {
            self.inbuf.bytes_mut()
        } else {
            &mut self.next
        }
    }

    /// Takes the first `n` bytes of `inbuf` as handed out. All of it (a
    /// message that was the whole input, as with one in flight) empties
    /// the buffer where it stands instead: its start does not move, so
    /// the next input is written there without reclaiming the room first.
    #[inline]
    fn consume_input(&mut self, n: usize) {
        if n == self.inbuf.len() {
            self.inbuf.clear();
        } else {
            self.inbuf.advance(n);
        }
    }

    /// The stream offset of `inbuf[0]`.
    fn inbuf_start(&self) -> u64 {
        self.fed - (self.inbuf.len() + self.next.len()) as u64
    }

    /// Copies masked payload in unmasked (one pass instead of a copy and a
    /// second pass), following the frames on its own while they are large;
    /// returns the input it left for a plain copy. The poll path later
    /// finds those payload bytes unmasked through `unmasked_to`.
    fn scan_in<'a>(&mut self, mut data: &'a [u8]) -> &'a [u8] {
        let Some(mut s) = self.scan.or_else(|| self.rescan()) else {
            return data;
        };
        // All of `data` goes into the input, unmasked or not: room at once.
        self.input_end().reserve(data.len());
        loop {
            if s.left > 0 {
                let n = (data.len() as u64).min(s.left) as usize;
                let fed = self.fed;
                let buf = self.input_end();
                if s.reserve && s.left > n as u64 && fed - s.base == buf.len() as u64 {
                    // Room for the rest of the frame at once, up to a
                    // bound: growing by doubling would copy what is
                    // already buffered at each step. Only when nothing
                    // else is buffered: earlier frames would be copied.
                    // With room for the start of what follows the frame
                    // in the same read, or that would copy the frame.
                    buf.reserve(reserve_ahead(s.left) + (s.left as usize).min(FOLLOW_ROOM));
                }
                let (payload, rest) = data.split_at(n);
                extend_masked_at(buf, payload, s.mask, s.phase);
                s.left -= n as u64;
                s.phase = s.phase.wrapping_add(n);
                self.fed += n as u64;
                data = rest;
            }
            if data.is_empty() {
                break;
            }
            // At a header: follow it if it starts a large masked frame.
            let next = match FrameHeader::parse(data) {
                Ok(Some((h, n))) if data.len() >= SCAN_MIN && h.len >= SCAN_MIN as u64 => {
                    h.mask.map(|mask| (h, n, mask))
                }
                _ => None,
            };
            let Some((h, n, mask)) = next else {
                self.scan = None;
                self.unmasked_to = self.fed;
                return data;
            };
            s = Scan {
                left: h.len,
                mask,
                phase: 0,
                reserve: !h.opcode.is_control() && h.len <= self.config.max_frame_size,
                base: self.fed,
            };
            if s.reserve
                && self.next.is_empty()
                && !self.inbuf.is_empty()
                && (data.len() - n) as u64 <= h.len
            {
                // `inbuf` ends where a frame ends (the scan followed every
                // frame in it, or it held only the rest of the frame being
                // received), and this frame goes on past this input: start
                // `next` with it. (A frame that ends here leaves with the
                // frames before it; the room for it is reserved already.)
                self.next = std::mem::take(&mut self.spare);
                self.next.reserve(data.len());
                self.next.extend_from_slice(&data[..n]);
            } else {
                self.input_end().extend_from_slice(&data[..n]);
            }
            self.fed += n as u64;
            data = &data[n..];
        }
        self.scan = Some(s);
        self.unmasked_to = self.fed;
        data
    }

    /// Where the end of `inbuf` stands, if the poll path knows: at a header
    /// when nothing is buffered, or in the frame being received when all
    /// that is buffered is its payload, unmasked.
    fn rescan(&self) -> Option<Scan> {
        if !self.next.is_empty() {
            return None;
        }
        let buffered = self.inbuf.len();
        let Some(rx) = &self.rx else {
            return (buffered == 0).then_some(Scan {
                left: 0,
                mask: [0; 4],
                phase: 0,
                reserve: false,
                base: self.fed,
            });
        };
        let mask = rx.header.mask?;
        if buffered as u64 > rx.remaining || self.unmasked_in_buf() < buffered {
            return None;
        }
        Some(Scan {
            left: rx.remaining - buffered as u64,
            mask,
            phase: (rx.consumed as usize).wrapping_add(buffered),
            reserve: !rx.header.opcode.is_control(),
            base: self.fed - buffered as u64,
        })
    }

    /// Bytes at the start of `inbuf` whose payload is unmasked already.
    fn unmasked_in_buf(&self) -> usize {
        let start = self.inbuf_start();
        (self.unmasked_to.saturating_sub(start) as usize).min(self.inbuf.len())
    }

    /// Bytes from the peer, handed over as an owned buffer: the zero-copy
    /// path. An adapter that reads into a `BytesMut` and splits off what it
    /// read gives the connection that memory; chunk events are then slices
    /// of it, so a binary payload that lies whole in one buffer (or in
    /// contiguous splits of one) is never copied after the read syscall
    /// ([`poll_message`](Self::poll_message) copies a binary message of at
    /// most 128 bytes instead: cheaper than sharing the buffer, whose
    /// reference count costs two atomic operations per message).
    /// Otherwise the same as [`handle_data`](Self::handle_data).
    ///
    /// A buffer that does not continue the memory of the input still
    /// buffered (another block) cannot be joined without a copy: it goes
    /// through [`handle_data`](Self::handle_data), which copies it once,
    /// unmasking large frames on the way in, into room reserved for the
    /// rest of the frame (joining would copy too, and grow by doubling).
    pub fn handle_bytes(&mut self, now: Instant, data: BytesMut) {
        let end = self.input_end();
        if !end.is_empty() && end.as_ptr() as usize + end.len() != data.as_ptr() as usize {
            self.handle_data(now, &data);
            return;
        }
        if self.note_input(now, data.len()) {
            self.scan = None;
            self.fed += data.len() as u64;
            let end = self.input_end();
            if end.is_empty() {
                *end = data;
            } else {
                end.unsplit(data);
            }
        }
    }

    /// Records `len` bytes of input at `now`; whether to buffer them.
    fn note_input(&mut self, now: Instant, len: usize) -> bool {
        self.now = now;
        if len == 0 || self.eof {
            return false;
        }
        // Any byte from the peer proves it alive (keepalive).
        self.last_rx = now;
        self.ping_sent = None;
        self.reading
    }

    /// The peer closed its write side (read returned 0), or the transport
    /// failed. Buffered whole frames are still delivered; then, unless the
    /// closing handshake completed, [`Event::Closed`] reports 1006.
    pub fn handle_eof(&mut self, now: Instant) {
        self.now = now;
        if self.eof {
            return;
        }
        self.eof = true;
        if !self.reading {
            // The closing handshake (or a failure) already ended reading: the
            // peer's FIN is what we lingered for. A client answers with its own.
            if self.shutdown == ShutdownState::NotYet {
                self.shutdown = ShutdownState::Pending;
            }
            self.finished = true;
            self.linger_deadline = None;
        }
    }

    /// Time passed. Spurious or early calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.release_buffers(now);
        if let Some(deadline) = self.close_deadline {
            if now >= deadline && self.state == State::Closing {
                // The peer never answered our Close.
                self.close_deadline = None;
                self.reading = false;
                self.finish_now(CloseInfo {
                    code: CloseCode::ABNORMAL,
                    reason: String::new(),
                    initiator: Initiator::Local,
                    error: Some(ConnectionError::CloseTimeout),
                });
                return;
            }
        }
        if let Some(deadline) = self.linger_deadline {
            if now >= deadline {
                self.linger_deadline = None;
                if self.shutdown == ShutdownState::NotYet {
                    self.shutdown = ShutdownState::Pending;
                }
                self.finished = true;
            }
        }
        if self.state == State::Open {
            if let Some(interval) = self.config.keepalive_interval {
                match self.ping_sent {
                    Some(sent) if now >= sent + self.config.keepalive_timeout => {
                        self.fail(ConnectionError::KeepaliveTimeout, CloseCode::INTERNAL_ERROR);
                    }
                    None if now >= self.last_rx + interval => {
                        self.ping_counter += 1;
                        let payload = self.ping_counter.to_be_bytes();
                        self.write_frame(OpCode::Ping, true, &payload);
                        self.ping_sent = Some(now);
                    }
                    _ => {}
                }
            }
        }
    }

    // ----- outputs -------------------------------------------------------------

    /// The next event, parsed lazily from buffered input; `None` when more
    /// input is needed. An event may queue output (a Pong, a Close), so drain
    /// [`poll_transmit`](Self::poll_transmit) after draining events.
    ///
    /// Use either this or [`poll_message`](Self::poll_message) for a
    /// connection. If a text message began under `poll_message`, it comes
    /// out here as one final chunk.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.whole_text = false;
        if let Some(m) = self.unlent.take() {
            // A whole message a `poll_message_with` closure panicked on.
            return Some(match *m {
                Message::Text(t) => Event::Text {
                    data: Bytes::from(t),
                    fin: true,
                },
                Message::Binary(data) => Event::Binary { data, fin: true },
                Message::Ping(p) => Event::Ping(p),
                Message::Pong(p) => Event::Pong(p),
                Message::Closed(info) => Event::Closed(info),
            });
        }
        if let Some(text) = self.ready.pop_front() {
            return Some(Event::Text {
                data: Bytes::from(text),
                fin: true,
            });
        }
        let ev = self.next_event()?;
        if self.rx_text_done {
            self.rx_text_done = false;
            let text = std::mem::take(&mut self.rx_text);
            return Some(Event::Text {
                data: Bytes::from(text),
                fin: true,
            });
        }
        Some(ev)
    }

    /// The next whole message (or Ping, Pong, close); `None` when more input
    /// is needed. The same as [`poll_event`](Self::poll_event) followed by an
    /// [`Assembler`], except that a text message is checked for UTF-8 once,
    /// as it arrives (failing fast as ever), and built into its `String` by
    /// that same pass: the `Assembler` has to check whole text again,
    /// because safe code turns bytes into a `String` only by checking them.
    /// Memory is bounded by
    /// [`Config::max_message_size`](crate::Config::max_message_size).
    #[inline]
    pub fn poll_message(&mut self) -> Option<Message> {
        self.whole_text = true;
        // The poll that ends each batch of input, inlined into the caller:
        // `next_message` would find the same, after its own setup.
        if self.unlent.is_none() && self.ready.is_empty() {
            if self.nothing_to_read() {
                return None;
            }
            // The common case in a call of its own, whose setup is smaller
            // than `next_message`'s.
            if let Some(m) = self.poll_small() {
                return Some(m);
            }
        }
        self.next_message()
    }

    /// [`small_message`](Self::small_message), not inlined.
    #[inline(never)]
    fn poll_small(&mut self) -> Option<Message> {
        self.small_message()
    }

    /// The next whole message (or Ping, Pong, close), lent to `f`; `None`
    /// (and `f` not called) when more input is needed. The same messages as
    /// [`poll_message`](Self::poll_message), with the same checks, but a
    /// message that lies whole in the input (one unfragmented frame, all
    /// received) is not copied or allocated: `f` sees the input buffer
    /// itself, unmasked and, for text, checked for UTF-8 in place (text of
    /// 48 to 63 bytes that is not ASCII is checked in a copy on the stack,
    /// which `f` sees: a quicker check, see `utf8::check`). Other messages
    /// are built as by `poll_message` and lent from there.
    ///
    /// If `f` panics, the message is handed out again by the next poll
    /// (of any kind).
    ///
    /// A large frame that is whole in one call of
    /// [`handle_data`](Self::handle_data) stays in the input for this
    /// (rather than going straight into a `String`, as for
    /// `poll_message`), so use one of the two for a connection.
    ///
    /// `poll_message_with(|m| match m { MessageRef::Text(t) => t.len(), _ => 0 })`
    /// reads a text message's length without a `String` (the tests in
    /// `tests/lent_messages.rs` show it allocating nothing).
    pub fn poll_message_with<R>(&mut self, f: impl FnOnce(MessageRef<'_>) -> R) -> Option<R> {
        self.lend(|m, _| f(m))
    }

    /// [`poll_message_with`](Self::poll_message_with), and `f` may answer:
    /// the [`Reply`] it is given queues whole messages on this connection
    /// while the message is lent. An echo or a request answered from the
    /// bytes it came in costs one copy (into the output), not two (out of
    /// the lent message, then into the output).
    ///
    /// ```
    /// # use ws_proto::{Connection, MessageRef};
    /// # fn answer(conn: &mut Connection) {
    /// while let Some(sent) = conn.poll_message_reply(|m, reply| match m {
    ///     MessageRef::Text(t) => reply.send_text(t),
    ///     MessageRef::Binary(b) => reply.send_binary(b),
    ///     _ => Ok(()),
    /// }) {
    ///     // Err after a Close: nothing more is sent.
    ///     let _ = sent;
    /// }
    /// # }
    /// ```
    pub fn poll_message_reply<R>(
        &mut self,
        f: impl FnOnce(MessageRef<'_>, &mut Reply<'_>) -> R,
    ) -> Option<R> {
        self.lend(f)
    }

    /// A [`Reply`] outside a lend: what `f` queues through it goes out as
    /// [`send_text`](Self::send_text) and the like would queue it, under
    /// the same rules (refused after a Close, or while a streamed message
    /// is unfinished). For code written against a `Reply` that is also
    /// run on a message already taken out of the connection (a server's
    /// lent callbacks, given an owned message).
    pub fn with_reply<R>(&mut self, f: impl FnOnce(&mut Reply<'_>) -> R) -> R {
        let ready = self.check_whole_message();
        f(&mut self.reply(ready))
    }

    /// Both lending polls. The poll that finds nothing to read (one per
    /// batch of input) is a few compares inlined into the caller.
    #[inline(always)]
    fn lend<R>(&mut self, f: impl FnOnce(MessageRef<'_>, &mut Reply<'_>) -> R) -> Option<R> {
        // Large frames are buffered, not built into a String as they arrive.
        self.whole_text = false;
        if self.unlent.is_none() && self.ready.is_empty() && self.nothing_to_read() {
            return None;
        }
        self.lend_input(f)
    }

    /// [`lend`](Self::lend) when there may be something to lend.
    #[inline]
    fn lend_input<R>(&mut self, f: impl FnOnce(MessageRef<'_>, &mut Reply<'_>) -> R) -> Option<R> {
        if let Some(m) = self.unlent.take() {
            // `f` panicked on it last time.
            return Some(self.lend_owned(*m, f));
        }
        if !self.ready.is_empty() {
            let ready = self.check_whole_message();
            let text = self.ready.front().map_or("", String::as_str);
            let r = f(MessageRef::Text(text), &mut reply!(self, ready));
            self.ready.pop_front();
            return Some(r);
        }
        // Something to read (`lend` checked).
        match self.whole_in_input() {
            Lend::Whole { n, len, text } => {
                let ready = self.check_whole_message();
                let payload = &self.inbuf[n..n + len];
                let mut pad = None;
                let view = if text {
                    crate::utf8::check(payload, &mut pad).map(MessageRef::Text)
                } else {
                    Some(MessageRef::Binary(payload))
                };
                if let Some(view) = view {
                    let r = f(view, &mut reply!(self, ready));
                    self.consume_input(n + len);
                    self.lent_unmasked = false;
                    return Some(r);
                }
                // Consumed; the general path reports the error first.
                self.consume_input(n + len);
                self.lent_unmasked = false;
                self.rx_failed = Some(ProtocolError::InvalidUtf8);
            }
            Lend::Wait => return None,
            Lend::General => {}
        }
        // Everything else as `poll_message` makes it (a large frame still
        // arriving goes on into its String or buffer as it comes in).
        self.whole_text = true;
        let m = self.next_message();
        self.whole_text = false;
        Some(self.lend_owned(m?, f))
    }

    /// Lends a message taken out of the connection; if `f` panics, the
    /// message goes back (to `unlent`), to be handed out again.
    fn lend_owned<R>(
        &mut self,
        m: Message,
        f: impl FnOnce(MessageRef<'_>, &mut Reply<'_>) -> R,
    ) -> R {
        struct Restore<'a> {
            slot: &'a mut Option<Box<Message>>,
            m: Option<Message>,
        }
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                if let Some(m) = self.m.take() {
                    *self.slot = Some(Box::new(m));
                }
            }
        }
        let ready = self.check_whole_message();
        let mut keep = Restore {
            slot: &mut self.unlent,
            m: Some(m),
        };
        // `m` is always there until lent.
        let r = f(
            keep.m
                .as_ref()
                .map_or(MessageRef::Binary(&[]), Message::view),
            &mut reply!(self, ready),
        );
        // Lent: not put back.
        keep.m = None;
        r
    }

    /// For [`poll_message_with`](Self::poll_message_with): between
    /// messages, at a whole unfragmented Text or Binary frame with no RSV
    /// bits, the mask the role requires and within the limits, all in
    /// `inbuf`: its payload unmasked in place. Such a frame of at most
    /// [`LEND_WAIT`] bytes ([`LEND_WAIT_TEXT`] of text) that is still
    /// arriving is waited for (text checked as it comes, failing as early
    /// as the general path would).
    /// Anything else (every frame that breaks a rule included) is left to
    /// the general path.
    fn whole_in_input(&mut self) -> Lend {
        if !self.reading
            || self.rx.is_some()
            || self.rx_msg.is_some()
            || self.rx_failed.is_some()
            || self.rx_text_done
            || self.asm.in_progress()
        {
            return Lend::General;
        }
        if self.inbuf.is_empty() && !self.take_next(false) {
            // Nothing buffered: the general path notes the input that
            // passed, and gives back large buffers when their time is up.
            return Lend::General;
        }
        let (h, n, len, text) = match self.lendable(&self.inbuf) {
            Ok(Some(frame)) => frame,
            Ok(None) if !self.eof => return Lend::Wait,
            _ => return Lend::General,
        };
        let have = self.inbuf.len() - n;
        if have >= len {
            self.unmask_payload(n, len, h.mask);
            // Recorded: if the closure panics, the frame is lent again
            // next time, not unmasked twice.
            let end = self.inbuf_start() + (n + len) as u64;
            self.unmasked_to = self.unmasked_to.max(end);
            self.lent_unmasked = true;
            self.lend_wait = None;
            return Lend::Whole { n, len, text };
        }
        if len > if text { LEND_WAIT_TEXT } else { LEND_WAIT } || self.eof {
            return Lend::General;
        }
        if text {
            // Unmask what is here in place (`unmasked_to` records it) and
            // check the bytes not checked before: at most once each.
            if let Some(mask) = h.mask {
                let done = self.unmasked_in_buf().saturating_sub(n).min(have);
                apply_mask(&mut self.inbuf[n + done..n + have], mask, done);
            }
            let start = self.inbuf_start();
            self.unmasked_to = self.unmasked_to.max(start + (n + have) as u64);
            self.lent_unmasked = true;
            let (mut checked, mut utf8) = match self.lend_wait {
                Some((at, checked, utf8)) if at == start => (checked, utf8),
                _ => (0, Utf8Validator::new()),
            };
            if utf8.feed(&self.inbuf[n + checked..n + have]).is_err() {
                self.lend_wait = None;
                return Lend::General;
            }
            checked = have;
            self.lend_wait = Some((start, checked, utf8));
        }
        Lend::Wait
    }

    /// The frame at the start of `input` if a lending poll may lend it
    /// where it lies once it is all there: a whole unfragmented Text or
    /// Binary frame with no RSV bits, the mask the role requires, within
    /// the limits. Its header, header length, payload length and whether
    /// it is text; `Ok(None)` if the header is not all there; `Err` for
    /// anything else (every frame that breaks a rule included: the
    /// general path reports it).
    #[inline]
    fn lendable(&self, input: &[u8]) -> Result<Option<(FrameHeader, usize, usize, bool)>, ()> {
        let (h, n) = match FrameHeader::parse(input) {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(None),
            Err(_) => return Err(()),
        };
        let text = match (h.fin, h.rsv, h.opcode) {
            (true, 0, OpCode::Text) => true,
            (true, 0, OpCode::Binary) => false,
            _ => return Err(()),
        };
        let c = &self.config;
        if h.mask.is_some() != (self.role == Role::Server)
            || h.len > c.max_frame_size
            || h.len > c.max_message_size
            || c.max_fragments == 0
        {
            return Err(());
        }
        let len = usize::try_from(h.len).map_err(|_| ())?;
        Ok(Some((h, n, len, text)))
    }

    /// [`handle_data`](Self::handle_data) followed by
    /// [`poll_message_reply`](Self::poll_message_reply), in one call, for
    /// an adapter that reads into a buffer of its own and lends: the same
    /// messages, answers, errors and output as the two calls, but the
    /// message that begins `data`, when nothing is buffered before it and
    /// it lies whole in `data` (one unfragmented frame), is unmasked and
    /// checked in `data` itself and lent from there: it is never copied
    /// into the connection (text of 48 to 63 bytes that is not ASCII is
    /// lent from a copy on the stack, as by
    /// [`poll_message_with`](Self::poll_message_with)).
    /// What follows it in `data` is (the next poll lends it). `data` may be
    /// left changed (unmasked in place).
    ///
    /// With one message in flight (a request, then its answer) every
    /// message takes this path: the bytes read are lent where they were
    /// read to. If `f` panics, the message is kept, as by
    /// `poll_message_reply`: the next poll lends it again.
    pub fn handle_data_reply<R>(
        &mut self,
        now: Instant,
        data: &mut [u8],
        f: impl FnOnce(MessageRef<'_>, &mut Reply<'_>) -> R,
    ) -> Option<R> {
        match self.in_place(now, data, f, false, usize::MAX) {
            InPlace::Lent(r) => Some(r),
            InPlace::Consumed(f) => self.lend(f),
            InPlace::Not(f) => {
                self.handle_data(now, data);
                self.lend(f)
            }
        }
    }

    /// [`handle_data`](Self::handle_data) followed by
    /// [`poll_message`](Self::poll_message), in one call, for an adapter
    /// that reads into a buffer of its own: the same messages, answers,
    /// errors and output as the two calls, but the message that begins
    /// `data`, when nothing is buffered before it and it lies whole in
    /// `data` (one unfragmented frame of less than 4 KiB), is unmasked and
    /// checked in `data` and copied from there into the returned message:
    /// it is never copied into the connection first (a text message is
    /// copied once, not twice; non-ASCII text of 48 to 63 bytes also onto
    /// the stack for its check, see `utf8::check`). What follows it in `data` is (the next poll
    /// returns it). Larger frames are unmasked as they are copied in, a
    /// text frame straight into its `String`, as by `handle_data`. `data`
    /// may be left changed (unmasked in place).
    ///
    /// ```
    /// use std::time::Instant;
    /// use ws_proto::{Config, Connection, Message, Role, Transmit};
    /// // `now`: the caller's clock.
    /// fn two_messages(now: Instant) {
    /// let mut server = Connection::new(Role::Server, Config::default(), now, [0; 32]);
    /// let mut client = Connection::new(Role::Client, Config::default(), now, [7; 32]);
    /// client.send_text("hi").unwrap();
    /// client.send_text("there").unwrap();
    /// let mut read = Vec::new();
    /// while let Transmit::Data(_) = client.poll_transmit(&mut read) {}
    /// // The first message comes from the read itself, the second from
    /// // the connection, which took it in.
    /// assert_eq!(server.handle_data_message(now, &mut read), Some(Message::Text("hi".into())));
    /// assert_eq!(server.poll_message(), Some(Message::Text("there".into())));
    /// assert_eq!(server.poll_message(), None);
    /// }
    /// ```
    pub fn handle_data_message(&mut self, now: Instant, data: &mut [u8]) -> Option<Message> {
        // Larger frames are unmasked and copied in one pass by
        // `handle_data` (into the input, or a text frame straight into its
        // `String`): no copy to save there.
        match self.in_place(now, data, |m, _| m.to_message(), true, SCAN_MIN) {
            InPlace::Lent(m) => Some(m),
            InPlace::Consumed(_) => self.poll_message(),
            InPlace::Not(_) => {
                self.handle_data(now, data);
                self.poll_message()
            }
        }
    }

    /// The message that begins `data`, lent to `f` from `data` itself when
    /// nothing is buffered before it and it lies whole in `data`; then the
    /// rest of `data` goes into the connection, read in the mode of the
    /// poll that follows (`whole_text`: `poll_message`'s). Only a payload
    /// shorter than `below`. Otherwise `f` comes back, with `data` taken in
    /// or not.
    #[inline]
    fn in_place<R, F: FnOnce(MessageRef<'_>, &mut Reply<'_>) -> R>(
        &mut self,
        now: Instant,
        data: &mut [u8],
        f: F,
        whole_text: bool,
        below: usize,
    ) -> InPlace<R, F> {
        let frame = if self.unlent.is_none()
            && self.ready.is_empty()
            && self.reading
            && !self.eof
            && self.closed.is_none()
            && self.inbuf.is_empty()
            && self.next.is_empty()
            && self.rx.is_none()
            && self.rx_msg.is_none()
            && self.rx_failed.is_none()
            && !self.rx_text_done
            && !self.asm.in_progress()
        {
            self.lendable(data).ok().flatten()
        } else {
            None
        };
        let Some((h, n, len, text)) = frame.filter(|f| f.1 + f.2 <= data.len() && f.2 < below)
        else {
            return InPlace::Not(f);
        };
        self.whole_text = false;
        self.note_input(now, n + len);
        self.fed += (n + len) as u64;
        self.scan = None;
        self.lend_wait = None;
        let (frame, rest) = data.split_at_mut(n + len);
        if let Some(mask) = h.mask {
            apply_mask(&mut frame[n..], mask, 0);
        }
        let frame: &[u8] = frame;
        let payload = &frame[n..];
        let mut pad = None;
        let view = if text {
            let Some(t) = crate::utf8::check(payload, &mut pad) else {
                // Consumed; the general path reports the error (and
                // ignores what follows).
                self.rx_failed = Some(ProtocolError::InvalidUtf8);
                return InPlace::Consumed(f);
            };
            MessageRef::Text(t)
        } else {
            MessageRef::Binary(payload)
        };
        let ready = self.check_whole_message();
        let mut keep = KeepInput {
            inbuf: &mut self.inbuf,
            fed: &mut self.fed,
            unmasked_to: &mut self.unmasked_to,
            lent_unmasked: &mut self.lent_unmasked,
            input: Some((frame, &*rest)),
        };
        let r = f(view, &mut reply!(self, ready));
        // Lent: nothing to keep.
        keep.input = None;
        drop(keep);
        self.whole_text = whole_text;
        if !rest.is_empty() {
            self.handle_data(now, rest);
        }
        InPlace::Lent(r)
    }

    /// [`poll_message`](Self::poll_message) after its mode is set.
    fn next_message(&mut self) -> Option<Message> {
        if let Some(m) = self.unlent.take() {
            return Some(*m);
        }
        if let Some(text) = self.ready.pop_front() {
            return Some(Message::Text(text));
        }
        if let Some(m) = self.small_message() {
            return Some(m);
        }
        if self.nothing_to_read() {
            // The poll that ends each batch of input: not even a call.
            return None;
        }
        loop {
            let ev = self.next_event()?;
            if self.rx_text_done {
                self.rx_text_done = false;
                return Some(Message::Text(std::mem::take(&mut self.rx_text)));
            }
            let ev = match ev {
                // A whole binary message in one chunk needs no assembly.
                Event::Binary { data, fin: true } if !self.asm.in_progress() => {
                    return Some(Message::Binary(data))
                }
                other => other,
            };
            if let Some(m) = self.asm.push(ev) {
                return Some(m);
            }
        }
    }

    fn next_event(&mut self) -> Option<Event> {
        if self.nothing_to_read() {
            return None;
        }
        if self.reading {
            // One call site, so that it is inlined here.
            let r = loop {
                let r = self.next_frame_event();
                if !matches!(r, Ok(None)) || !self.take_next(true) {
                    break r;
                }
            };
            match r {
                Ok(Some(ev)) => return Some(ev),
                Ok(None) => {
                    // Idle: note whether the input since the last idle
                    // point needed large buffers, and give them back if
                    // none has for a while (an idle connection should
                    // hold a few KiB, not the size of its last message).
                    // Not in the middle of a message: its next read would
                    // only allocate them again.
                    if self.input_idle() {
                        if self.fed - self.fed_at_idle > IDLE_INPUT_CAPACITY as u64 {
                            self.busy_at = self.busy_at.max(self.now);
                        }
                        self.fed_at_idle = self.fed;
                        self.release_buffers(self.now);
                    }
                    if self.eof && self.reading {
                        // "If the TCP connection was closed without a Close
                        // frame ... _The WebSocket Connection Close Code_ is
                        // considered to be 1006." (§7.1.5)
                        self.reading = false;
                        let initiator = if self.close_sent {
                            Initiator::Local
                        } else {
                            Initiator::Remote
                        };
                        self.finish_now(CloseInfo {
                            code: CloseCode::ABNORMAL,
                            reason: String::new(),
                            initiator,
                            error: Some(ConnectionError::Eof),
                        });
                    }
                }
                Err(e) => {
                    let code = e.close_code();
                    self.fail(ConnectionError::Protocol(e), code);
                }
            }
        }
        let ev = self.closed.take().map(|c| Event::Closed(*c));
        if ev.is_some() {
            self.closed_delivered = true;
            self.rx_text = String::new();
            self.rx_text_done = false;
        }
        ev
    }

    /// Whether `next_event` would find nothing and change nothing: no
    /// input buffered, between frames, no failure, EOF or close to report,
    /// and no large buffer to give back. The poll that ends each batch of
    /// input (one per echo, with one message in flight) takes this path
    /// instead of the general one.
    #[inline]
    fn nothing_to_read(&self) -> bool {
        self.reading
            && self.inbuf.is_empty()
            && self.next.is_empty()
            && self.rx.is_none()
            && self.rx_failed.is_none()
            && !self.eof
            && self.closed.is_none()
            && self.spare.capacity() == 0
            && self.inbuf.held() <= IDLE_INPUT_CAPACITY
    }

    /// Appends every queued byte to `buf` (swapping buffers instead of
    /// copying when `buf` is empty, so pass an empty one). Frames queued by
    /// many commands leave in one batch: one write for many small messages.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Transmit {
        if !self.out_owned.is_empty() {
            return self.transmit_interleaved(buf);
        }
        self.transmit_plain(buf)
    }

    /// Like [`poll_transmit`](Self::poll_transmit), for an adapter that
    /// writes several buffers at once (`writev`): appends every queued
    /// byte to `buf` but the payloads given with
    /// [`send_owned`](Self::send_owned), which are appended to `owned`,
    /// uncopied, each with the length `buf` had where it belongs (write
    /// `buf[..at]`, that payload, and so on). [`Transmit::Data`] counts
    /// both. Pass an empty `buf` and `owned` to hand everything over
    /// without a copy.
    #[inline]
    pub fn poll_transmit_owned(
        &mut self,
        buf: &mut Vec<u8>,
        owned: &mut Vec<(usize, Bytes)>,
    ) -> Transmit {
        if !self.out_owned.is_empty() {
            return self.transmit_parts(buf, owned);
        }
        self.transmit_plain(buf)
    }

    /// The output when no payload was taken over (the usual case).
    #[inline(always)]
    fn transmit_plain(&mut self, buf: &mut Vec<u8>) -> Transmit {
        self.flush_pong();
        if !self.out.is_empty() {
            let n = self.out.len();
            if buf.is_empty() {
                std::mem::swap(buf, &mut self.out);
            } else {
                buf.extend_from_slice(&self.out);
                self.out.clear();
            }
            return Transmit::Data(n);
        }
        if self.shutdown == ShutdownState::Pending {
            self.shutdown = ShutdownState::Done;
            return Transmit::Shutdown;
        }
        Transmit::Nothing
    }

    /// `poll_transmit` with payloads taken over: copied into `buf` in
    /// their places (for callers that write one buffer).
    #[inline(never)]
    fn transmit_interleaved(&mut self, buf: &mut Vec<u8>) -> Transmit {
        self.flush_pong();
        let start = buf.len();
        let mut from = 0;
        for (at, payload) in self.out_owned.drain(..) {
            buf.extend_from_slice(&self.out[from..at]);
            buf.extend_from_slice(&payload);
            from = at;
        }
        buf.extend_from_slice(&self.out[from..]);
        self.out.clear();
        Transmit::Data(buf.len() - start)
    }

    /// `poll_transmit_owned` with payloads taken over.
    #[inline(never)]
    fn transmit_parts(&mut self, buf: &mut Vec<u8>, owned: &mut Vec<(usize, Bytes)>) -> Transmit {
        // Output is queued, so a Pong owed goes after it now (it does not
        // wait for the owned payloads to run out).
        self.flush_pong();
        let base = buf.len();
        let mut n = self.out.len();
        for (at, payload) in self.out_owned.drain(..) {
            n += payload.len();
            owned.push((base + at, payload));
        }
        if base == 0 {
            std::mem::swap(buf, &mut self.out);
        } else {
            buf.extend_from_slice(&self.out);
        }
        self.out.clear();
        Transmit::Data(n)
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called:
    /// the keepalive ping, the keepalive deadline, the close timeout, the
    /// end of lingering for the peer's FIN, or the time to give back
    /// buffers grown for large messages (see
    /// [`Config::release_buffers_after`]). `None`: no timer.
    #[inline]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |d: Instant| t = Some(t.map_or(d, |t| t.min(d)));
        if let Some(d) = self.release_due() {
            at(d);
        }
        if self.state == State::Open {
            if let Some(interval) = self.config.keepalive_interval {
                match self.ping_sent {
                    Some(sent) => at(sent + self.config.keepalive_timeout),
                    None => at(self.last_rx + interval),
                }
            }
        }
        if let Some(d) = self.close_deadline {
            at(d);
        }
        if let Some(d) = self.linger_deadline {
            at(d);
        }
        t
    }

    // ----- commands ------------------------------------------------------------

    /// Queues a text message (fragmented past
    /// [`Config::send_fragment_size`]).
    ///
    /// With permessage-deflate negotiated, a message of at least
    /// `DeflateConfig::threshold` bytes is
    /// compressed.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send_message(MessageKind::Text, text.as_bytes(), true)
    }

    /// Queues a binary message (fragmented past
    /// [`Config::send_fragment_size`]).
    ///
    /// Compressed like [`send_text`](Self::send_text).
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send_message(MessageKind::Binary, data, true)
    }

    /// Queues a message whose payload the connection takes over instead of
    /// copying: the same frames as [`send_text`](Self::send_text) /
    /// [`send_binary`](Self::send_binary), but in the server role a payload
    /// of at least [`OWNED_MIN`] bytes that is not compressed stays in its
    /// `Bytes` until it is written ([`poll_transmit_owned`] hands it to the
    /// adapter as it is). Text is checked to be UTF-8
    /// ([`send_text_owned`](Self::send_text_owned) takes a `String` with
    /// no check). Smaller payloads, compressed ones, payloads cut into
    /// fragments smaller than [`OWNED_MIN`] (with
    /// [`Config::send_fragment_size`]; a short last fragment too) and the
    /// client role (whose frames are masked) are copied as by
    /// `send_binary`. Taken out with
    /// [`poll_transmit`](Self::poll_transmit) instead, the payloads are
    /// copied there: the bytes on the wire are the same either way.
    ///
    /// [`poll_transmit_owned`]: Self::poll_transmit_owned
    pub fn send_owned(&mut self, kind: MessageKind, data: Bytes) -> Result<(), SendError> {
        if kind == MessageKind::Text && !crate::utf8::is_valid(&data) {
            return Err(SendError::InvalidUtf8);
        }
        if !self.takes_over(data.len()) {
            return self.send_message(kind, &data, true);
        }
        self.queue_owned(kind, data)
    }

    /// [`send_owned`](Self::send_owned) for text that is a `String`
    /// already (no UTF-8 check).
    pub fn send_text_owned(&mut self, text: String) -> Result<(), SendError> {
        if !self.takes_over(text.len()) {
            // Not made into `Bytes`: that can cost an allocation.
            return self.send_message(MessageKind::Text, text.as_bytes(), true);
        }
        self.queue_owned(MessageKind::Text, Bytes::from(text))
    }

    /// Whether a payload of `len` bytes given to `send_owned` leaves from
    /// its own `Bytes` (else it is copied as by `send_binary`).
    #[inline]
    fn takes_over(&self, len: usize) -> bool {
        if len < OWNED_MIN
            || self.role != Role::Server
            || self.config.send_fragment_size < OWNED_MIN
        {
            return false;
        }
        #[cfg(feature = "deflate")]
        return !self.deflate.as_ref().is_some_and(|c| c.wants(len));
        #[cfg(not(feature = "deflate"))]
        true
    }

    fn queue_owned(&mut self, kind: MessageKind, data: Bytes) -> Result<(), SendError> {
        self.check_whole_message()?;
        let max = self.config.send_fragment_size;
        let mut opcode = match kind {
            MessageKind::Text => OpCode::Text,
            MessageKind::Binary => OpCode::Binary,
        };
        let mut rest = data;
        loop {
            let piece = rest.split_to(rest.len().min(max));
            let last = rest.is_empty();
            let header = FrameHeader {
                fin: last,
                rsv: 0,
                opcode,
                mask: None,
                len: piece.len() as u64,
            };
            let mut hbuf = [0u8; MAX_HEADER_LEN];
            let hlen = header.encode_into(&mut hbuf);
            self.out.extend_from_slice(&hbuf[..hlen]);
            if piece.len() >= OWNED_MIN {
                self.out_owned.push((self.out.len(), piece));
            } else {
                // A short last fragment: a copy costs less than a buffer of
                // its own to write.
                self.out.extend_from_slice(&piece);
            }
            if last {
                return Ok(());
            }
            opcode = OpCode::Continuation;
        }
    }

    /// Queues a message that is never compressed, even with
    /// permessage-deflate negotiated: for data that is already compressed,
    /// or secrets that must not share a compression context with
    /// attacker-chosen data. Text must be UTF-8.
    pub fn send_uncompressed(&mut self, kind: MessageKind, data: &[u8]) -> Result<(), SendError> {
        if kind == MessageKind::Text && std::str::from_utf8(data).is_err() {
            return Err(SendError::InvalidUtf8);
        }
        self.send_message(kind, data, false)
    }

    /// Queues one piece of a message streamed in pieces; `fin` ends it.
    ///
    /// The first chunk fixes the kind; the next chunks must have the same
    /// kind. Text chunks may split a code point; the text as a whole is
    /// checked to be UTF-8, across chunks, before anything is queued.
    ///
    /// With permessage-deflate negotiated the message is compressed as it
    /// streams, whatever its size: each chunk goes through the compressor,
    /// and whatever it has produced leaves as a frame (possibly none until a
    /// later chunk; the last one flushes).
    pub fn send_chunk(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        fin: bool,
    ) -> Result<(), SendError> {
        self.send_chunk_with(kind, data, fin, true)
    }

    /// [`send_chunk`](Self::send_chunk) for a message that is never
    /// compressed. The first chunk of a message decides; later chunks follow
    /// it whichever method sends them.
    pub fn send_chunk_uncompressed(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        fin: bool,
    ) -> Result<(), SendError> {
        self.send_chunk_with(kind, data, fin, false)
    }

    fn send_chunk_with(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        fin: bool,
        compress: bool,
    ) -> Result<(), SendError> {
        self.check_open()?;
        if self.tx_msg.is_some_and(|k| k != kind) {
            return Err(SendError::KindMismatch);
        }
        let mut utf8 = self.tx_utf8;
        if kind == MessageKind::Text {
            utf8.feed(data).map_err(|_| SendError::InvalidUtf8)?;
            if fin {
                utf8.finish().map_err(|_| SendError::IncompleteUtf8)?;
            }
        }
        let first = self.tx_msg.is_none();
        if first {
            self.tx_compressed = compress && self.deflate_on();
        }
        if self.tx_compressed {
            self.write_compressed_chunk(kind, first, data, fin);
        } else {
            self.write_data(kind, first, data, fin, 0);
        }
        if fin {
            self.tx_msg = None;
            self.tx_utf8 = Utf8Validator::new();
        } else {
            self.tx_msg = Some(kind);
            self.tx_utf8 = utf8;
        }
        Ok(())
    }

    /// Queues a Ping (at most 125 bytes of payload).
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Ping, payload)
    }

    /// Queues an unsolicited Pong (a unidirectional heartbeat, §5.5.3).
    pub fn pong(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Pong, payload)
    }

    /// Starts the closing handshake: queues a Close with `code` and `reason`
    /// (at most 123 bytes) and starts the close timeout. Received data is
    /// still delivered until the peer's Close arrives; then
    /// [`Event::Closed`] follows.
    pub fn close(&mut self, now: Instant, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.now = now;
        self.check_open()?;
        if !code.is_valid_on_wire() {
            return Err(SendError::InvalidCloseCode(code.0));
        }
        if reason.len() > 123 {
            return Err(SendError::ControlPayloadTooLong(reason.len() + 2));
        }
        self.send_close(Some(code), reason);
        self.state = State::Closing;
        self.close_deadline = self.config.close_timeout.map(|t| now + t);
        Ok(())
    }

    // ----- receiving -----------------------------------------------------------

    /// Makes `next` the input once `inbuf` is used up. With `join`, also
    /// when `inbuf` is not: the poll path found it waiting for more bytes,
    /// which is not expected (`next` starts where a frame ends, and
    /// everything before it is parsed without it); joined (a copy) rather
    /// than left waiting, should that ever happen.
    fn take_next(&mut self, join: bool) -> bool {
        if self.next.is_empty() {
            return false;
        }
        if self.inbuf.is_empty() {
            let next = std::mem::take(&mut self.next);
            self.spare = self.inbuf.replace(next);
            true
        } else if join {
            let next = std::mem::take(&mut self.next);
            self.inbuf.unsplit(next);
            true
        } else {
            false
        }
    }

    fn next_frame_event(&mut self) -> Result<Option<Event>, ProtocolError> {
        if let Some(e) = self.rx_failed.take() {
            return Err(e);
        }
        loop {
            self.take_next(false);
            let rx = match self.rx {
                Some(rx) => rx,
                None => {
                    let Some((header, n)) = FrameHeader::parse(&self.inbuf)? else {
                        return Ok(None);
                    };
                    self.check_header(&header)?;
                    if header.fin
                        && matches!(header.opcode, OpCode::Text | OpCode::Binary)
                        && !self.rx_compressed
                        && (self.inbuf.len() - n) as u64 >= header.len
                        && header.len as usize <= self.config.read_chunk_size
                    {
                        // The common case, short: a whole message in one
                        // frame, all here.
                        return self.whole_frame(header, n).map(Some);
                    }
                    self.inbuf.advance(n);
                    let rx = RxFrame {
                        header,
                        remaining: header.len,
                        consumed: 0,
                        checked: 0,
                    };
                    self.rx = Some(rx);
                    rx
                }
            };
            if rx.header.opcode.is_control() {
                let len = rx.header.len as usize;
                if self.inbuf.len() < len {
                    return Ok(None);
                }
                self.rx = None;
                let done = self.unmasked_in_buf().min(len);
                let mut payload = self.inbuf.split_to(len);
                if let Some(mask) = rx.header.mask {
                    apply_mask(&mut payload[done..], mask, done);
                }
                if let Some(ev) = self.on_control(rx.header.opcode, payload.freeze())? {
                    return Ok(Some(ev));
                }
                continue;
            }
            let ev = if self.rx_compressed {
                self.on_compressed_data(rx)?
            } else {
                self.on_data(rx)?
            };
            if let Some(ev) = ev {
                return Ok(Some(ev));
            }
            if self.rx.is_some() {
                // Waiting for more of this frame's payload.
                return Ok(None);
            }
        }
    }

    /// A whole uncompressed message in one frame whose payload is all in
    /// `inbuf` after its `n`-byte header (checked already): the event
    /// without the general chunking path.
    fn whole_frame(&mut self, header: FrameHeader, n: usize) -> Result<Event, ProtocolError> {
        let data = self.take_payload(n, header.len as usize, header.mask);
        // The message ends here; of `end_message`'s resets only these apply
        // to a whole uncompressed frame (this is the hot path).
        let kind = self.rx_msg.take().unwrap_or(MessageKind::Binary);
        self.rx_msg_len = 0;
        self.rx_msg_frames = 0;
        if kind == MessageKind::Binary {
            return Ok(Event::Binary {
                data: data.freeze(),
                fin: true,
            });
        }
        if self.rx_whole_text {
            // For poll_message: the String straight from the one check.
            self.rx_whole_text = false;
            self.rx_text = crate::utf8::to_string(&data).ok_or(ProtocolError::InvalidUtf8)?;
            self.rx_text_done = true;
            return Ok(Event::Text {
                data: Bytes::new(),
                fin: true,
            });
        }
        if !crate::utf8::is_valid(&data) {
            return Err(ProtocolError::InvalidUtf8);
        }
        Ok(Event::Text {
            data: data.freeze(),
            fin: true,
        })
    }

    /// Drops an `n`-byte header from `inbuf` and takes the `len`-byte
    /// payload after it (all there), unmasked.
    #[inline(always)]
    fn take_payload(&mut self, n: usize, len: usize, mask: Option<[u8; 4]>) -> BytesMut {
        self.unmask_payload(n, len, mask);
        self.inbuf.split_after(n, len)
    }

    /// Unmasks in place the `len`-byte payload (all there) that follows an
    /// `n`-byte header at the start of `inbuf`.
    #[inline(always)]
    fn unmask_payload(&mut self, n: usize, len: usize, mask: Option<[u8; 4]>) {
        let Some(mask) = mask else {
            return;
        };
        let done = self.unmasked_before(n, len);
        apply_mask(&mut self.inbuf[n + done..n + len], mask, done);
    }

    /// How many of the payload's first bytes (at `n`, `len` long) are
    /// unmasked in `inbuf` already.
    #[inline(always)]
    fn unmasked_before(&self, n: usize, len: usize) -> usize {
        // Small frames are never unmasked on the way in, but
        // `poll_message_with` may have unmasked one in place (see
        // `lent_unmasked`).
        if len < SCAN_MIN && !self.lent_unmasked {
            0
        } else {
            self.unmasked_in_buf().saturating_sub(n).min(len)
        }
    }

    /// `payload`, which is `inbuf[n..n + payload.len()]` (`n` its offset
    /// in `inbuf`, which says how much of it a lend has unmasked already),
    /// copied into `Bytes` of its own and unmasked there, `inbuf` left as
    /// it is. The copy reads the masked bytes the input brought, and the
    /// mask is applied to the words the copy has just written: unmasking
    /// in `inbuf` first would have the copy's wide loads read the mask's
    /// narrower stores just made, which the store buffer cannot forward.
    #[inline(always)]
    fn unmasked_copy(&self, payload: &[u8], n: usize, mask: Option<[u8; 4]>) -> Bytes {
        let mut data = Box::<[u8]>::from(payload);
        if let Some(mask) = mask {
            let done = self.unmasked_before(n, payload.len());
            apply_mask(&mut data[done..], mask, done);
        }
        Bytes::from(data)
    }

    /// `poll_message`'s common case in one step: between messages, a whole
    /// unfragmented Text or Binary frame with a 7- or 16-bit length (under
    /// 64 KiB), no RSV bits and the mask the role requires, all in `inbuf`,
    /// within the limits.
    /// The header is read here directly; anything else (including every
    /// frame that breaks a rule, which the general path reports) is left
    /// to `next_event`. A text frame that is not UTF-8 is consumed and its
    /// error left in `rx_failed`, which the general path reports first.
    #[inline(always)]
    fn small_message(&mut self) -> Option<Message> {
        if !self.reading
            || self.rx.is_some()
            || self.rx_msg.is_some()
            || self.rx_failed.is_some()
            || self.asm.in_progress()
        {
            return None;
        }
        // The input's view taken once: each use through `inbuf` would
        // compute it again.
        let input: &[u8] = &self.inbuf;
        let [b0, b1, ..] = *input else {
            return None;
        };
        let masked = self.role == Role::Server;
        let (len, ext) = match b1 & 0x7f {
            126 => {
                let Some(&[e0, e1]) = input.get(2..4) else {
                    return None;
                };
                (u16::from_be_bytes([e0, e1]) as usize, 2)
            }
            127 => return None,
            len => (len as usize, 0),
        };
        // FIN set, RSV clear; opcode Text (1) or Binary (2).
        let binary = match b0 {
            0x81 => false,
            0x82 => true,
            _ => return None,
        };
        // A 16-bit length must be one a 7-bit one could not carry (the
        // general path reports it).
        if ext == 2 && len < 126 || (b1 & 0x80 != 0) != masked || len >= self.small_end {
            return None;
        }
        let n = 2 + ext + if masked { 4 } else { 0 };
        let payload = input.get(n..n + len)?;
        let mask = if masked {
            match input[n - 4..n] {
                [k0, k1, k2, k3] => Some([k0, k1, k2, k3]),
                _ => None,
            }
        } else {
            None
        };
        if binary {
            if len <= SMALL_COPY {
                // A copy of its own: no reference count to share (an atomic
                // increment here and a decrement when the message is
                // dropped) and the input is not split.
                let data = self.unmasked_copy(payload, n, mask);
                self.consume_input(n + len);
                return Some(Message::Binary(data));
            }
            let data = self.take_payload(n, len, mask);
            return Some(Message::Binary(data.freeze()));
        }
        // Text is copied into its String from the input (no split).
        self.unmask_payload(n, len, mask);
        let text = crate::utf8::to_string(&self.inbuf[n..n + len]);
        self.consume_input(n + len);
        if text.is_none() {
            self.rx_failed = Some(ProtocolError::InvalidUtf8);
        }
        text.map(Message::Text)
    }

    /// The rules that depend on the connection, checked before any payload
    /// is buffered.
    fn check_header(&mut self, h: &FrameHeader) -> Result<(), ProtocolError> {
        // "MUST be 0 unless an extension is negotiated that defines meanings
        // for non-zero values." (§5.2)
        if h.rsv & !self.rsv_allowed != 0 {
            return Err(ProtocolError::ReservedBits(h.rsv));
        }
        // permessage-deflate's RSV1 marks the first frame of a message only:
        // never a control frame or a continuation (RFC 7692 §6.1).
        if h.rsv & RSV1 != 0 && matches!(h.opcode, OpCode::Continuation)
            || h.opcode.is_control() && h.rsv != 0
        {
            return Err(ProtocolError::ReservedBits(h.rsv));
        }
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        if h.opcode.is_control() {
            // "All control frames MUST have a payload length of 125 bytes or
            // less and MUST NOT be fragmented." (§5.5)
            if !h.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if h.len > 125 {
                return Err(ProtocolError::ControlFrameTooLong(h.len));
            }
            return Ok(());
        }
        let kind = match (h.opcode, self.rx_msg) {
            (OpCode::Continuation, Some(kind)) => kind,
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (_, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
            (OpCode::Text, None) => MessageKind::Text,
            (_, None) => MessageKind::Binary,
        };
        if h.len > self.config.max_frame_size {
            return Err(ProtocolError::FrameTooLarge {
                size: h.len,
                max: self.config.max_frame_size,
            });
        }
        let compressed = if h.opcode == OpCode::Continuation {
            self.rx_compressed
        } else {
            h.rsv & RSV1 != 0
        };
        let size = self.rx_msg_len.saturating_add(h.len);
        // A compressed message's limit is checked on its decompressed size as
        // it inflates; its wire size may pass the limit by what DEFLATE adds
        // to incompressible data (5 bytes per stored block of up to 64 KiB).
        let max_wire = if compressed {
            let max = self.config.max_message_size;
            max.saturating_add(max / 8192).saturating_add(1024)
        } else {
            self.config.max_message_size
        };
        if size > max_wire {
            return Err(ProtocolError::MessageTooLarge {
                size,
                max: self.config.max_message_size,
            });
        }
        if self.rx_msg_frames >= self.config.max_fragments {
            return Err(ProtocolError::TooManyFragments {
                max: self.config.max_fragments,
            });
        }
        if self.rx_msg.is_none() {
            self.rx_whole_text = self.whole_text && kind == MessageKind::Text && !compressed;
        }
        self.rx_msg = Some(kind);
        self.rx_compressed = compressed;
        self.rx_msg_len = size;
        self.rx_msg_frames += 1;
        Ok(())
    }

    /// Unmasks and validates newly arrived payload of the current data frame
    /// and hands out a chunk when the frame is complete or enough is buffered.
    fn on_data(&mut self, mut rx: RxFrame) -> Result<Option<Event>, ProtocolError> {
        let kind = self.rx_msg.unwrap_or(MessageKind::Binary);
        let avail = (self.inbuf.len() as u64).min(rx.remaining) as usize;
        self.unmask_up_to(&rx, avail);
        if kind == MessageKind::Text && self.rx_whole_text {
            return self.on_whole_text(rx, avail);
        }
        if avail > rx.checked {
            let fresh = &self.inbuf[rx.checked..avail];
            if kind == MessageKind::Text {
                // Fail fast: the byte that makes the text invalid fails the
                // connection when it arrives (§8.1).
                self.rx_utf8
                    .feed(fresh)
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
            }
            rx.checked = avail;
        }
        let frame_done = avail as u64 == rx.remaining;
        let msg_done = frame_done && rx.header.fin;
        if kind == MessageKind::Text && msg_done {
            self.rx_utf8
                .finish()
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        // For `poll_message`, a binary message in one frame stays in the
        // input until it is all here, then leaves without a copy; handed out
        // in chunks, it would be copied into the assembler (memory is the
        // same: the assembler would hold it all too).
        let whole_binary = self.whole_text && kind == MessageKind::Binary && rx.header.fin;
        if !frame_done
            && (avail < self.config.read_chunk_size || whole_binary && self.rx_msg_frames == 1)
        {
            self.rx = Some(rx);
            return Ok(None);
        }
        // Hold back the start of a code point still waiting for its end: it
        // leaves with the chunk that completes it.
        let hold = if kind == MessageKind::Text {
            self.rx_utf8.pending()
        } else {
            0
        };
        let carried = self.carry_len as usize;
        let from_buf = if frame_done {
            avail
        } else if avail >= hold {
            avail - hold
        } else {
            self.rx = Some(rx);
            return Ok(None);
        };
        let data = if carried == 0 && (!frame_done || hold == 0) {
            self.inbuf.split_to(from_buf).freeze()
        } else {
            self.take_with_carry(from_buf, if frame_done { hold } else { 0 })
        };
        rx.remaining -= from_buf as u64;
        rx.consumed += from_buf as u64;
        rx.checked -= from_buf;
        if frame_done {
            self.rx = None;
            if rx.header.fin {
                self.end_message();
            }
        } else {
            self.rx = Some(rx);
        }
        if data.is_empty() && !msg_done {
            return Ok(None);
        }
        Ok(Some(match kind {
            MessageKind::Text => Event::Text {
                data,
                fin: msg_done,
            },
            MessageKind::Binary => Event::Binary {
                data,
                fin: msg_done,
            },
        }))
    }

    /// The text path of `poll_message`: validates the new payload into
    /// `rx_text` (failing fast) and drops it from the input at once.
    fn on_whole_text(
        &mut self,
        mut rx: RxFrame,
        avail: usize,
    ) -> Result<Option<Event>, ProtocolError> {
        if avail > 0 {
            reserve_text(&mut self.rx_text, rx.remaining);
            self.rx_utf8
                .feed_into(&self.inbuf[..avail], &mut self.rx_text)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
            self.inbuf.advance(avail);
            rx.remaining -= avail as u64;
            rx.consumed += avail as u64;
            rx.checked = 0;
        }
        if rx.remaining > 0 {
            self.rx = Some(rx);
            return Ok(None);
        }
        self.rx = None;
        if !rx.header.fin {
            return Ok(None);
        }
        self.rx_utf8
            .finish()
            .map_err(|_| ProtocolError::InvalidUtf8)?;
        self.end_message();
        self.rx_text_done = true;
        // Stands for the text in `rx_text` (see `poll_event`).
        Ok(Some(Event::Text {
            data: Bytes::new(),
            fin: true,
        }))
    }

    /// The data path of a compressed message: unmasks newly arrived payload
    /// and inflates it, handing out at most `read_chunk_size` decompressed
    /// bytes per event. The decompressed size is checked against
    /// `max_message_size` as it is produced, so a small frame that inflates
    /// to gigabytes fails with 1009 after at most the limit.
    #[cfg(feature = "deflate")]
    fn on_compressed_data(&mut self, mut rx: RxFrame) -> Result<Option<Event>, ProtocolError> {
        let kind = self.rx_msg.unwrap_or(MessageKind::Binary);
        let avail = (self.inbuf.len() as u64).min(rx.remaining) as usize;
        self.unmask_up_to(&rx, avail);
        let frame_in = avail as u64 == rx.remaining;
        if !frame_in && avail < self.config.read_chunk_size {
            self.rx = Some(rx);
            return Ok(None);
        }
        let last = frame_in && rx.header.fin;
        let Some(codec) = self.deflate.as_mut() else {
            return Err(ProtocolError::ReservedBits(RSV1));
        };
        // Room for decompressed bytes: one chunk at most, and one byte past
        // the message limit so that passing it is seen.
        let allowance = self
            .config
            .max_message_size
            .saturating_sub(self.rx_msg_out)
            .saturating_add(1);
        let cap = (self.config.read_chunk_size.max(1) as u64).min(allowance) as usize;
        let carried = self.carry_len as usize;
        let cap = cap.saturating_sub(carried).max(1);
        let mut size = avail.saturating_mul(4).clamp(256, cap.max(256)).min(cap);
        let mut buf = vec![0u8; carried + size];
        buf[..carried].copy_from_slice(&self.carry[..carried]);
        let mut filled = carried;
        let mut used = 0;
        let done = loop {
            let r = codec
                .inflate(&self.inbuf[used..avail], last, &mut buf[filled..])
                .map_err(|e| ProtocolError::BadCompressedData(e.0))?;
            used += r.consumed;
            filled += r.produced;
            if r.done || filled < buf.len() || size >= cap {
                break r.done;
            }
            size = (size * 2).min(cap);
            buf.resize(carried + size, 0);
        };
        let more_output = !done && filled == buf.len();
        self.rx_msg_out += (filled - carried) as u64;
        if self.rx_msg_out > self.config.max_message_size {
            return Err(ProtocolError::MessageTooLarge {
                size: self.rx_msg_out,
                max: self.config.max_message_size,
            });
        }
        self.inbuf.advance(used);
        rx.remaining -= used as u64;
        rx.consumed += used as u64;
        if kind == MessageKind::Text {
            self.rx_utf8
                .feed(&buf[carried..filled])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
            if done {
                self.rx_utf8
                    .finish()
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
            }
            let hold = if done { 0 } else { self.rx_utf8.pending() };
            self.carry[..hold].copy_from_slice(&buf[filled - hold..filled]);
            self.carry_len = hold as u8;
            filled -= hold;
        } else {
            self.carry_len = 0;
        }
        buf.truncate(filled);
        if done {
            self.rx = None;
            self.end_message();
        } else if rx.remaining == 0 && !last && !more_output {
            // This frame is all in; the message continues in the next one.
            self.rx = None;
        } else {
            self.rx = Some(rx);
        }
        if buf.is_empty() && !done {
            if more_output {
                // Only held-back bytes: impossible with 256 bytes of room,
                // but never spin.
                return Err(ProtocolError::BadCompressedData("no progress".into()));
            }
            return Ok(None);
        }
        let data = Bytes::from(buf);
        Ok(Some(match kind {
            MessageKind::Text => Event::Text { data, fin: done },
            MessageKind::Binary => Event::Binary { data, fin: done },
        }))
    }

    #[cfg(not(feature = "deflate"))]
    fn on_compressed_data(&mut self, _rx: RxFrame) -> Result<Option<Event>, ProtocolError> {
        Err(ProtocolError::ReservedBits(RSV1))
    }

    /// The message being received ended: ready for the next one.
    fn end_message(&mut self) {
        self.rx_msg = None;
        self.rx_msg_len = 0;
        self.rx_msg_frames = 0;
        self.rx_compressed = false;
        self.rx_msg_out = 0;
        self.rx_whole_text = false;
        self.rx_utf8.reset();
    }

    /// Unmasks the payload of the frame being received in `inbuf` up to
    /// `avail` bytes (`inbuf[0]` is its payload byte `rx.consumed`).
    fn unmask_up_to(&mut self, rx: &RxFrame, avail: usize) {
        let Some(mask) = rx.header.mask else {
            return;
        };
        let done = self.unmasked_in_buf();
        if avail > done {
            let phase = (rx.consumed as usize).wrapping_add(done);
            apply_mask(&mut self.inbuf[done..avail], mask, phase);
            self.unmasked_to = self.inbuf_start() + avail as u64;
        }
    }

    /// Builds a text chunk when a code point straddles frames: the carried
    /// bytes, then `from_buf` bytes of the frame; the last `keep` bytes of
    /// that go back to `carry`. Copies at most one chunk, only in that rare
    /// case.
    fn take_with_carry(&mut self, from_buf: usize, keep: usize) -> Bytes {
        let carried = self.carry_len as usize;
        let mut joined = Vec::with_capacity(carried + from_buf);
        joined.extend_from_slice(&self.carry[..carried]);
        joined.extend_from_slice(&self.inbuf[..from_buf]);
        self.inbuf.advance(from_buf);
        let cut = joined.len().saturating_sub(keep);
        let keep = joined.len() - cut;
        self.carry[..keep].copy_from_slice(&joined[cut..]);
        self.carry_len = keep as u8;
        joined.truncate(cut);
        Bytes::from(joined)
    }

    fn on_control(&mut self, op: OpCode, payload: Bytes) -> Result<Option<Event>, ProtocolError> {
        match op {
            OpCode::Ping => {
                // "It SHOULD respond with Pong frame as soon as is practical",
                // and "an endpoint MAY elect to send a Pong frame for only the
                // most recently processed Ping frame" (§5.5.2, §5.5.3): one
                // pending Pong slot bounds memory under a Ping flood.
                if !self.close_sent {
                    self.pending_pong = Some(payload.clone());
                }
                Ok(Some(Event::Ping(payload)))
            }
            OpCode::Pong => {
                self.ping_sent = None;
                Ok(Some(Event::Pong(payload)))
            }
            OpCode::Close => {
                let (code, reason) = parse_close_payload(&payload)?;
                self.on_close_frame(code, reason);
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    fn on_close_frame(&mut self, code: Option<CloseCode>, reason: String) {
        self.reading = false;
        let initiator = if self.close_sent {
            Initiator::Local
        } else {
            // "If an endpoint receives a Close frame and did not previously
            // send a Close frame, the endpoint MUST send a Close frame in
            // response. ... it typically echos the status code it received."
            // (§5.5.1)
            self.send_close(code, "");
            Initiator::Remote
        };
        self.state = State::Closed;
        self.close_deadline = None;
        self.closed = Some(Box::new(CloseInfo {
            code: code.unwrap_or(CloseCode::NO_STATUS),
            reason,
            initiator,
            error: None,
        }));
        match self.role {
            // "the server MUST close the underlying TCP connection
            // immediately; the client SHOULD wait for the server to close
            // the connection" (§7.1.1); both wait a while for the peer's FIN.
            Role::Server => self.shutdown = ShutdownState::Pending,
            Role::Client => {}
        }
        self.linger();
    }

    // ----- ending ----------------------------------------------------------------

    /// _Fail the WebSocket Connection_ (§7.1.7): send a Close with `code`
    /// unless one was sent, stop reading, shut down.
    fn fail(&mut self, error: ConnectionError, code: CloseCode) {
        if !self.close_sent {
            self.send_close(Some(code), "");
        }
        self.reading = false;
        self.drop_input();
        self.rx = None;
        self.state = State::Closed;
        self.close_deadline = None;
        self.closed = Some(Box::new(CloseInfo {
            code,
            reason: String::new(),
            initiator: Initiator::Local,
            error: Some(error),
        }));
        if self.shutdown == ShutdownState::NotYet {
            self.shutdown = ShutdownState::Pending;
        }
        self.linger();
    }

    /// Ends the connection at once (EOF or close timeout): no more waiting.
    fn finish_now(&mut self, info: CloseInfo) {
        self.state = State::Closed;
        self.close_deadline = None;
        self.linger_deadline = None;
        self.drop_input();
        self.rx = None;
        self.closed = Some(Box::new(info));
        if self.shutdown == ShutdownState::NotYet {
            self.shutdown = ShutdownState::Pending;
        }
        self.finished = true;
    }

    /// Gives back every input buffer: nothing more is read.
    fn drop_input(&mut self) {
        self.inbuf = Input::new();
        self.next = BytesMut::new();
        self.spare = BytesMut::new();
    }

    /// Waits for the peer's FIN for at most the close timeout.
    fn linger(&mut self) {
        self.drop_input();
        if self.eof {
            if self.shutdown == ShutdownState::NotYet {
                self.shutdown = ShutdownState::Pending;
            }
            self.finished = true;
        } else {
            self.linger_deadline = self.config.close_timeout.map(|t| self.now + t);
        }
    }

    // ----- sending ---------------------------------------------------------------

    fn check_open(&self) -> Result<(), SendError> {
        match self.state {
            State::Open => Ok(()),
            State::Closing => Err(SendError::Closing),
            State::Closed => Err(SendError::Closed),
        }
    }

    fn send_message(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        compress: bool,
    ) -> Result<(), SendError> {
        self.check_whole_message()?;
        self.reply(Ok(())).queue(kind, data, compress);
        Ok(())
    }

    /// The sending side of the connection, for whole messages: `ready`
    /// says whether they may be sent.
    #[inline]
    fn reply(&mut self, ready: Result<(), SendError>) -> Reply<'_> {
        reply!(self, ready)
    }

    /// A whole message may be queued: the connection is open and no
    /// streamed message is in progress.
    fn check_whole_message(&self) -> Result<(), SendError> {
        self.check_open()?;
        if self.tx_msg.is_some() {
            return Err(SendError::MessageInProgress);
        }
        Ok(())
    }

    fn deflate_on(&self) -> bool {
        #[cfg(feature = "deflate")]
        return self.deflate.is_some();
        #[cfg(not(feature = "deflate"))]
        false
    }

    /// Compresses one chunk of a streamed message and writes what the
    /// compressor produced (the first and last chunks always give a frame).
    #[cfg(feature = "deflate")]
    fn write_compressed_chunk(&mut self, kind: MessageKind, first: bool, data: &[u8], fin: bool) {
        let Some(codec) = self.deflate.as_mut() else {
            return;
        };
        match codec.compress(data, fin) {
            Some(z) => {
                if first || fin || !z.is_empty() {
                    self.write_data(kind, first, &z, fin, if first { RSV1 } else { 0 });
                }
                if let Some(codec) = self.deflate.as_mut() {
                    codec.return_scratch(z);
                }
            }
            None => self.fail(
                ConnectionError::Compression("deflate stream error".into()),
                CloseCode::INTERNAL_ERROR,
            ),
        }
    }

    #[cfg(not(feature = "deflate"))]
    fn write_compressed_chunk(&mut self, kind: MessageKind, first: bool, data: &[u8], fin: bool) {
        self.write_data(kind, first, data, fin, 0);
    }

    /// Writes `data` as one or more data frames; `first` says whether the
    /// first frame starts the message, `fin` whether the last one ends it,
    /// `rsv` goes on the first frame.
    fn write_data(&mut self, kind: MessageKind, first: bool, data: &[u8], fin: bool, rsv: u8) {
        let max = self.config.send_fragment_size.max(1);
        write_data_to(
            &mut self.out,
            &mut self.rng,
            max,
            (kind, first),
            data,
            fin,
            rsv,
        );
    }

    fn send_control(&mut self, op: OpCode, payload: &[u8]) -> Result<(), SendError> {
        self.check_open()?;
        if payload.len() > 125 {
            return Err(SendError::ControlPayloadTooLong(payload.len()));
        }
        self.write_frame(op, true, payload);
        Ok(())
    }

    fn send_close(&mut self, code: Option<CloseCode>, reason: &str) {
        // A Pong owed for an earlier Ping goes out before the Close: nothing
        // may follow a Close.
        self.flush_pong();
        let mut payload = [0u8; 125];
        let n = match code {
            Some(c) => {
                payload[..2].copy_from_slice(&c.0.to_be_bytes());
                let r = reason.len().min(123);
                payload[2..2 + r].copy_from_slice(&reason.as_bytes()[..r]);
                2 + r
            }
            None => 0,
        };
        self.write_frame(OpCode::Close, true, &payload[..n]);
        self.close_sent = true;
        self.pending_pong = None;
    }

    /// Writes the pending Pong, if any: a check inlined into every
    /// transmit, the write out of line.
    #[inline]
    fn flush_pong(&mut self) {
        if self.pending_pong.is_some() {
            self.write_pong();
        }
    }

    #[inline(never)]
    fn write_pong(&mut self) {
        if let Some(p) = self.pending_pong.take() {
            if !self.close_sent {
                self.write_frame(OpCode::Pong, true, &p);
            }
        }
    }

    fn write_frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        self.write_frame_rsv(opcode, fin, 0, payload);
    }

    fn write_frame_rsv(&mut self, opcode: OpCode, fin: bool, rsv: u8, payload: &[u8]) {
        write_frame_to(&mut self.out, &mut self.rng, opcode, fin, rsv, payload);
    }
}

/// Appends one frame to `out`, masked with the next key from `rng` (the
/// client role's; a server has none).
#[inline]
fn write_frame_to(
    out: &mut Vec<u8>,
    rng: &mut Option<Box<StdRng>>,
    opcode: OpCode,
    fin: bool,
    rsv: u8,
    payload: &[u8],
) {
    let mask = rng.as_mut().map(|rng| rng.next_u32().to_ne_bytes());
    let header = FrameHeader {
        fin,
        rsv,
        opcode,
        mask,
        len: payload.len() as u64,
    };
    let mut hbuf = [0u8; MAX_HEADER_LEN];
    let hlen = header.encode_into(&mut hbuf);
    out.reserve(hlen + payload.len());
    out.extend_from_slice(&hbuf[..hlen]);
    match mask {
        Some(mask) => extend_masked(out, payload, mask),
        None => out.extend_from_slice(payload),
    }
}

/// Appends `data` as one or more data frames of at most `max` payload
/// bytes: `kind` and whether the first frame starts the message, `fin`
/// whether the last one ends it, `rsv` on the first frame.
#[inline(always)]
fn write_data_to(
    out: &mut Vec<u8>,
    rng: &mut Option<Box<StdRng>>,
    max: usize,
    (kind, first): (MessageKind, bool),
    data: &[u8],
    fin: bool,
    rsv: u8,
) {
    let mut opcode = match (first, kind) {
        (false, _) => OpCode::Continuation,
        (true, MessageKind::Text) => OpCode::Text,
        (true, MessageKind::Binary) => OpCode::Binary,
    };
    let mut rest = data;
    let mut rsv = rsv;
    loop {
        let n = rest.len().min(max);
        let (piece, tail) = rest.split_at(n);
        let last = tail.is_empty();
        write_frame_to(out, rng, opcode, fin && last, rsv, piece);
        if last {
            break;
        }
        rest = tail;
        opcode = OpCode::Continuation;
        rsv = 0;
    }
}

/// Sends whole messages on the connection that lent a message to the
/// closure of [`Connection::poll_message_reply`]: a request answered
/// straight from the bytes it arrived in, with no copy of its own first
/// (the lent message borrows the connection, so its other methods are out
/// of reach while the closure runs).
///
/// The same frames as [`Connection::send_text`] and
/// [`Connection::send_binary`] would queue at that point (compressed when
/// permessage-deflate is on, masked in the client role, fragmented at
/// [`Config::send_fragment_size`](crate::Config::send_fragment_size)), and
/// the same errors: after a Close was sent or received, or while a message
/// started with [`Connection::send_chunk`] is unfinished, nothing is
/// queued.
pub struct Reply<'a> {
    out: &'a mut Vec<u8>,
    rng: &'a mut Option<Box<StdRng>>,
    #[cfg(feature = "deflate")]
    deflate: &'a mut Option<Box<crate::deflate::Codec>>,
    max: usize,
    ready: Result<(), SendError>,
}

impl std::fmt::Debug for Reply<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

impl Reply<'_> {
    /// Queues a text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.ready.clone()?;
        self.queue(MessageKind::Text, text.as_bytes(), true);
        Ok(())
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.ready.clone()?;
        self.queue(MessageKind::Binary, data, true);
        Ok(())
    }

    /// Writes a whole message's frames, compressed if `compress` and the
    /// extension wants it.
    #[inline(always)]
    fn queue(&mut self, kind: MessageKind, data: &[u8], compress: bool) {
        #[cfg(feature = "deflate")]
        if compress {
            if let Some(codec) = self.deflate.as_mut().filter(|c| c.wants(data.len())) {
                // A compressor failure (never seen with a valid state) falls
                // back to sending the message as it is.
                if let Some(z) = codec.compress(data, true) {
                    write_data_to(self.out, self.rng, self.max, (kind, true), &z, true, RSV1);
                    codec.return_scratch(z);
                    return;
                }
            }
        }
        #[cfg(not(feature = "deflate"))]
        let _ = compress;
        write_data_to(self.out, self.rng, self.max, (kind, true), data, true, 0);
    }
}

/// Splits a Close payload into code and reason (§5.5.1, §7.4).
fn parse_close_payload(payload: &[u8]) -> Result<(Option<CloseCode>, String), ProtocolError> {
    match payload {
        [] => Ok((None, String::new())),
        [_] => Err(ProtocolError::BadClosePayload),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid_on_wire() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok((Some(code), reason.to_owned()))
        }
    }
}
