//! HTTP pieces shared by both sides of the handshake.

use std::mem::MaybeUninit;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha1::{Digest, Sha1};

use crate::error::{BuildError, HandshakeError};

/// The GUID of RFC 6455 §1.3, appended to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: "the base64-encoded
/// SHA-1 of the concatenation of the |Sec-WebSocket-Key| (as a string, not
/// base64-decoded) with the string "258EAFA5-E914-47DA-95CA-C5AB0DC85B11""
/// (§4.2.2).
///
/// ```
/// assert_eq!(
///     ws_proto::handshake::http::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
/// );
/// ```
pub fn accept_key(key: &[u8]) -> String {
    accept_key_in(key, &mut [0; ACCEPT_KEY_LEN]).to_owned()
}

/// Length of a `Sec-WebSocket-Accept` value: a SHA-1 digest (20 bytes)
/// in base64.
pub(crate) const ACCEPT_KEY_LEN: usize = 28;

/// [`accept_key`] written into `buf`, without an allocation.
pub(crate) fn accept_key_in<'a>(key: &[u8], buf: &'a mut [u8; ACCEPT_KEY_LEN]) -> &'a str {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    // 20 bytes are always 28 characters of base64, which is ASCII (an
    // empty key on failure would let a client accept an empty header).
    let Ok(n) = BASE64.encode_slice(sha.finalize(), buf) else {
        unreachable!("20 bytes are 28 characters of base64")
    };
    std::str::from_utf8(&buf[..n]).unwrap_or_else(|_| unreachable!("base64 is ASCII"))
}

/// HTTP header lines in order, repeated names kept, names as received.
///
/// Every name and value lives in one buffer, each line a pair of ranges
/// into it: a parsed head costs two allocations however many lines it has
/// (a pair of strings per line cost two each).
#[derive(Clone, Default)]
pub struct Headers {
    /// The names and values, one after another.
    bytes: Vec<u8>,
    /// Per line: where its name ends and where its value ends in `bytes`
    /// (the name starts where the line before it ended).
    lines: Vec<(u32, u32)>,
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether there are no header lines.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Appends a header line.
    ///
    /// # Panics
    /// If the names and values together pass 4 GiB.
    pub fn push(&mut self, name: impl AsRef<str>, value: impl AsRef<[u8]>) {
        self.push_bytes(name.as_ref(), value.as_ref());
    }

    fn push_bytes(&mut self, name: &str, value: &[u8]) {
        let name_end = self.bytes.len() + name.len();
        let end = name_end + value.len();
        let offset = |n: usize| u32::try_from(n).expect("header lines past 4 GiB");
        let line = (offset(name_end), offset(end));
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.extend_from_slice(value);
        self.lines.push(line);
    }

    /// The first value of `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.raw()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The first value of `name`, if it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.raw()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Number of lines named `name`.
    pub fn count(&self, name: &str) -> usize {
        self.get_all(name).count()
    }

    /// Every (name, value) line, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        // Names come in as `&str` (from `push`, or httparse, which takes
        // only token characters): never the default.
        self.raw()
            .map(|(n, v)| (std::str::from_utf8(n).unwrap_or_default(), v))
    }

    /// Every (name, value) line, the name as bytes.
    fn raw(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut start = 0;
        self.lines.iter().map(move |&(name_end, end)| {
            let (name_end, end) = (name_end as usize, end as usize);
            let line = (&self.bytes[start..name_end], &self.bytes[name_end..end]);
            start = end;
            line
        })
    }

    /// The comma-separated items of every `name` line, trimmed, empty ones
    /// dropped (RFC 7230 §7 list syntax).
    pub fn tokens(&self, name: &str) -> Vec<String> {
        self.get_all(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .map(trim)
            .filter(|t| !t.is_empty())
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect()
    }

    /// Whether some `name` line lists `token` (ASCII case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
    }

    fn from_httparse(headers: &[httparse::Header<'_>]) -> Self {
        let size = headers.iter().map(|h| h.name.len() + h.value.len()).sum();
        let mut out = Headers {
            bytes: Vec::with_capacity(size),
            lines: Vec::with_capacity(headers.len()),
        };
        for h in headers {
            out.push_bytes(h.name, h.value);
        }
        out
    }
}

/// Line by line, as a list of (name, value) pairs; a value's bytes as
/// `[u8]::escape_ascii` shows them (quotes, backslashes and bytes that are
/// not printable ASCII escaped).
impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Value<'a>(&'a [u8]);
        impl std::fmt::Debug for Value<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "\"{}\"", self.0.escape_ascii())
            }
        }
        f.debug_list()
            .entries(self.iter().map(|(n, v)| (n, Value(v))))
            .finish()
    }
}

/// The same lines in the same order (names as received: case counts).
impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

/// `s` without leading and trailing spaces and tabs (HTTP OWS).
pub(crate) fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Whether `s` is an HTTP token (RFC 7230 §3.2.6 `1*tchar`).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Headers the library writes itself in a request; an application may not
/// set them.
const MANAGED: &[&str] = &[
    "host",
    "upgrade",
    "connection",
    "content-length",
    "transfer-encoding",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

/// Headers the library writes itself in a response.
const MANAGED_IN_RESPONSE: &[&str] = &[
    "upgrade",
    "connection",
    "content-length",
    "transfer-encoding",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

/// Checks a header an application wants to add to a request: a token name,
/// a value without CR, LF or NUL (no header injection), and not a managed
/// one.
pub(crate) fn check_header(name: &str, value: &str) -> Result<(), BuildError> {
    check_header_in(name, value, MANAGED)
}

/// The same check for a response header (which may carry, say,
/// `Sec-WebSocket-Version` with a 426).
pub(crate) fn check_response_header(name: &str, value: &str) -> Result<(), BuildError> {
    check_header_in(name, value, MANAGED_IN_RESPONSE)
}

fn check_header_in(name: &str, value: &str, managed: &[&str]) -> Result<(), BuildError> {
    if !is_token(name) {
        return Err(BuildError::Header(format!("{name:?} is not a header name")));
    }
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | b'\0')) {
        return Err(BuildError::Header(format!(
            "value of {name} contains CR, LF or NUL"
        )));
    }
    if managed.iter().any(|m| m.eq_ignore_ascii_case(name)) {
        return Err(BuildError::Header(format!(
            "{name} is managed by the library"
        )));
    }
    Ok(())
}

/// Finds the end of an HTTP head as bytes arrive, scanning each byte once.
#[derive(Debug, Default, Clone)]
pub(crate) struct HeadScanner {
    buf: Vec<u8>,
    scanned: usize,
}

/// A complete head and what followed it.
pub(crate) struct Head {
    pub(crate) bytes: Vec<u8>,
    pub(crate) rest: Vec<u8>,
}

impl HeadScanner {
    /// Appends `data`; returns the head once its blank line has arrived.
    /// Fails once `max` bytes have arrived without one.
    pub(crate) fn push(&mut self, data: &[u8], max: usize) -> Result<Option<Head>, HandshakeError> {
        // Keep at most `max` bytes of head plus what followed it in this
        // piece; never more than `max + data.len()`.
        self.buf.extend_from_slice(data);
        let from = self.scanned.saturating_sub(3);
        let end = find_blank_line(&self.buf[from..]).map(|i| from + i);
        match end {
            Some(end) if end <= max => {
                let rest = self.buf.split_off(end);
                let bytes = std::mem::take(&mut self.buf);
                self.scanned = 0;
                Ok(Some(Head { bytes, rest }))
            }
            Some(_) => Err(HandshakeError::HeadTooLarge { max }),
            None if self.buf.len() >= max => Err(HandshakeError::HeadTooLarge { max }),
            None => {
                self.scanned = self.buf.len();
                Ok(None)
            }
        }
    }

    /// Bytes held (of an incomplete head).
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf
    }
}

/// Index just past the first CRLFCRLF (or LFLF) in `buf`: the line feeds
/// found eight bytes at a time, then what follows each one looked at.
fn find_blank_line(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = find_newline(&buf[from..]).map(|i| from + i) {
        match &buf[i + 1..] {
            [b'\n', ..] => return Some(i + 2),
            [b'\r', b'\n', ..] => return Some(i + 3),
            _ => from = i + 1,
        }
    }
    None
}

/// Index of the first `\n` in `s`, a word of eight bytes at a time: a
/// line feed is a zero byte of the word XOR eight line feeds, and the
/// lowest zero byte is the lowest high bit of `(x - 0x01..01) & !x &
/// 0x80..80` (a borrow runs only upward from a zero byte). A head of 150
/// bytes took about 1 000 instructions byte by byte.
fn find_newline(s: &[u8]) -> Option<usize> {
    const LF: u64 = u64::from_ne_bytes([b'\n'; 8]);
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut words = s.chunks_exact(8);
    let mut at = 0;
    for w in &mut words {
        let Ok(w) = <[u8; 8]>::try_from(w) else {
            unreachable!("chunks_exact")
        };
        let x = u64::from_le_bytes(w) ^ LF;
        let found = x.wrapping_sub(ONES) & !x & HIGHS;
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| at + i)
}

/// Maps an httparse failure.
pub(crate) fn parse_error(e: httparse::Error, max_headers: usize) -> HandshakeError {
    match e {
        httparse::Error::TooManyHeaders => HandshakeError::TooManyHeaders { max: max_headers },
        other => HandshakeError::Malformed(other.to_string()),
    }
}

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) version: u8,
    pub(crate) headers: Headers,
}

/// Header slots for the parser on the stack, up to this many (the
/// default limit, `Config::max_headers`); a larger limit takes them from
/// the heap. A request's slots are not even initialised.
const STACK_HEADERS: usize = 64;

pub(crate) fn parse_request(
    head: &[u8],
    max_headers: usize,
) -> Result<RequestHead, HandshakeError> {
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut heap = Vec::new();
    let storage = if max_headers <= STACK_HEADERS {
        &mut stack[..max_headers]
    } else {
        heap.resize_with(max_headers, MaybeUninit::uninit);
        &mut heap[..]
    };
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(head, storage) {
        Ok(httparse::Status::Complete(_)) => Ok(RequestHead {
            method: req.method.unwrap_or_default().to_owned(),
            target: req.path.unwrap_or_default().to_owned(),
            version: req.version.unwrap_or(0),
            headers: Headers::from_httparse(req.headers),
        }),
        Ok(httparse::Status::Partial) => Err(HandshakeError::Malformed("incomplete head".into())),
        Err(e) => Err(parse_error(e, max_headers)),
    }
}

/// A parsed response head.
pub(crate) struct ResponseHead {
    pub(crate) status: u16,
    pub(crate) reason: String,
    pub(crate) headers: Headers,
}

pub(crate) fn parse_response(
    head: &[u8],
    max_headers: usize,
) -> Result<ResponseHead, HandshakeError> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap = Vec::new();
    let storage = if max_headers <= STACK_HEADERS {
        &mut stack[..max_headers]
    } else {
        heap.resize(max_headers, httparse::EMPTY_HEADER);
        &mut heap[..]
    };
    let mut resp = httparse::Response::new(storage);
    match resp.parse(head) {
        Ok(httparse::Status::Complete(_)) => Ok(ResponseHead {
            status: resp.code.unwrap_or(0),
            reason: resp.reason.unwrap_or_default().to_owned(),
            headers: Headers::from_httparse(resp.headers),
        }),
        Ok(httparse::Status::Partial) => Err(HandshakeError::Malformed("incomplete head".into())),
        Err(e) => Err(parse_error(e, max_headers)),
    }
}

/// The reason phrase of a status (RFC 9110 §15), or a generic one.
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => match status / 100 {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        },
    }
}

/// Appends an ordinary HTTP/1.1 response: status line, headers,
/// Content-Length, `Connection: close`, body. For answers outside a
/// handshake (a server refusing a connection over its limits). Refuses a
/// status outside 100-999, 101, and headers that [`ClientRequest::header`]
/// would refuse.
///
/// [`ClientRequest::header`]: crate::ClientRequest::header
pub fn write_response(
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), BuildError> {
    if !(100..=999).contains(&status) || status == 101 {
        return Err(BuildError::Status(status));
    }
    for (n, v) in headers {
        check_response_header(n, v)?;
    }
    write_response_unchecked(status, headers, body, out);
    Ok(())
}

pub(crate) fn write_response_unchecked(
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
    for (n, v) in headers {
        write_header(out, n, v);
    }
    write_header(out, "Content-Length", &body.len().to_string());
    write_header(out, "Connection", "close");
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

pub(crate) fn write_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A head with `n` headers after its first line.
    fn head(first: &str, n: usize) -> Vec<u8> {
        let mut h = format!("{first}\r\n").into_bytes();
        for i in 0..n {
            h.extend_from_slice(format!("X-{i}: v{i}\r\n").as_bytes());
        }
        h.extend_from_slice(b"\r\n");
        h
    }

    #[test]
    fn header_limits_on_the_stack_and_above_it() {
        for (max, n) in [(3, 3), (STACK_HEADERS, STACK_HEADERS), (100, 100)] {
            let req = parse_request(&head("GET / HTTP/1.1", n), max).unwrap();
            assert_eq!(
                req.headers.get_str(&format!("x-{}", n - 1)),
                Some(&*format!("v{}", n - 1))
            );
            let resp = parse_response(&head("HTTP/1.1 101 Switching Protocols", n), max).unwrap();
            assert_eq!(resp.status, 101);
            assert_eq!(resp.headers.get_str("x-0"), Some("v0"));
            assert!(matches!(
                parse_request(&head("GET / HTTP/1.1", n + 1), max),
                Err(HandshakeError::TooManyHeaders { max: m }) if m == max
            ));
            assert!(matches!(
                parse_response(&head("HTTP/1.1 101 Switching Protocols", n + 1), max),
                Err(HandshakeError::TooManyHeaders { max: m }) if m == max
            ));
        }
    }

    #[test]
    fn rfc_1_3_accept_key() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn tokens_are_case_insensitive_comma_lists() {
        let mut h = Headers::new();
        h.push("connection", "keep-alive, Upgrade");
        h.push("Connection", " close ");
        h.push("X", "a,,b");
        assert!(h.has_token("CONNECTION", "upgrade"));
        assert!(h.has_token("Connection", "CLOSE"));
        assert!(!h.has_token("Connection", "keep"));
        assert_eq!(h.tokens("x"), ["a", "b"]);
        assert_eq!(h.count("connection"), 2);
        assert_eq!(h.get_str("CONNECTION"), Some("keep-alive, Upgrade"));
    }

    #[test]
    fn blank_lines_found_word_by_word_as_byte_by_byte() {
        fn naive(buf: &[u8]) -> Option<usize> {
            (0..buf.len()).find_map(|i| match &buf[i..] {
                [b'\n', b'\n', ..] => Some(i + 2),
                [b'\n', b'\r', b'\n', ..] => Some(i + 3),
                _ => None,
            })
        }
        // Line ends, their neighbours (0x0a with other high bits, 0x0b,
        // 0x09) and high bytes, at every place in and across words.
        let alphabet = [b'\n', b'\r', b'a', 0x8a, 0x0b, 0x09, 0xff, 0x00];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..2000 {
            let len = n % 41;
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % 8) as usize]
                })
                .collect();
            assert_eq!(find_blank_line(&buf), naive(&buf), "{buf:?}");
            let nl = buf.iter().position(|&b| b == b'\n');
            assert_eq!(find_newline(&buf), nl, "{buf:?}");
        }
        assert_eq!(
            find_blank_line(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest"),
            Some(27)
        );
    }

    #[test]
    fn headers_keep_lines_in_order_in_one_buffer() {
        let req = b"GET /x HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nx-two: 1\r\nX-Two:  2 \r\n\r\n";
        let h = parse_request(req, 8).unwrap().headers;
        let lines: Vec<(&str, &[u8])> = h.iter().collect();
        assert_eq!(
            lines,
            [
                ("Host", &b"a"[..]),
                ("X-Empty", b""),
                ("x-two", b"1"),
                ("X-Two", b"2"),
            ]
        );
        assert_eq!(h.len(), 4);
        assert_eq!(h.get("X-EMPTY"), Some(&b""[..]));
        assert_eq!(h.get("missing"), None);
        assert_eq!(h.get_all("x-TWO").collect::<Vec<_>>(), [b"1", b"2"]);
        // Equal to the same lines pushed one by one; names as received.
        let mut pushed = Headers::new();
        for (n, v) in &lines {
            pushed.push(n, v);
        }
        assert_eq!(pushed, h);
        pushed.push("Host", "b");
        assert_ne!(pushed, h);
        let mut renamed = Headers::new();
        for (n, v) in &lines {
            renamed.push(n.to_ascii_lowercase(), v);
        }
        assert_ne!(renamed, h);
        assert_eq!(format!("{:?}", Headers::from_httparse(&[])), "[]");
        assert_eq!(
            format!("{renamed:?}").lines().next(),
            Some(r#"[("host", "a"), ("x-empty", ""), ("x-two", "1"), ("x-two", "2")]"#)
        );
        renamed.push("bin", [0xff, b'"']);
        assert!(format!("{renamed:?}").ends_with(r#"("bin", "\xff\"")]"#));
    }

    #[test]
    fn header_injection_and_managed_headers_refused() {
        assert!(check_header("X-Token", "abc").is_ok());
        assert!(matches!(
            check_header("X-Token", "a\r\nEvil: 1"),
            Err(BuildError::Header(_))
        ));
        assert!(matches!(
            check_header("Bad Name", "a"),
            Err(BuildError::Header(_))
        ));
        assert!(matches!(
            check_header("sec-websocket-key", "a"),
            Err(BuildError::Header(_))
        ));
        assert!(matches!(
            check_header("Host", "a"),
            Err(BuildError::Header(_))
        ));
    }

    #[test]
    fn scanner_finds_head_byte_by_byte_and_keeps_the_rest() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nEXTRA";
        let mut s = HeadScanner::default();
        let mut got = None;
        for (i, b) in input.iter().enumerate() {
            if let Some(h) = s.push(std::slice::from_ref(b), 1000).unwrap() {
                got = Some((i, h));
                break;
            }
        }
        let (i, head) = got.expect("head found");
        assert_eq!(i, input.len() - 6);
        assert_eq!(head.bytes, &input[..input.len() - 5]);
        assert!(head.rest.is_empty());
        let mut s = HeadScanner::default();
        let head = s.push(input, 1000).unwrap().unwrap();
        assert_eq!(head.rest, b"EXTRA");
    }

    #[test]
    fn scanner_refuses_a_head_past_the_limit() {
        let mut s = HeadScanner::default();
        let mut err = None;
        for _ in 0..200 {
            match s.push(b"aaaaaaaaaa", 1000) {
                Ok(None) => {}
                Ok(Some(_)) => panic!("no blank line was sent"),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        assert_eq!(err, Some(HandshakeError::HeadTooLarge { max: 1000 }));
        assert!(s.buffered().len() <= 1010);
    }
}
