//! The server side of the opening handshake (RFC 6455 §4.2).

use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::http::{
    accept_key_in, check_response_header, is_token, parse_request, write_header, write_response,
    write_response_unchecked, HeadScanner, Headers, RequestHead, ACCEPT_KEY_LEN,
};
use crate::config::Config;
use crate::connection::{Connection, Role};
use crate::error::{BuildError, HandshakeError};

/// A server handshake in progress: feed request bytes to
/// [`handle_data`](Self::handle_data) until it yields an [`Incoming`].
#[derive(Debug)]
pub struct ServerHandshake {
    config: Arc<Config>,
    scanner: HeadScanner,
    done: bool,
}

/// What arrived: an upgrade to accept or reject, or a plain HTTP request.
#[derive(Debug)]
#[must_use = "an incoming request must be accepted, rejected or answered"]
pub enum Incoming {
    /// A WebSocket upgrade request that passed the §4.2.1 checks (boxed: it
    /// carries the connection's configuration).
    Upgrade(Box<UpgradeRequest>),
    /// An ordinary HTTP request (no `Upgrade: websocket`), for the
    /// application to answer, so that one port can serve pages too.
    Http(HttpRequest),
}

impl ServerHandshake {
    /// A handshake with the head limits of `config`; the accepted connection
    /// gets `config` too. A server that shares one `Arc<Config>` among its
    /// handshakes shares it among its connections (see
    /// [`Connection::new`]).
    pub fn new(config: impl Into<Arc<Config>>) -> Self {
        ServerHandshake {
            config: config.into(),
            scanner: HeadScanner::default(),
            done: false,
        }
    }

    /// Feeds request bytes. `Ok(None)`: more are needed. Memory stays within
    /// [`Config::max_head_size`] plus one piece of input: a client that
    /// never ends its head gets [`HandshakeError::HeadTooLarge`] (431).
    /// After a result, further calls fail with [`HandshakeError::Malformed`].
    pub fn handle_data(&mut self, data: &[u8]) -> Result<Option<Incoming>, HandshakeError> {
        if self.done {
            return Err(HandshakeError::Malformed(
                "handshake already finished".into(),
            ));
        }
        let head = match self.scanner.push(data, self.config.max_head_size) {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.done = true;
                return Err(e);
            }
        };
        self.done = true;
        let req = parse_request(&head.bytes, self.config.max_headers)?;
        if !req.headers.has_token("upgrade", "websocket") {
            return Ok(Some(Incoming::Http(HttpRequest { head: req })));
        }
        self.check_upgrade(&req)?;
        let protocols = req.headers.tokens("sec-websocket-protocol");
        let extensions = req.headers.tokens("sec-websocket-extensions");
        let key = req
            .headers
            .get_str("sec-websocket-key")
            .unwrap_or_default()
            .trim()
            .to_owned();
        Ok(Some(Incoming::Upgrade(Box::new(UpgradeRequest {
            head: req,
            protocols,
            extensions,
            key,
            leftover: head.rest,
            config: self.config.clone(),
        }))))
    }

    /// The error when the input ends before a whole head.
    pub fn handle_eof(&self) -> HandshakeError {
        HandshakeError::Incomplete
    }

    /// "The client's opening handshake consists of the following parts. If
    /// the server, while reading the handshake, finds that the client did
    /// not send a handshake that matches the description below ..., the
    /// server MUST stop processing the client's handshake and return an HTTP
    /// response with an appropriate error code (such as 400 Bad Request)."
    /// (§4.2.1)
    fn check_upgrade(&self, req: &RequestHead) -> Result<(), HandshakeError> {
        // "An HTTP/1.1 or higher GET request"
        if req.method != "GET" {
            return Err(HandshakeError::Method(req.method.clone()));
        }
        if req.version < 1 {
            return Err(HandshakeError::HttpVersion);
        }
        // "A |Host| header field containing the server's authority."
        if req.headers.count("host") != 1 {
            return Err(HandshakeError::Host);
        }
        // "A |Connection| header field that includes the token "Upgrade""
        if !req.headers.has_token("connection", "upgrade") {
            return Err(HandshakeError::Connection);
        }
        // "A |Sec-WebSocket-Version| header field, with a value of 13."
        let mut versions = req.headers.get_all("sec-websocket-version");
        match (versions.next(), versions.next()) {
            (Some(v), None) if super::http::trim(v) == b"13" => {}
            (None, _) => return Err(HandshakeError::Version(None)),
            _ => {
                let shown = req
                    .headers
                    .get_all("sec-websocket-version")
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(HandshakeError::Version(Some(shown)));
            }
        }
        // "A |Sec-WebSocket-Key| header field with a base64-encoded value
        // that, when decoded, is 16 bytes in length."
        let mut keys = req.headers.get_all("sec-websocket-key");
        match (keys.next(), keys.next()) {
            (Some(k), None) if decodes_to_16_bytes(super::http::trim(k)) => Ok(()),
            _ => Err(HandshakeError::Key),
        }
    }
}

/// Whether `key` is base64 for 16 bytes, decoded on the stack (a longer
/// value does not fit and fails).
fn decodes_to_16_bytes(key: &[u8]) -> bool {
    // 24 characters (16 bytes and padding) are estimated at 18 bytes.
    let mut buf = [0u8; 18];
    matches!(BASE64.decode_slice(key, &mut buf), Ok(16))
}

/// The getters both request types share.
macro_rules! request_head_getters {
    () => {
        /// The method.
        pub fn method(&self) -> &str {
            &self.head.method
        }

        /// The raw request-target.
        pub fn target(&self) -> &str {
            &self.head.target
        }

        /// The path part of the request-target.
        pub fn path(&self) -> &str {
            split_target(&self.head.target).0
        }

        /// The query part of the request-target, without `?`.
        pub fn query(&self) -> Option<&str> {
            split_target(&self.head.target).1
        }

        /// Every request header.
        pub fn headers(&self) -> &Headers {
            &self.head.headers
        }
    };
}

fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    }
}

/// A WebSocket upgrade request that passed the checks of RFC 6455 §4.2.1.
#[derive(Debug)]
#[must_use = "an upgrade request must be accepted or rejected"]
pub struct UpgradeRequest {
    head: RequestHead,
    protocols: Vec<String>,
    extensions: Vec<String>,
    key: String,
    leftover: Vec<u8>,
    config: Arc<Config>,
}

impl UpgradeRequest {
    request_head_getters!();

    /// The offered subprotocols, in the client's order of preference.
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }

    /// The offered extension items, raw (none is accepted yet).
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The `Origin` header, if any.
    pub fn origin(&self) -> Option<&str> {
        self.head.headers.get_str("origin")
    }

    /// The `Sec-WebSocket-Key`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Accepts: appends the 101 response to `out` and returns the
    /// connection, which already holds any bytes that followed the request.
    /// A protocol in `accept` must be one the client offered: "the value
    /// chosen MUST be derived from the client's handshake" (§4.2.2).
    pub fn accept(
        self,
        now: Instant,
        accept: &Accept,
        out: &mut Vec<u8>,
    ) -> Result<Connection, BuildError> {
        if let Some(p) = &accept.protocol {
            if !self.protocols.iter().any(|o| o == p) {
                return Err(BuildError::Protocol(p.clone()));
            }
        }
        for (n, v) in &accept.headers {
            check_response_header(n, v)?;
        }
        // Room for the usual response at once, not grown line by line.
        out.reserve(160);
        out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
        write_header(out, "Upgrade", "websocket");
        write_header(out, "Connection", "Upgrade");
        let mut key = [0; ACCEPT_KEY_LEN];
        write_header(
            out,
            "Sec-WebSocket-Accept",
            accept_key_in(self.key.as_bytes(), &mut key),
        );
        if let Some(p) = &accept.protocol {
            write_header(out, "Sec-WebSocket-Protocol", p);
        }
        // permessage-deflate: the first offer this configuration can honour
        // (a malformed header declines them all).
        #[cfg(feature = "deflate")]
        let deflate = match &self.config.deflate {
            Some(cfg) if accept.deflate => {
                cfg.validate()?;
                let offers =
                    super::extensions::parse_extensions(&self.head.headers).unwrap_or_default();
                cfg.server_accept(&offers).map(|p| (p, cfg.clone()))
            }
            _ => None,
        };
        #[cfg(feature = "deflate")]
        if let Some((params, _)) = &deflate {
            write_header(out, "Sec-WebSocket-Extensions", &params.to_string());
        }
        for (n, v) in &accept.headers {
            write_header(out, n, v);
        }
        out.extend_from_slice(b"\r\n");
        let mut conn = Connection::new(Role::Server, self.config, now, [0; 32]);
        #[cfg(feature = "deflate")]
        if let Some((params, cfg)) = deflate {
            conn.set_deflate(params, &cfg);
        }
        if !self.leftover.is_empty() {
            conn.handle_data(now, &self.leftover);
        }
        Ok(conn)
    }

    /// Rejects with any status but 101 (and headers and a body); appends the
    /// response to `out`. The adapter closes the connection after writing.
    pub fn reject(
        self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), BuildError> {
        write_response(status, headers, body, out)
    }
}

/// How to accept an upgrade: the subprotocol chosen, extra headers, and
/// whether permessage-deflate may be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept {
    protocol: Option<String>,
    headers: Vec<(String, String)>,
    deflate: bool,
}

impl Default for Accept {
    fn default() -> Self {
        Accept {
            protocol: None,
            headers: Vec::new(),
            deflate: true,
        }
    }
}

impl Accept {
    /// No subprotocol, no extra headers; permessage-deflate accepted if
    /// `Config::deflate` allows it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declines permessage-deflate for this connection whatever the
    /// configuration says.
    pub fn without_deflate(mut self) -> Self {
        self.deflate = false;
        self
    }

    /// Chooses a subprotocol (one the client offered).
    pub fn protocol(mut self, name: impl Into<String>) -> Self {
        self.protocol = Some(name.into());
        self
    }

    /// Adds a response header (checked when accepting).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The first offered protocol that is also in `supported`, in the
    /// client's order of preference.
    pub fn choose_protocol(offered: &[String], supported: &[&str]) -> Option<String> {
        offered
            .iter()
            .find(|o| supported.iter().any(|s| s == o) && is_token(o))
            .cloned()
    }
}

/// An ordinary HTTP request on a WebSocket port.
///
/// Only the head is read; a request body is not. The response says
/// `Connection: close`, and the adapter closes after writing it.
#[derive(Debug)]
#[must_use = "an HTTP request must be answered"]
pub struct HttpRequest {
    head: RequestHead,
}

impl HttpRequest {
    request_head_getters!();

    /// The minor HTTP version (1 for HTTP/1.1, 0 for HTTP/1.0).
    pub fn version(&self) -> u8 {
        self.head.version
    }

    /// Answers with `status`, headers and body; appends the response to `out`.
    pub fn respond(
        self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), BuildError> {
        write_response(status, headers, body, out)
    }

    /// Answers for an endpoint that only speaks WebSocket: 426 Upgrade
    /// Required with `Sec-WebSocket-Version: 13` and a short text body.
    pub fn respond_websocket_only(self, out: &mut Vec<u8>) {
        let headers = [("Sec-WebSocket-Version", "13")];
        // Constant, valid headers: nothing to refuse.
        let _ = self.respond(426, &headers, b"this is a WebSocket server\n", out);
    }
}

impl HandshakeError {
    /// Appends the HTTP answer a server gives for this error (nothing for
    /// errors only a client meets): the status from
    /// [`http_status`](Self::http_status), `Sec-WebSocket-Version: 13` with a
    /// 426 ("send an appropriate HTTP error code (such as 426 Upgrade
    /// Required) and a |Sec-WebSocket-Version| header field indicating the
    /// version(s) the server is capable of understanding", §4.2.2),
    /// `Allow: GET` with a 405, and the error as a text body.
    pub fn write_response(&self, out: &mut Vec<u8>) {
        let Some(status) = self.http_status() else {
            return;
        };
        let mut headers = vec![("Content-Type", "text/plain; charset=utf-8")];
        match status {
            426 => headers.push(("Sec-WebSocket-Version", "13")),
            405 => headers.push(("Allow", "GET")),
            _ => {}
        }
        let body = format!("{self}\n");
        write_response_unchecked(status, &headers, body.as_bytes(), out);
    }
}
