//! permessage-deflate through ws-blocking: the negotiated extension as the
//! API shows it, and interop with a second implementation (Node's `ws`,
//! installed by scripts/install-node-ws.sh) in both directions.
#![cfg(feature = "deflate")]

mod common;

use std::sync::{Arc, Mutex};

use common::{direct, echo_server, local_options};
use ws_blocking::{
    DeflateConfig, DeflateParams, Message, MessageKind, ServerEvent, ServerEventKind, WebSocket,
};
use ws_test_support::{node_client, NodeEcho};

fn deflate(threshold: usize) -> DeflateConfig {
    DeflateConfig {
        threshold,
        ..DeflateConfig::default()
    }
}

fn payloads() -> Vec<Message> {
    vec![
        Message::Text("hello ".repeat(300)),
        Message::Text(String::new()),
        Message::Text("Grüße, 世界 🌍 ".repeat(5000)),
        Message::Binary(vec![7u8; 1 << 20].into()),
        Message::Binary(
            (0..200_000u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect::<Vec<_>>()
                .into(),
        ),
    ]
}

fn echo_all(ws: &mut WebSocket) {
    for m in payloads() {
        match &m {
            Message::Text(t) => ws.send_text(t).unwrap(),
            Message::Binary(b) => ws.send_binary(b).unwrap(),
            _ => unreachable!(),
        }
        assert_eq!(ws.recv().unwrap(), m);
    }
}

#[test]
fn negotiated_extension_is_visible_on_both_ends() {
    let mut options = local_options();
    options.config.deflate = Some(DeflateConfig {
        server_no_context_takeover: true,
        ..deflate(0)
    });
    let server = echo_server(options);
    let seen = Arc::new(Mutex::new(None));
    let (h, s) = (server.handle(), seen.clone());
    server.on(ServerEventKind::Connect, move |ev| {
        if let ServerEvent::Connect(c) = ev {
            *s.lock().unwrap() = Some(h.deflate(c).unwrap());
        }
    });
    let mut client = direct();
    client.config.deflate = Some(DeflateConfig {
        client_max_window_bits: 12,
        ..deflate(0)
    });
    let mut ws =
        WebSocket::connect_with(&format!("ws://{}/", server.local_addr()), &client).unwrap();
    let expected = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 12,
    };
    assert_eq!(ws.deflate(), Some(expected));
    assert_eq!(
        ws.response()
            .unwrap()
            .headers
            .get_str("sec-websocket-extensions"),
        Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=12")
    );
    echo_all(&mut ws);
    ws.send_uncompressed(MessageKind::Binary, &[1, 2, 3])
        .unwrap();
    assert_eq!(ws.recv().unwrap(), Message::Binary(vec![1, 2, 3].into()));
    common::eventually("the server's Connect callback", || {
        seen.lock().unwrap().is_some()
    });
    assert_eq!(*seen.lock().unwrap(), Some(Some(expected)));

    // Without the client's offer, nothing is negotiated.
    let ws = WebSocket::connect_with(&format!("ws://{}/", server.local_addr()), &direct()).unwrap();
    assert_eq!(ws.deflate(), None);
}

#[test]
fn interop_our_client_with_node_ws_server() {
    // Node's defaults, then its no-context-takeover and small-window modes.
    for (node, ours) in [
        ("{}", deflate(0)),
        (
            r#"{"serverNoContextTakeover": true, "clientNoContextTakeover": true}"#,
            deflate(0),
        ),
        (
            r#"{"serverMaxWindowBits": 9, "clientMaxWindowBits": 10}"#,
            deflate(0),
        ),
        (
            "{}",
            DeflateConfig {
                server_max_window_bits: 8,
                client_max_window_bits: 8,
                ..deflate(0)
            },
        ),
    ] {
        let echo = NodeEcho::start(node);
        let mut client = direct();
        client.config.deflate = Some(ours.clone());
        client.config.max_message_size = 256 << 20;
        let mut ws = WebSocket::connect_with(&echo.url(), &client).unwrap();
        let p = ws
            .deflate()
            .unwrap_or_else(|| panic!("node {node}: not negotiated"));
        match node {
            n if n.contains("NoContextTakeover") => {
                assert!(p.server_no_context_takeover && p.client_no_context_takeover)
            }
            n if n.contains("MaxWindowBits") => {
                assert_eq!(
                    (p.server_max_window_bits, p.client_max_window_bits),
                    (9, 10)
                )
            }
            _ => assert_eq!(p.server_max_window_bits, ours.server_max_window_bits.max(8)),
        }
        echo_all(&mut ws);
        // Several messages through one context.
        for i in 0..50 {
            let t = format!("message {i}: {}", "takeover ".repeat(i));
            ws.send_text(&t).unwrap();
            assert_eq!(ws.recv().unwrap(), Message::Text(t));
        }
    }
}

#[test]
fn interop_node_ws_client_with_our_server() {
    for (ours, node, expect) in [
        (deflate(0), "{}", "permessage-deflate"),
        (
            DeflateConfig {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                ..deflate(0)
            },
            "{}",
            "server_no_context_takeover",
        ),
        (
            deflate(64),
            r#"{"serverMaxWindowBits": 10, "clientMaxWindowBits": 11}"#,
            "server_max_window_bits=10",
        ),
        (
            DeflateConfig {
                server_max_window_bits: 9,
                ..deflate(0)
            },
            r#"{"clientNoContextTakeover": true}"#,
            "server_max_window_bits=9",
        ),
    ] {
        let mut options = local_options();
        options.config.deflate = Some(ours);
        let server = echo_server(options);
        let (ok, out) = node_client(&format!("ws://{}/", server.local_addr()), node);
        assert!(ok, "node client failed: {out}");
        assert!(out.starts_with("ok "), "{out}");
        assert!(out.contains(expect), "{out} lacks {expect}");
    }
}
