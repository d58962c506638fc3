//! The client side of the opening handshake (RFC 6455 §4.1).

use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use super::extensions::parse_extensions;
use super::http::{
    accept_key_in, check_header, is_token, parse_response, trim, write_header, HeadScanner,
    Headers, ACCEPT_KEY_LEN,
};
use crate::config::Config;
use crate::connection::{Connection, Role};
use crate::error::{BuildError, HandshakeError};

/// What a client asks for: the URL, subprotocols, Origin and extra headers.
///
/// ```
/// let req = ws_proto::ClientRequest::new("wss://example.com:8443/chat?room=1")?
///     .protocol("chat.v2")
///     .protocol("chat.v1")
///     .origin("https://example.com")
///     .header("Authorization", "Bearer abc")?;
/// assert_eq!((req.host(), req.port(), req.is_tls()), ("example.com", 8443, true));
/// assert_eq!(req.path_and_query(), "/chat?room=1");
/// # Ok::<(), ws_proto::BuildError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    url: url::Url,
    origin: Option<String>,
    protocols: Vec<String>,
    headers: Vec<(String, String)>,
}

impl ClientRequest {
    /// Parses a `ws://` or `wss://` URL. Refuses other schemes, a missing
    /// host, and a fragment: "Fragment identifiers are meaningless in the
    /// context of WebSocket URIs and MUST NOT be used on these URIs" (§3).
    pub fn new(url: &str) -> Result<ClientRequest, BuildError> {
        let parsed = url::Url::parse(url).map_err(|e| BuildError::Url(format!("{url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "ws" | "wss") {
            return Err(BuildError::Url(format!(
                "scheme {:?} is not ws or wss",
                parsed.scheme()
            )));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(BuildError::Url("no host".into()));
        }
        if parsed.fragment().is_some() {
            return Err(BuildError::Url("a WebSocket URL has no fragment".into()));
        }
        Ok(ClientRequest {
            url: parsed,
            origin: None,
            protocols: Vec::new(),
            headers: Vec::new(),
        })
    }

    /// Sends an `Origin` header.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Offers a subprotocol; offers are sent in the order added ("in order
    /// of preference", §4.1). Names are checked when the handshake is built.
    pub fn protocol(mut self, name: impl Into<String>) -> Self {
        self.protocols.push(name.into());
        self
    }

    /// Adds a header. Refuses names that are not tokens, values with CR, LF
    /// or NUL, and the headers the handshake manages (Host, Upgrade,
    /// Connection, Sec-WebSocket-*).
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, BuildError> {
        check_header(name, value)?;
        self.headers.push((name.to_owned(), value.to_owned()));
        Ok(self)
    }

    /// The parsed URL.
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// The host to connect to (an IPv6 address without brackets).
    pub fn host(&self) -> &str {
        let h = self.url.host_str().unwrap_or("");
        h.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h)
    }

    /// The port: explicit, or 80 for `ws` and 443 for `wss`.
    pub fn port(&self) -> u16 {
        self.url
            .port_or_known_default()
            .unwrap_or(if self.is_tls() { 443 } else { 80 })
    }

    /// Whether the scheme is `wss`.
    pub fn is_tls(&self) -> bool {
        self.url.scheme() == "wss"
    }

    /// The offered subprotocols, in order.
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }

    /// The extra headers, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The request target: path, and `?query` if any.
    pub fn path_and_query(&self) -> String {
        let mut s = self.url.path().to_owned();
        if s.is_empty() {
            s.push('/');
        }
        if let Some(q) = self.url.query() {
            s.push('?');
            s.push_str(q);
        }
        s
    }

    /// The `Host` header value: host (bracketed for IPv6), with the port
    /// only when it is not the scheme's default.
    pub fn host_header(&self) -> String {
        let host = self.url.host_str().unwrap_or("");
        match self.url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        }
    }
}

/// The server's successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status (101).
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// Every response header, repeated ones kept.
    pub headers: Headers,
    /// The subprotocol the server chose, if any.
    pub protocol: Option<String>,
}

#[derive(Debug)]
enum Stage {
    Head(HeadScanner),
    /// A non-101 head is in; waiting for `want` body bytes.
    Body {
        status: u16,
        reason: String,
        headers: Headers,
        body: Vec<u8>,
        want: usize,
    },
    Done,
}

/// A client handshake in progress: write [`request`](Self::request), feed the
/// response to [`handle_data`](Self::handle_data).
#[derive(Debug)]
pub struct ClientHandshake {
    request: Vec<u8>,
    key: String,
    protocols: Vec<String>,
    config: Arc<Config>,
    conn_seed: [u8; 32],
    stage: Stage,
}

impl ClientHandshake {
    /// Builds the upgrade request. The 16-byte nonce ("randomly selected",
    /// §4.1) and the connection's masking seed are drawn from a generator
    /// seeded with `seed`.
    pub fn new(
        request: &ClientRequest,
        config: impl Into<Arc<Config>>,
        seed: [u8; 32],
    ) -> Result<ClientHandshake, BuildError> {
        let config = config.into();
        for p in &request.protocols {
            if !is_token(p) {
                return Err(BuildError::Protocol(p.clone()));
            }
        }
        if let Some(o) = &request.origin {
            if o.bytes().any(|b| matches!(b, b'\r' | b'\n' | b'\0')) {
                return Err(BuildError::Header("Origin contains CR, LF or NUL".into()));
            }
        }
        let mut rng = StdRng::from_seed(seed);
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        let key = BASE64.encode(nonce);
        let mut conn_seed = [0u8; 32];
        rng.fill_bytes(&mut conn_seed);

        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(request.path_and_query().as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        write_header(&mut out, "Host", &request.host_header());
        write_header(&mut out, "Upgrade", "websocket");
        write_header(&mut out, "Connection", "Upgrade");
        write_header(&mut out, "Sec-WebSocket-Key", &key);
        write_header(&mut out, "Sec-WebSocket-Version", "13");
        if let Some(o) = &request.origin {
            write_header(&mut out, "Origin", o);
        }
        if !request.protocols.is_empty() {
            write_header(
                &mut out,
                "Sec-WebSocket-Protocol",
                &request.protocols.join(", "),
            );
        }
        #[cfg(feature = "deflate")]
        if let Some(d) = &config.deflate {
            d.validate()?;
            write_header(&mut out, "Sec-WebSocket-Extensions", &d.client_offer());
        }
        for (n, v) in &request.headers {
            write_header(&mut out, n, v);
        }
        out.extend_from_slice(b"\r\n");
        Ok(ClientHandshake {
            request: out,
            key,
            protocols: request.protocols.clone(),
            config,
            conn_seed,
            stage: Stage::Head(HeadScanner::default()),
        })
    }

    /// The request bytes to write.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// The `Sec-WebSocket-Key` sent.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Feeds response bytes. `Ok(None)`: more are needed. On success, the
    /// connection already holds any bytes that followed the head. After a
    /// result (success or error), further calls fail with
    /// [`HandshakeError::Malformed`].
    pub fn handle_data(
        &mut self,
        now: Instant,
        data: &[u8],
    ) -> Result<Option<(Response, Connection)>, HandshakeError> {
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Done => Err(HandshakeError::Malformed(
                "handshake already finished".into(),
            )),
            Stage::Body {
                status,
                reason,
                headers,
                mut body,
                want,
            } => {
                let take = (want - body.len()).min(data.len());
                body.extend_from_slice(&data[..take]);
                if body.len() >= want {
                    return Err(HandshakeError::Status {
                        status,
                        reason,
                        headers: Box::new(headers),
                        body,
                    });
                }
                self.stage = Stage::Body {
                    status,
                    reason,
                    headers,
                    body,
                    want,
                };
                Ok(None)
            }
            Stage::Head(mut scanner) => {
                let Some(head) = scanner.push(data, self.config.max_head_size)? else {
                    self.stage = Stage::Head(scanner);
                    return Ok(None);
                };
                let resp = parse_response(&head.bytes, self.config.max_headers)?;
                if resp.status != 101 {
                    // Keep the body when its length is announced and small.
                    let want = resp
                        .headers
                        .get_str("content-length")
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .filter(|n| *n <= self.config.max_error_body)
                        .unwrap_or(0);
                    let mut body = head.rest;
                    if body.len() >= want {
                        return Err(HandshakeError::Status {
                            status: resp.status,
                            reason: resp.reason,
                            headers: Box::new(resp.headers),
                            body,
                        });
                    }
                    body.reserve(want - body.len());
                    self.stage = Stage::Body {
                        status: resp.status,
                        reason: resp.reason,
                        headers: resp.headers,
                        body,
                        want,
                    };
                    return Ok(None);
                }
                let protocol = self.validate(&resp.headers)?;
                #[cfg(feature = "deflate")]
                let deflate = self.validate_extensions(&resp.headers)?;
                #[cfg(not(feature = "deflate"))]
                self.validate_extensions(&resp.headers)?;
                let mut conn =
                    Connection::new(Role::Client, self.config.clone(), now, self.conn_seed);
                #[cfg(feature = "deflate")]
                if let (Some(params), Some(cfg)) = (deflate, &self.config.deflate) {
                    conn.set_deflate(params, cfg);
                }
                if !head.rest.is_empty() {
                    conn.handle_data(now, &head.rest);
                }
                Ok(Some((
                    Response {
                        status: resp.status,
                        reason: resp.reason,
                        headers: resp.headers,
                        protocol,
                    },
                    conn,
                )))
            }
        }
    }

    /// The error the handshake ends with when the input ends: the non-101
    /// response with the body read so far, or [`HandshakeError::Incomplete`].
    pub fn handle_eof(&mut self) -> HandshakeError {
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Body {
                status,
                reason,
                headers,
                body,
                ..
            } => HandshakeError::Status {
                status,
                reason,
                headers: Box::new(headers),
                body,
            },
            _ => HandshakeError::Incomplete,
        }
    }

    /// The §4.1 checks: "If the response lacks an |Upgrade| header field or
    /// the |Upgrade| header field contains a value that is not an ASCII
    /// case-insensitive match for the value "websocket", the client MUST
    /// _Fail the WebSocket Connection_", and likewise for Connection,
    /// Sec-WebSocket-Accept, extensions and the subprotocol.
    /// "If the response includes a |Sec-WebSocket-Extensions| header field
    /// and this header field indicates the use of an extension that was not
    /// present in the client's handshake ... the client MUST _Fail the
    /// WebSocket Connection_." (§4.1) We offer at most permessage-deflate,
    /// and its parameters must fit the offer (RFC 7692 §5).
    #[cfg(feature = "deflate")]
    fn validate_extensions(
        &self,
        headers: &Headers,
    ) -> Result<Option<crate::deflate::DeflateParams>, HandshakeError> {
        let items = parse_extensions(headers).map_err(HandshakeError::Extension)?;
        match (items.as_slice(), &self.config.deflate) {
            ([], _) => Ok(None),
            ([one], Some(cfg)) if one.name.eq_ignore_ascii_case(crate::deflate::NAME) => cfg
                .client_accept(one)
                .map(Some)
                .map_err(|e| HandshakeError::Extension(format!("{}: {e}", one.name))),
            ([first, ..], _) => Err(HandshakeError::Extension(format!(
                "{} was not offered{}",
                first.name,
                if items.len() > 1 {
                    " (or is repeated)"
                } else {
                    ""
                }
            ))),
        }
    }

    #[cfg(not(feature = "deflate"))]
    fn validate_extensions(&self, headers: &Headers) -> Result<(), HandshakeError> {
        let items = parse_extensions(headers).map_err(HandshakeError::Extension)?;
        match items.first() {
            None => Ok(()),
            Some(first) => Err(HandshakeError::Extension(format!(
                "{} was not offered",
                first.name
            ))),
        }
    }

    fn validate(&self, headers: &Headers) -> Result<Option<String>, HandshakeError> {
        if !headers.has_token("upgrade", "websocket") {
            return Err(HandshakeError::Upgrade);
        }
        if !headers.has_token("connection", "upgrade") {
            return Err(HandshakeError::Connection);
        }
        let mut buf = [0; ACCEPT_KEY_LEN];
        let expected = accept_key_in(self.key.as_bytes(), &mut buf);
        let mut accepts = headers.get_all("sec-websocket-accept");
        match (accepts.next(), accepts.next()) {
            (Some(v), None) if trim(v) == expected.as_bytes() => {}
            _ => return Err(HandshakeError::Accept),
        }
        // "If the response includes a |Sec-WebSocket-Protocol| header field
        // and this header field indicates the use of a subprotocol that was
        // not present in the client's handshake ... the client MUST _Fail the
        // WebSocket Connection_."
        let chosen = headers.tokens("sec-websocket-protocol");
        match chosen.as_slice() {
            [] => Ok(None),
            [one] if self.protocols.iter().any(|p| p == one) => Ok(Some(one.clone())),
            _ => Err(HandshakeError::Protocol(chosen.join(", "))),
        }
    }
}
