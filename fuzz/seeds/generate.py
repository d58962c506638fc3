#!/usr/bin/env python3
"""Writes the committed seed corpus: RFC 6455 frames and real handshakes,
wrapped in each target's input grammar (see fuzz/src/lib.rs)."""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def mask(payload, key):
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def frame(b0, payload, key=None):
    n = len(payload)
    mbit = 0x80 if key else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n < 65536:
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if key:
        return head + bytes(key) + mask(payload, key)
    return head + payload


KEY = [0x37, 0xFA, 0x21, 0x3D]

# RFC 6455 §5.7 examples.
RFC_FRAMES = {
    "unmasked_hello": bytes([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F]),
    "masked_hello": bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]),
    "fragment_hel": bytes([0x01, 0x03, 0x48, 0x65, 0x6C]),
    "fragment_lo": bytes([0x80, 0x02, 0x6C, 0x6F]),
    "unmasked_ping": bytes([0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F]),
    "masked_pong": bytes([0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]),
    "binary_256": bytes([0x82, 0x7E, 0x01, 0x00]),
    "binary_64k": bytes([0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]),
}


def data_step(b):
    """A peer-data step: a length byte (0xdf: u16 length) then the bytes."""
    if len(b) < 0xDF:
        return bytes([len(b)]) + b
    return bytes([0xDF]) + struct.pack(">H", len(b)) + b


def blob(b):
    return bytes([len(b)]) + b if len(b) < 0xFF else b"\xff" + struct.pack(">H", len(b)) + b


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def conversation(key):
    """Frames a peer might send: text, fragmented text with a ping in the
    middle, binary, a code point split across fragments, then a close."""
    euro = "a€b".encode()
    return [
        frame(0x81, b"Hello", key),
        frame(0x01, b"Hel", key) + frame(0x89, b"ping", key) + frame(0x80, b"lo", key),
        frame(0x82, bytes(range(200)), key),
        frame(0x01, euro[:2], key) + frame(0x00, euro[2:3], key) + frame(0x80, euro[3:], key),
        frame(0x8A, b"pong", key),
        frame(0x88, struct.pack(">H", 1000) + b"bye", key),
    ]


def main():
    for name, b in RFC_FRAMES.items():
        write("frame_header", name, b)

    for target, key in (("server_connection", KEY), ("client_connection", None)):
        frames = conversation(key)
        write(target, "conversation", b"".join(data_step(f) for f in frames))
        # The same bytes split into 3-byte pieces, with ticks in between.
        whole = b"".join(frames)
        write(target, "split", b"".join(data_step(whole[i:i + 3]) + b"\xe0" for i in range(0, len(whole), 3)))
        # Local commands: text, streamed chunk, ping, close; then silence.
        cmds = (b"\xf0\x00" + blob(b"hi") + b"\xf0\x02\x01" + blob("κό".encode()[:3])
                + b"\xf0\x02\x03" + blob("κό".encode()[3:]) + b"\xf0\x03" + blob(b"p")
                + b"\xf0\x05\x03\xe8" + blob(b"done") + b"\xef" * 12)
        write(target, "commands", cmds)
        write(target, "keepalive_silence", b"\xef" * 20)
        write(target, "bad_utf8", data_step(frame(0x81, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited", key)))
        write(target, "bad_close", data_step(frame(0x88, struct.pack(">H", 1005), key)))

    req = (b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
    write("server_handshake", "rfc_request", req)
    write("server_handshake", "rfc_request_with_frame", req + RFC_FRAMES["masked_hello"])
    write("server_handshake", "plain_get", b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n")
    write("server_handshake", "version_8", req.replace(b"Version: 13", b"Version: 8"))

    # The client target replaces {accept} with the right Sec-WebSocket-Accept.
    resp = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: chat\r\n\r\n")
    write("client_handshake", "rfc_response", resp)
    write("client_handshake", "rfc_response_with_frame", resp + RFC_FRAMES["unmasked_hello"])
    write("client_handshake", "forbidden", b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!")

    # Pair: client sends text, server streams binary, both deliver, client
    # closes, time passes.
    pair = (b"\x00\x00" + blob(b"hello") + b"\x01\x02\x02" + blob(b"abc") + b"\x01\x02\x00" + blob(b"def")
            + b"\x02\xff\xff" + b"\x03\xff\xff" + b"\x00\x03" + blob(b"ping") + b"\x02\x00\x03"
            + b"\x03\x00\x10" + b"\x00\x05\x03\xe8" + blob(b"bye") + b"\x02\xff\xff\x03\xff\xff" + b"\x04\x03\x00")
    write("pair", "conversation", pair)
    write("pair", "cut", b"\x00\x01" + blob(b"xyz") + b"\x05\x00" + b"\x02\xff\xff\x04\x10\x00")

    # permessage-deflate: the pair conversation under a few parameter sets
    # (byte 0: client config, byte 1: server config, byte 2: level), and a
    # deflate server fed compressed frames (RFC 7692 §7.2.3.1 "Hello", a
    # fragmented one, a final-block one, garbage, a bomb).
    for name, cfg in [("defaults", b"\xff\xff\x60"), ("no_takeover", b"\x03\x03\x60"),
                      ("small_windows", b"\x00\x00\x10")]:
        write("deflate_pair", name, cfg + pair)
    hello = bytes([0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    text = c.compress(b"A compressed message. " * 20) + c.flush(zlib.Z_SYNC_FLUSH)
    text = text[:-4]
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    final = c.compress(b"final block") + c.flush(zlib.Z_FINISH)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = (c.compress(b"\0" * 200000) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    frames = [frame(0xC1, hello, KEY), frame(0x41, text[:10], KEY), frame(0x80, text[10:], KEY),
              frame(0xC1, final, KEY), frame(0xC2, b"\xff" * 20, KEY)]
    write("deflate_server", "conversation", b"\xff" + b"".join(data_step(f) for f in frames))
    write("deflate_server", "bomb", b"\x00" + data_step(frame(0xC2, bomb, KEY)))


if __name__ == "__main__":
    main()
