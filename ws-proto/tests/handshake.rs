//! The opening handshake, both sides (RFC 6455 §4).

use std::time::Instant;

use bytes::Bytes;
use ws_proto::handshake::http::accept_key;
use ws_proto::{
    Accept, BuildError, ClientHandshake, ClientRequest, Config, Event, HandshakeError, Incoming,
    ServerHandshake, Transmit, UpgradeRequest,
};

const RFC_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\n\
Host: server.example.com\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

fn server_parse(req: &[u8]) -> Result<Option<Incoming>, HandshakeError> {
    ServerHandshake::new(Config::default()).handle_data(req)
}

fn upgrade(req: &[u8]) -> UpgradeRequest {
    match server_parse(req) {
        Ok(Some(Incoming::Upgrade(u))) => *u,
        other => panic!("expected an upgrade, got {other:?}"),
    }
}

fn server_error(req: &[u8]) -> HandshakeError {
    match server_parse(req) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn rfc_1_3_request_is_accepted_with_the_rfc_accept_key() {
    let u = upgrade(RFC_REQUEST);
    assert_eq!(u.path(), "/chat");
    assert_eq!(u.query(), None);
    assert_eq!(u.origin(), Some("http://example.com"));
    assert_eq!(u.protocols(), ["chat", "superchat"]);
    assert_eq!(u.headers().get_str("host"), Some("server.example.com"));
    let mut out = Vec::new();
    u.accept(Instant::now(), &Accept::new().protocol("chat"), &mut out)
        .unwrap();
    let resp = text(&out);
    assert!(
        resp.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{resp}"
    );
    assert!(
        resp.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{resp}"
    );
    assert!(resp.contains("Sec-WebSocket-Protocol: chat\r\n"));
    assert!(resp.contains("Upgrade: websocket\r\n") && resp.contains("Connection: Upgrade\r\n"));
    assert!(resp.ends_with("\r\n\r\n"));
}

#[test]
fn client_request_bytes_default_port_omitted() {
    let req = ClientRequest::new("ws://example.com/chat?x=1").unwrap();
    let hs = ClientHandshake::new(&req, Config::default(), [1; 32]).unwrap();
    let r = text(hs.request());
    assert!(
        r.starts_with("GET /chat?x=1 HTTP/1.1\r\nHost: example.com\r\n"),
        "{r}"
    );
    assert!(r.contains("Upgrade: websocket\r\nConnection: Upgrade\r\n"));
    assert!(r.contains(&format!("Sec-WebSocket-Key: {}\r\n", hs.key())));
    assert!(r.contains("Sec-WebSocket-Version: 13\r\n"));
    assert!(!r.contains("Sec-WebSocket-Protocol"));
    assert!(r.ends_with("\r\n\r\n"));
    // The key is 16 random bytes, base64.
    assert_eq!(hs.key().len(), 24);
    let other = ClientHandshake::new(&req, Config::default(), [2; 32]).unwrap();
    assert_ne!(hs.key(), other.key());
    assert_eq!(req.port(), 80);
    // wss: default 443 omitted too.
    let req = ClientRequest::new("wss://example.com:443/").unwrap();
    assert_eq!(req.host_header(), "example.com");
    assert_eq!((req.port(), req.is_tls()), (443, true));
}

#[test]
fn client_request_keeps_explicit_port_and_brackets_ipv6() {
    let req = ClientRequest::new("ws://example.com:8080").unwrap();
    assert_eq!(req.host_header(), "example.com:8080");
    assert_eq!(req.path_and_query(), "/");
    let req = ClientRequest::new("wss://[::1]:9443/").unwrap();
    assert_eq!(req.host(), "::1");
    assert_eq!(req.port(), 9443);
    let hs = ClientHandshake::new(&req, Config::default(), [1; 32]).unwrap();
    assert!(text(hs.request()).contains("Host: [::1]:9443\r\n"));
}

#[test]
fn client_request_options_in_order() {
    let req = ClientRequest::new("ws://h/")
        .unwrap()
        .protocol("b")
        .protocol("a")
        .origin("http://o")
        .header("X-One", "1")
        .unwrap()
        .header("X-Two", "2")
        .unwrap();
    let hs = ClientHandshake::new(&req, Config::default(), [1; 32]).unwrap();
    let r = text(hs.request());
    assert!(r.contains("Origin: http://o\r\n"));
    assert!(r.contains("Sec-WebSocket-Protocol: b, a\r\n"));
    assert!(r.find("X-One: 1").unwrap() < r.find("X-Two: 2").unwrap());
}

#[test]
fn bad_urls_are_refused_before_any_io() {
    for url in [
        "http://example.com/",
        "ftp://x",
        "ws://",
        "ws://host/#frag",
        "not a url",
        "ws://:80/",
    ] {
        assert!(
            matches!(ClientRequest::new(url), Err(BuildError::Url(_))),
            "{url}"
        );
    }
}

#[test]
fn header_injection_and_bad_protocols_are_refused() {
    let req = ClientRequest::new("ws://h/").unwrap();
    assert!(matches!(
        req.clone().header("X", "a\r\nHost: evil"),
        Err(BuildError::Header(_))
    ));
    assert!(matches!(
        req.clone().header("Sec-WebSocket-Key", "abc"),
        Err(BuildError::Header(_))
    ));
    assert!(matches!(
        req.clone().header("bad name", "v"),
        Err(BuildError::Header(_))
    ));
    let bad = req.clone().protocol("two words");
    assert!(matches!(
        ClientHandshake::new(&bad, Config::default(), [0; 32]),
        Err(BuildError::Protocol(_))
    ));
    let bad = req.origin("http://a\r\nX: y");
    assert!(matches!(
        ClientHandshake::new(&bad, Config::default(), [0; 32]),
        Err(BuildError::Header(_))
    ));
}

#[test]
fn server_failures_carry_their_status() {
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (
            text(RFC_REQUEST)
                .replace("Host: server.example.com\r\n", "")
                .into_bytes(),
            400,
        ),
        (text(RFC_REQUEST).replace("GET ", "POST ").into_bytes(), 405),
        (
            text(RFC_REQUEST)
                .replace("HTTP/1.1", "HTTP/1.0")
                .into_bytes(),
            505,
        ),
        (
            text(RFC_REQUEST)
                .replace("Version: 13", "Version: 8")
                .into_bytes(),
            426,
        ),
        (
            text(RFC_REQUEST)
                .replace("Sec-WebSocket-Version: 13\r\n", "")
                .into_bytes(),
            426,
        ),
        (
            text(RFC_REQUEST)
                .replace("dGhlIHNhbXBsZSBub25jZQ==", "not base64!")
                .into_bytes(),
            400,
        ),
        // 15 bytes, not 16.
        (
            text(RFC_REQUEST)
                .replace("dGhlIHNhbXBsZSBub25jZQ==", "AAAAAAAAAAAAAAAAAAAA")
                .into_bytes(),
            400,
        ),
        (
            text(RFC_REQUEST)
                .replace("Connection: Upgrade", "Connection: keep-alive")
                .into_bytes(),
            400,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nBad Header\r\n\r\n".to_vec(),
            400,
        ),
    ];
    for (req, status) in cases {
        let e = server_error(&req);
        assert_eq!(e.http_status(), Some(status), "{e:?}");
        let mut out = Vec::new();
        e.write_response(&mut out);
        let resp = text(&out);
        assert!(resp.starts_with(&format!("HTTP/1.1 {status} ")), "{resp}");
        assert!(resp.contains("Connection: close\r\n"));
        if status == 426 {
            assert!(resp.contains("Sec-WebSocket-Version: 13\r\n"), "{resp}");
        }
        if status == 405 {
            assert!(resp.contains("Allow: GET\r\n"));
        }
    }
}

#[test]
fn key_and_version_come_once_and_the_key_decodes_to_16_bytes() {
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let with_key = |k: &str| text(RFC_REQUEST).replace(key, k).into_bytes();
    // 16 bytes without padding characters where they belong, 17, 18, 21
    // and 48 bytes of base64: refused, however large.
    for k in [
        "dGhlIHNhbXBsZSBub25jZQ",
        "AAAAAAAAAAAAAAAAAAAAAAA=",
        "AAAAAAAAAAAAAAAAAAAAAAAA",
        &"A".repeat(28),
        &"A".repeat(64),
    ] {
        assert_eq!(server_error(&with_key(k)), HandshakeError::Key, "{k}");
    }
    // Padded by spaces is still the key.
    assert_eq!(upgrade(&with_key(&format!("  {key} "))).key(), key);
    let twice = |line: &str| {
        text(RFC_REQUEST)
            .replace("\r\n\r\n", &format!("\r\n{line}\r\n\r\n"))
            .into_bytes()
    };
    assert_eq!(
        server_error(&twice(&format!("sec-websocket-key: {key}"))),
        HandshakeError::Key
    );
    assert_eq!(
        server_error(&twice("Sec-WebSocket-Version: 8")),
        HandshakeError::Version(Some("13, 8".into()))
    );
}

#[test]
fn connection_and_upgrade_tokens_are_case_insensitive_lists() {
    let req = text(RFC_REQUEST)
        .replace("Connection: Upgrade", "Connection: keep-alive, UPGRADE")
        .replace("Upgrade: websocket", "Upgrade: WebSocket");
    let u = upgrade(req.as_bytes());
    assert_eq!(u.key(), "dGhlIHNhbXBsZSBub25jZQ==");
}

#[test]
fn head_too_large_fed_byte_by_byte_stays_bounded() {
    let mut cfg = Config::default();
    cfg.max_head_size = 1024;
    let mut hs = ServerHandshake::new(cfg);
    let mut result = None;
    for i in 0..100_000 {
        match hs.handle_data(b"a") {
            Ok(None) => {}
            Ok(Some(_)) => panic!("no head was sent"),
            Err(e) => {
                result = Some((i, e));
                break;
            }
        }
    }
    let (i, e) = result.expect("refused");
    assert_eq!(e, HandshakeError::HeadTooLarge { max: 1024 });
    assert_eq!(e.http_status(), Some(431));
    assert!(i < 1024, "refused after {i} bytes");
}

#[test]
fn too_many_headers_is_431() {
    let mut req = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..100 {
        req.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    let e = server_error(&req);
    assert_eq!(e, HandshakeError::TooManyHeaders { max: 64 });
    assert_eq!(e.http_status(), Some(431));
}

#[test]
fn plain_get_is_answered_as_http() {
    let req = b"GET /index.html?lang=en HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let Ok(Some(Incoming::Http(r))) = server_parse(req) else {
        panic!("expected a plain HTTP request");
    };
    assert_eq!(
        (r.method(), r.path(), r.query(), r.version()),
        ("GET", "/index.html", Some("lang=en"), 1)
    );
    let mut out = Vec::new();
    r.respond(
        200,
        &[("Content-Type", "text/html")],
        b"<p>hi</p>",
        &mut out,
    )
    .unwrap();
    assert_eq!(
        text(&out),
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 9\r\nConnection: close\r\n\r\n<p>hi</p>"
    );
}

#[test]
fn a_websocket_only_endpoint_answers_plain_http_with_426() {
    let Ok(Some(Incoming::Http(r))) = server_parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n") else {
        panic!("expected a plain HTTP request");
    };
    let mut out = Vec::new();
    r.respond_websocket_only(&mut out);
    assert_eq!(
        text(&out),
        "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 27\r\nConnection: close\r\n\r\nthis is a WebSocket server\n"
    );
}

#[test]
fn refused_is_answered_with_its_own_status() {
    assert_eq!(HandshakeError::Refused(403).http_status(), Some(403));
    let mut out = Vec::new();
    HandshakeError::Refused(401).write_response(&mut out);
    assert!(text(&out).starts_with("HTTP/1.1 401 "), "{}", text(&out));
}

#[test]
fn reject_writes_any_status_but_101() {
    let mut out = Vec::new();
    upgrade(RFC_REQUEST)
        .reject(403, &[("X-Why", "no")], b"denied", &mut out)
        .unwrap();
    let r = text(&out);
    assert!(
        r.starts_with("HTTP/1.1 403 Forbidden\r\n") && r.ends_with("\r\n\r\ndenied"),
        "{r}"
    );
    let mut out = Vec::new();
    assert_eq!(
        upgrade(RFC_REQUEST).reject(101, &[], b"", &mut out),
        Err(BuildError::Status(101))
    );
    assert_eq!(
        upgrade(RFC_REQUEST).reject(42, &[], b"", &mut out),
        Err(BuildError::Status(42))
    );
    assert!(out.is_empty());
}

#[test]
fn accept_refuses_an_unoffered_protocol_and_managed_headers() {
    let mut out = Vec::new();
    let e = upgrade(RFC_REQUEST).accept(Instant::now(), &Accept::new().protocol("mqtt"), &mut out);
    assert_eq!(e.err(), Some(BuildError::Protocol("mqtt".into())));
    let e = upgrade(RFC_REQUEST).accept(
        Instant::now(),
        &Accept::new().header("Sec-WebSocket-Accept", "x"),
        &mut out,
    );
    assert!(matches!(e, Err(BuildError::Header(_))));
    assert!(out.is_empty(), "nothing written on error");
    assert_eq!(
        Accept::choose_protocol(&["superchat".into(), "chat".into()], &["chat", "superchat"]),
        Some("superchat".into())
    );
}

/// Runs a client handshake against the server handshake; returns what the
/// client got.
fn end_to_end(
    req: &ClientRequest,
    accept: &Accept,
    split: usize,
    extra_from_server: &[u8],
) -> Vec<Event> {
    let now = Instant::now();
    let mut client = ClientHandshake::new(req, Config::default(), [3; 32]).unwrap();
    let mut server = ServerHandshake::new(Config::default());
    let mut incoming = None;
    for piece in client.request().chunks(split) {
        if let Some(i) = server.handle_data(piece).unwrap() {
            incoming = Some(i);
        }
    }
    let Some(Incoming::Upgrade(u)) = incoming else {
        panic!("no upgrade")
    };
    let mut out = Vec::new();
    let mut sconn = u.accept(now, accept, &mut out).unwrap();
    out.extend_from_slice(extra_from_server);
    let mut done: Option<(ws_proto::Response, ws_proto::Connection)> = None;
    for piece in out.chunks(split) {
        match done.as_mut() {
            Some((_, c)) => c.handle_data(now, piece),
            None => done = client.handle_data(now, piece).unwrap(),
        }
    }
    let (resp, mut conn) = done.expect("handshake completes");
    assert_eq!(resp.status, 101);
    assert_eq!(
        resp.protocol.as_deref(),
        req.protocols()
            .first()
            .map(|s| s.as_str())
            .filter(|_| accept != &Accept::new())
    );
    let mut events = Vec::new();
    while let Some(e) = conn.poll_event() {
        events.push(e);
    }
    // The server side works too.
    sconn.send_text("s").unwrap();
    let mut b = Vec::new();
    assert!(matches!(sconn.poll_transmit(&mut b), Transmit::Data(3)));
    events
}

#[test]
fn client_and_server_agree_end_to_end_in_any_split() {
    let req = ClientRequest::new("ws://localhost:9001/x")
        .unwrap()
        .protocol("chat");
    for split in [1, 2, 7, 1000] {
        let ev = end_to_end(
            &req,
            &Accept::new().protocol("chat"),
            split,
            &[0x81, 0x02, b'h', b'i'],
        );
        assert_eq!(
            ev,
            vec![Event::Text {
                data: Bytes::from_static(b"hi"),
                fin: true
            }],
            "split {split}"
        );
    }
    assert!(end_to_end(
        &ClientRequest::new("ws://h/").unwrap(),
        &Accept::new(),
        5,
        b""
    )
    .is_empty());
}

#[test]
fn bytes_after_the_request_head_reach_the_server_connection() {
    let mut req = RFC_REQUEST.to_vec();
    req.extend_from_slice(&[
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ]);
    let mut out = Vec::new();
    let mut conn = upgrade(&req)
        .accept(Instant::now(), &Accept::new(), &mut out)
        .unwrap();
    assert_eq!(
        conn.poll_event(),
        Some(Event::Text {
            data: Bytes::from_static(b"Hello"),
            fin: true
        })
    );
}

fn client_hs() -> ClientHandshake {
    let req = ClientRequest::new("ws://h/").unwrap().protocol("chat");
    ClientHandshake::new(&req, Config::default(), [4; 32]).unwrap()
}

fn response(hs: &ClientHandshake, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n{extra}\r\n",
        accept_key(hs.key().as_bytes())
    )
    .into_bytes()
}

fn client_error(resp: &[u8]) -> HandshakeError {
    let mut hs = client_hs();
    match hs.handle_data(Instant::now(), resp) {
        Err(e) => e,
        Ok(Some(_)) => panic!("accepted"),
        Ok(None) => hs.handle_eof(),
    }
}

#[test]
fn client_response_failures() {
    let hs = client_hs();
    let good = text(&response(&hs, ""));
    let mut h = client_hs();
    assert!(h
        .handle_data(Instant::now(), good.as_bytes())
        .unwrap()
        .is_some());
    // Each response below is built for a fresh handshake with the same seed,
    // so the key (and the accept value) match.
    assert_eq!(
        client_error(good.replace("Upgrade: websocket\r\n", "").as_bytes()),
        HandshakeError::Upgrade
    );
    assert_eq!(
        client_error(
            good.replace("Connection: Upgrade", "Connection: close")
                .as_bytes()
        ),
        HandshakeError::Connection
    );
    let wrong = good.replace(
        &accept_key(hs.key().as_bytes()),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
    );
    assert_eq!(client_error(wrong.as_bytes()), HandshakeError::Accept);
    let missing = good.replace(
        &format!(
            "Sec-WebSocket-Accept: {}\r\n",
            accept_key(hs.key().as_bytes())
        ),
        "",
    );
    assert_eq!(client_error(missing.as_bytes()), HandshakeError::Accept);
    assert_eq!(
        client_error(&response(&hs, "Sec-WebSocket-Protocol: mqtt\r\n")),
        HandshakeError::Protocol("mqtt".into())
    );
    assert_eq!(
        client_error(&response(
            &hs,
            "Sec-WebSocket-Extensions: permessage-deflate\r\n"
        )),
        HandshakeError::Extension("permessage-deflate was not offered".into())
    );
    // The chosen protocol is reported; none chosen is fine too.
    let mut h = client_hs();
    let (r, _) = h
        .handle_data(
            Instant::now(),
            &response(&hs, "Sec-WebSocket-Protocol: chat\r\n"),
        )
        .unwrap()
        .unwrap();
    assert_eq!(r.protocol.as_deref(), Some("chat"));
    assert_eq!(r.headers.get_str("upgrade"), Some("websocket"));
}

#[test]
fn non_101_carries_status_headers_and_the_whole_announced_body() {
    let mut hs = client_hs();
    let now = Instant::now();
    assert_eq!(
        hs.handle_data(
            now,
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 11\r\nX-Why: token\r\n\r\ntoken e"
        )
        .unwrap()
        .map(|_| ()),
        None,
        "waits for the announced body"
    );
    match hs.handle_data(now, b"xpired") {
        Err(HandshakeError::Status {
            status,
            reason,
            headers,
            body,
        }) => {
            assert_eq!((status, reason.as_str()), (403, "Forbidden"));
            assert_eq!(headers.get_str("x-why"), Some("token"));
            assert_eq!(body, b"token expir");
        }
        other => panic!("{other:?}"),
    }
    // Without Content-Length: what arrived with the head; EOF ends a wait.
    assert!(matches!(
        client_error(b"HTTP/1.1 500 Oops\r\n\r\npartial"),
        HandshakeError::Status { status: 500, ref body, .. } if body == b"partial"
    ));
    let mut hs = client_hs();
    assert!(hs
        .handle_data(
            now,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 100\r\n\r\nab"
        )
        .unwrap()
        .is_none());
    assert!(
        matches!(hs.handle_eof(), HandshakeError::Status { status: 404, ref body, .. } if body == b"ab")
    );
}

#[test]
fn client_response_fed_byte_by_byte_keeps_trailing_frames() {
    let mut hs = client_hs();
    let mut resp = response(&hs, "");
    resp.extend_from_slice(&[0x82, 0x01, 0x2a]);
    let now = Instant::now();
    let mut got = None;
    for (i, b) in resp.iter().enumerate() {
        if let Some(done) = hs.handle_data(now, std::slice::from_ref(b)).unwrap() {
            got = Some((i, done));
            break;
        }
    }
    let (i, (_, mut conn)) = got.expect("completes");
    for b in &resp[i + 1..] {
        conn.handle_data(now, std::slice::from_ref(b));
    }
    assert_eq!(
        conn.poll_event(),
        Some(Event::Binary {
            data: Bytes::from_static(&[0x2a]),
            fin: true
        })
    );
    // Further calls after completion are errors, not panics.
    assert!(hs.handle_data(now, b"x").is_err());
}

#[test]
fn hostile_response_head_is_bounded() {
    let mut cfg = Config::default();
    cfg.max_head_size = 512;
    let req = ClientRequest::new("ws://h/").unwrap();
    let mut hs = ClientHandshake::new(&req, cfg, [0; 32]).unwrap();
    let mut err = None;
    for _ in 0..1000 {
        match hs.handle_data(
            Instant::now(),
            b"HTTP/1.1 101 X\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        ) {
            Ok(None) => {}
            Ok(Some(_)) => panic!(),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert_eq!(err, Some(HandshakeError::HeadTooLarge { max: 512 }));
}

/// The error types stay small: an adapter's long-lived task keeps room for
/// whatever it holds across its awaits, and a `Result<_, Error>` held there
/// is that many bytes per idle connection (ws-smol's server task did hold
/// one until session 31). With the response headers of `HandshakeError::Status`
/// inline, `HandshakeError` was 104 bytes and `api::Error` 112, and an idle
/// ws-smol connection held 32 bytes more (BENCHMARKS.md, table C of
/// session 31).
#[cfg(target_pointer_width = "64")]
#[test]
fn error_types_stay_small() {
    use std::mem::size_of;
    assert!(
        size_of::<HandshakeError>() <= 64,
        "{}",
        size_of::<HandshakeError>()
    );
    assert!(
        size_of::<ws_proto::api::Error>() <= 72,
        "{}",
        size_of::<ws_proto::api::Error>()
    );
}

/// Connections made from one `Arc<Config>` hold that one configuration (a
/// pointer each), through the server handshake as through
/// `Connection::new`; `Config::shared_default` is one for the process.
#[test]
fn connections_made_from_one_shared_config_share_it() {
    use std::sync::Arc;
    let mut config = Config::default();
    config.max_frame_size = 1234;
    let shared = Arc::new(config);
    let now = Instant::now();
    let mut conns = Vec::new();
    for _ in 0..3 {
        let mut hs = ServerHandshake::new(shared.clone());
        let Ok(Some(Incoming::Upgrade(u))) = hs.handle_data(RFC_REQUEST) else {
            panic!("no upgrade");
        };
        conns.push(u.accept(now, &Accept::new(), &mut Vec::new()).unwrap());
    }
    conns.push(ws_proto::Connection::new(
        ws_proto::Role::Client,
        shared.clone(),
        now,
        [1; 32],
    ));
    for c in &conns {
        assert!(std::ptr::eq(c.config(), &*shared));
        assert_eq!(c.config().max_frame_size, 1234);
    }
    assert_eq!(Arc::strong_count(&shared), 1 + conns.len());
    drop(conns);
    assert_eq!(Arc::strong_count(&shared), 1);
    // The process's shared default is one.
    assert!(std::ptr::eq(
        &*Config::shared_default(),
        &*Config::shared_default()
    ));
}
