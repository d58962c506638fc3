//! The connection's input buffer: a `BytesMut` whose consumed start is
//! dropped lazily.

use std::ops::{Deref, DerefMut};

use bytes::{Buf, BytesMut};

/// Buffered input. Seen from outside, a `BytesMut`: its bytes and `len`
/// are those the buffer would have, and so is `capacity` until a
/// [`clear`](Self::clear), from which on it may be larger. But
/// [`advance`](Self::advance) only moves a cursor: `BytesMut::advance` is
/// a call of about 35 instructions that the compiler does not inline,
/// paid for every small message taken from a batch of input. The
/// consumed bytes leave the `BytesMut` (one `advance` for the batch)
/// before it is appended to, split or replaced.
#[derive(Default)]
pub(super) struct Input {
    buf: BytesMut,
    /// Bytes at the start of `buf` consumed already.
    head: usize,
    /// The largest capacity `buf` had when bytes were split off it or its
    /// start was dropped: what was split shares the allocation, which
    /// `buf` keeps alive (and may reclaim) however little room it has
    /// left itself. Reset when `buf` is replaced.
    split_room: usize,
}

impl Input {
    pub(super) fn new() -> Input {
        Input::default()
    }

    /// Drops the consumed bytes from `buf`.
    #[inline]
    fn settle(&mut self) {
        if self.head != 0 {
            self.split_room = self.split_room.max(self.buf.capacity());
            self.buf.advance(self.head);
            self.head = 0;
        }
    }

    /// The buffer itself, to append to or replace.
    #[inline]
    pub(super) fn bytes_mut(&mut self) -> &mut BytesMut {
        self.settle();
        &mut self.buf
    }

    #[inline]
    pub(super) fn len(&self) -> usize {
        self.buf.len() - self.head
    }

    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.buf.len() == self.head
    }

    /// As `BytesMut::capacity` after the consumed bytes are dropped.
    #[inline]
    pub(super) fn capacity(&self) -> usize {
        self.buf.capacity() - self.head
    }

    /// Consumes the first `n` bytes.
    ///
    /// # Panics
    ///
    /// If fewer than `n` bytes are buffered, as `BytesMut::advance` does.
    #[inline]
    pub(super) fn advance(&mut self, n: usize) {
        assert!(n <= self.len(), "advance past the end of the input");
        self.head += n;
    }

    /// Empties the buffer where it stands. Its room is kept, that of the
    /// consumed bytes included (they were never split off: splitting
    /// drops them from the buffer first), so the capacity may be larger
    /// than that of a `BytesMut` that was advanced, whose start has moved.
    /// It is then the whole room the buffer holds: an idle connection
    /// whose buffer grew past `IDLE_INPUT_CAPACITY` gives it back, where
    /// the smaller figure could hide it.
    #[inline]
    pub(super) fn clear(&mut self) {
        self.buf.clear();
        self.head = 0;
    }

    #[inline]
    pub(super) fn split_to(&mut self, n: usize) -> BytesMut {
        self.split_room = self.split_room.max(self.buf.capacity());
        self.settle();
        self.buf.split_to(n)
    }

    /// The room this buffer may hold: its capacity, or the larger
    /// allocation that bytes split off it share, which it keeps alive.
    #[inline]
    pub(super) fn held(&self) -> usize {
        self.capacity().max(self.split_room)
    }

    /// Drops the first `skip` bytes and takes the `n` after them: one
    /// `BytesMut::advance` for those and the bytes consumed before.
    ///
    /// # Panics
    ///
    /// If fewer than `skip + n` bytes are buffered.
    #[inline(always)]
    pub(super) fn split_after(&mut self, skip: usize, n: usize) -> BytesMut {
        assert!(skip <= self.len(), "advance past the end of the input");
        let at = self.head + skip;
        self.head = 0;
        self.split_room = self.split_room.max(self.buf.capacity());
        self.buf.advance(at);
        self.buf.split_to(n)
    }

    #[inline]
    pub(super) fn reserve(&mut self, additional: usize) {
        self.bytes_mut().reserve(additional);
    }

    #[inline]
    pub(super) fn extend_from_slice(&mut self, data: &[u8]) {
        self.bytes_mut().extend_from_slice(data);
    }

    #[inline]
    pub(super) fn unsplit(&mut self, other: BytesMut) {
        self.bytes_mut().unsplit(other);
    }

    /// Puts `buf` in its place; returns what was buffered.
    #[inline]
    pub(super) fn replace(&mut self, buf: BytesMut) -> BytesMut {
        self.settle();
        self.split_room = 0;
        std::mem::replace(&mut self.buf, buf)
    }
}

impl std::fmt::Debug for Input {
    /// The buffered bytes' count and the room, not the bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

impl Deref for Input {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        &self.buf[self.head..]
    }
}

impl DerefMut for Input {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.head..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `BytesMut` driven the same way, side by side.
    fn same(input: &Input, model: &BytesMut) {
        assert_eq!(&input[..], &model[..]);
        assert_eq!(input.len(), model.len());
        assert_eq!(input.is_empty(), model.is_empty());
        assert_eq!(input.capacity(), model.capacity());
    }

    #[test]
    fn behaves_as_a_bytes_mut() {
        let mut input = Input::new();
        let mut model = BytesMut::new();
        same(&input, &model);
        let data: Vec<u8> = (0..200u8).collect();
        input.reserve(100);
        model.reserve(100);
        input.extend_from_slice(&data[..100]);
        model.extend_from_slice(&data[..100]);
        same(&input, &model);
        // Cursor moves, then a change that drops the consumed bytes.
        input.advance(10);
        model.advance(10);
        input.advance(5);
        model.advance(5);
        same(&input, &model);
        input[0] ^= 0xff;
        model[0] ^= 0xff;
        same(&input, &model);
        input.extend_from_slice(&data[100..]);
        model.extend_from_slice(&data[100..]);
        same(&input, &model);
        input.advance(3);
        model.advance(3);
        assert_eq!(input.split_to(7), model.split_to(7));
        same(&input, &model);
        input.advance(2);
        model.advance(2);
        assert_eq!(input.split_after(4, 6), {
            model.advance(4);
            model.split_to(6)
        });
        same(&input, &model);
        input.advance(1);
        model.advance(1);
        let rest = input.len();
        let tail = model.split_off(rest - 20);
        let len = input.len();
        let tail2 = input.bytes_mut().split_off(len - 20);
        assert_eq!(tail, tail2);
        same(&input, &model);
        input.unsplit(tail2);
        model.unsplit(tail);
        same(&input, &model);
        input.advance(2);
        model.advance(2);
        let old = input.replace(BytesMut::from(&b"abc"[..]));
        let old_model = std::mem::replace(&mut model, BytesMut::from(&b"abc"[..]));
        assert_eq!(old, old_model);
        same(&input, &model);
        input.advance(1);
        model.advance(1);
        same(&input, &model);
        // Emptied: unlike the `BytesMut`, the consumed byte's room is
        // kept too (it is not shared with anything).
        input.clear();
        model.clear();
        assert!(input.is_empty());
        assert_eq!(input.capacity(), model.capacity() + 1);
        input.extend_from_slice(b"xyz");
        assert_eq!(input.capacity(), 3, "written where the buffer starts");
        assert_eq!(&input[..], b"xyz");
    }

    #[test]
    fn advanced_to_the_end_and_split_after_any_cursor() {
        let data: Vec<u8> = (0..64u8).collect();
        let mut input = Input::new();
        let mut model = BytesMut::new();
        input.extend_from_slice(&data);
        model.extend_from_slice(&data);
        input.advance(5);
        model.advance(5);
        assert_eq!(input.split_after(0, 3), model.split_to(3));
        same(&input, &model);
        let len = input.len();
        input.advance(len);
        model.advance(len);
        same(&input, &model);
        assert!(input.is_empty() && input[..].is_empty());
        input.extend_from_slice(b"abc");
        model.extend_from_slice(b"abc");
        assert_eq!(&input[..], b"abc");
        input.advance(3);
        model.advance(3);
        let old = input.replace(BytesMut::new());
        assert_eq!(old, std::mem::take(&mut model));
        same(&input, &model);
    }

    #[test]
    fn what_was_split_off_stays_when_the_room_is_reused() {
        let data: Vec<u8> = (0..32u8).collect();
        let mut input = Input::new();
        input.extend_from_slice(&data);
        let taken = input.split_to(4).freeze();
        let lent = input.split_after(2, 4).freeze();
        input.advance(6);
        input.clear();
        input.extend_from_slice(&[0xee; 64]);
        assert_eq!(taken, data[..4]);
        assert_eq!(lent, data[6..10]);
        assert_eq!(&input[..], &[0xee; 64][..]);
    }

    #[test]
    fn held_counts_the_room_that_settling_and_splitting_leave_behind() {
        let mut input = Input::new();
        input.reserve(10_000);
        input.extend_from_slice(&[1; 9000]);
        let room = input.capacity();
        // Consumed, then settled by an append: the `BytesMut` loses the
        // room before its new start, which it still keeps alive.
        input.advance(8990);
        input.extend_from_slice(b"x");
        assert!(input.capacity() < room - 8000);
        assert_eq!(input.held(), room);
        input.clear();
        assert_eq!(input.held(), room);
        // Split off: the same allocation.
        input.extend_from_slice(b"y");
        let taken = input.split_to(1);
        assert_eq!(input.held(), room);
        drop(taken);
        // Replaced: the new buffer's room only.
        input.replace(BytesMut::with_capacity(100));
        assert_eq!(input.held(), input.capacity());
        assert!(input.held() < 200);
    }

    #[test]
    #[should_panic(expected = "advance past the end")]
    fn split_after_past_the_end_panics() {
        let mut input = Input::new();
        input.extend_from_slice(b"abc");
        input.advance(1);
        input.split_after(3, 0);
    }

    #[test]
    #[should_panic(expected = "advance past the end")]
    fn advance_past_the_end_panics() {
        let mut input = Input::new();
        input.extend_from_slice(b"ab");
        input.advance(1);
        input.advance(2);
    }
}
