//! Test helpers shared by the adapters' tests: certificates made with
//! rcgen (a CA, a server certificate, a client certificate with an
//! encrypted key), a real tinyproxy (installed by
//! scripts/install-tinyproxy.sh when missing), temporary directories.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "ws-test-{tag}-{}-{}",
            std::process::id(),
            rand_core::RngCore::next_u64(&mut rand_core::OsRng)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `f` until it is true or 5 s pass.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

/// Whether nothing listens on `addr` (loopback): a connection is refused,
/// or connects to itself. A free port in the ephemeral range can be the
/// one the kernel picks for the connecting socket too (TCP's simultaneous
/// open then connects the socket to itself), which is no listener.
pub fn not_listening(addr: &std::net::SocketAddr) -> bool {
    match std::net::TcpStream::connect_timeout(addr, Duration::from_secs(1)) {
        Err(_) => true,
        Ok(s) => s.local_addr().ok() == s.peer_addr().ok(),
    }
}

/// A CA, a server certificate for `localhost` signed by it, and a client
/// certificate whose key is encrypted with `client_password`.
pub struct Pki {
    pub dir: TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key_encrypted: PathBuf,
    pub other_ca: PathBuf,
}

pub const CLIENT_KEY_PASSWORD: &str = "correct horse battery staple";

fn ca(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    (params.self_signed(&key).unwrap(), key)
}

pub fn pki() -> Pki {
    let dir = TempDir::new("pki");
    let (ca_cert, ca_key) = ca("ws test CA");
    let (other_ca, _) = ca("some other CA");

    let server_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let server = params.signed_by(&server_key, &ca_cert, &ca_key).unwrap();

    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ws test client");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client = params.signed_by(&client_key, &ca_cert, &ca_key).unwrap();
    let der = client_key.serialize_der();
    let info = pkcs8::PrivateKeyInfo::try_from(der.as_slice()).unwrap();
    // scrypt with N = 2^10: pkcs8's default (N = 2^17, 128 MiB) takes
    // about half a second per encryption or decryption in a release build
    // and seconds in a loaded debug one, paid by every `pki()` and every
    // connection that loads the key, inside tests' time limits.
    let (mut salt, mut iv) = ([0u8; 16], [0u8; 16]);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut iv);
    let kdf = pkcs8::pkcs5::scrypt::Params::new(10, 8, 1, 32).unwrap();
    let scheme = pkcs8::pkcs5::pbes2::Parameters::scrypt_aes256cbc(kdf, &salt, &iv).unwrap();
    let encrypted = info
        .encrypt_with_params(scheme, CLIENT_KEY_PASSWORD.as_bytes())
        .unwrap();
    let encrypted_pem = encrypted
        .to_pem("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF)
        .unwrap();

    Pki {
        ca: dir.file("ca.pem", ca_cert.pem().as_bytes()),
        server_cert: dir.file("server.pem", server.pem().as_bytes()),
        server_key: dir.file("server.key", server_key.serialize_pem().as_bytes()),
        client_cert: dir.file("client.pem", client.pem().as_bytes()),
        client_key_encrypted: dir.file("client.key", encrypted_pem.as_bytes()),
        other_ca: dir.file("other-ca.pem", other_ca.pem().as_bytes()),
        dir,
    }
}

/// A tinyproxy on a free loopback port, killed on drop.
pub struct Tinyproxy {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
    _dir: TempDir,
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts tinyproxy (installing it with scripts/install-tinyproxy.sh when
/// missing); with `auth`, it demands those Basic credentials.
pub fn tinyproxy(auth: Option<(&str, &str)>) -> Tinyproxy {
    let bin = Path::new("/usr/bin/tinyproxy");
    if !bin.exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-tinyproxy.sh");
        let status = Command::new("bash")
            .arg(&script)
            .status()
            .expect("run install-tinyproxy.sh");
        assert!(
            status.success(),
            "scripts/install-tinyproxy.sh failed: tinyproxy is needed for the proxy tests"
        );
    }
    let dir = TempDir::new("tinyproxy");
    let port = free_port();
    let log = dir.0.join("tinyproxy.log");
    let mut conf = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Connect\nMaxClients 64\nAllow 127.0.0.1\nDisableViaHeader Yes\n",
        log.display()
    );
    if let Some((u, p)) = auth {
        conf.push_str(&format!("BasicAuth {u} {p}\n"));
    }
    let conf_path = dir.file("tinyproxy.conf", conf.as_bytes());
    let child = Command::new(bin)
        .arg("-d")
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tinyproxy");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    eventually("tinyproxy to listen", || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    Tinyproxy {
        child,
        port,
        log,
        _dir: dir,
    }
}

impl Tinyproxy {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The directory of the Node `ws` scripts, with `ws` installed (by
/// scripts/install-node-ws.sh when missing).
pub fn node_ws() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/node");
    if !dir.join("node_modules/ws/package.json").exists() {
        let script = dir.join("../install-node-ws.sh");
        let status = Command::new("bash")
            .arg(&script)
            .status()
            .expect("run install-node-ws.sh");
        assert!(
            status.success(),
            "scripts/install-node-ws.sh failed: Node's ws is needed for the interop tests"
        );
    }
    dir
}

/// An echo server on Node's `ws` (scripts/node/echo_server.js), killed on
/// drop; it also exits by itself when the test process dies (its stdin
/// closes).
pub struct NodeEcho {
    child: Child,
    pub port: u16,
}

impl NodeEcho {
    /// `deflate`: the JSON of ws's `perMessageDeflate` options, or "false".
    pub fn start(deflate: &str) -> NodeEcho {
        use std::io::BufRead;
        let dir = node_ws();
        let mut child = Command::new("node")
            .arg(dir.join("echo_server.js"))
            .arg("0")
            .arg(format!("{{\"deflate\": {deflate}}}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the port");
        let port = line
            .trim()
            .parse()
            .expect("node echo_server prints its port");
        NodeEcho { child, port }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }
}

impl Drop for NodeEcho {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs scripts/node/client.js against `url` with ws's `perMessageDeflate`
/// options (JSON): whether every echo matched, and what it printed (`ok`
/// and the negotiated extensions).
pub fn node_client(url: &str, deflate: &str) -> (bool, String) {
    let dir = node_ws();
    let out = Command::new("node")
        .arg(dir.join("client.js"))
        .arg(url)
        .arg(deflate)
        .stdin(Stdio::null())
        .output()
        .expect("run node");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// A message as the servers' lent-callback tests log it (`who`: which
/// callback saw it).
pub fn logged(who: &str, m: ws_proto::MessageRef<'_>) -> String {
    match m {
        ws_proto::MessageRef::Text(t) => format!("{who} text {t}"),
        ws_proto::MessageRef::Binary(b) => format!("{who} binary {}", b.len()),
        other => format!("{who} {other:?}"),
    }
}

/// What the servers' lent-callback tests log: each message lent (and the
/// handle refused inside), then given to the owned callback.
pub const LENT_THEN_OWNED: [&str; 8] = [
    "lent text one true",
    "owned text one",
    "lent text two true",
    "owned text two",
    "lent text three true",
    "owned text three",
    "lent binary 300000 true",
    "owned binary 300000",
];

/// The README's code, compiled as doc tests (this crate dev-depends on both
/// adapters) so it cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// What an echo server does with a message lent by `recv_with`.
#[derive(Debug)]
pub enum Reply {
    /// Send `buf` back as text.
    Text,
    /// Send `buf` back as binary.
    Binary,
    /// Nothing to send (a ping or a pong).
    Nothing,
    /// The close arrived: its code and reason.
    Closed(ws_proto::CloseCode, String),
}

/// For an echo server on `recv_with`: copies a lent message's data into
/// `buf` (one buffer for every message) and counts pings.
pub fn take_lent(m: ws_proto::MessageRef<'_>, buf: &mut Vec<u8>, pings: &mut u32) -> Reply {
    use ws_proto::MessageRef;
    buf.clear();
    match m {
        MessageRef::Text(t) => {
            buf.extend_from_slice(t.as_bytes());
            Reply::Text
        }
        MessageRef::Binary(b) => {
            buf.extend_from_slice(b);
            Reply::Binary
        }
        MessageRef::Ping(_) => {
            *pings += 1;
            Reply::Nothing
        }
        MessageRef::Pong(_) => Reply::Nothing,
        MessageRef::Closed(c) => Reply::Closed(c.code, c.reason.clone()),
    }
}

/// For an echo server on `recv_with_reply`: answers a lent text or binary
/// message with itself from inside the lend, counts pings, and checks that
/// answering the close is refused. `Nothing` once answered.
pub fn answer_lent(
    m: ws_proto::MessageRef<'_>,
    reply: &mut ws_proto::Reply<'_>,
    pings: &mut u32,
) -> Reply {
    use ws_proto::MessageRef;
    match m {
        MessageRef::Text(t) => reply.send_text(t).unwrap(),
        MessageRef::Binary(b) => reply.send_binary(b).unwrap(),
        MessageRef::Ping(_) => *pings += 1,
        MessageRef::Pong(_) => {}
        MessageRef::Closed(c) => {
            assert!(reply.send_text("late").is_err(), "answered after the close");
            return Reply::Closed(c.code, c.reason.clone());
        }
    }
    Reply::Nothing
}

/// For tests that a payload is not copied while it is sent: an allocator
/// that records the largest allocation made on a thread while that thread
/// is [`MARKED`] (a copy into an output buffer shows as an allocation of
/// the payload's size). Install it in a test binary with
/// `#[global_allocator] static GLOBAL: Largest = Largest;`.
pub struct Largest;

/// The largest allocation [`Largest`] saw on a marked thread.
pub static LARGEST: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// Whether [`Largest`] watches this thread.
    pub static MARKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn note_allocation(size: usize) {
    if MARKED.with(std::cell::Cell::get) {
        LARGEST.fetch_max(size, std::sync::atomic::Ordering::Relaxed);
    }
}

unsafe impl std::alloc::GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        note_allocation(layout.size());
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        note_allocation(layout.size());
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

/// What the owned-send tests send: owned and copied, large and small,
/// text and binary, 9 MiB in all (more than loopback's socket buffers
/// hold while the client waits).
pub fn owned_send_messages() -> Vec<ws_proto::Message> {
    use ws_proto::Message;
    let big = |n: usize, salt: u32| -> Message {
        Message::Binary(
            (0..n as u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 ^ salt as u8)
                .collect::<Vec<u8>>()
                .into(),
        )
    };
    vec![
        big(3 << 20, 1),
        Message::Text("small".into()),
        Message::Text("grüße 世界 ".repeat(150_000)),
        big(4000, 2),
        Message::Binary(b"tiny".to_vec().into()),
        big(4 << 20, 3),
        Message::Text("x".repeat(5000)),
    ]
}

/// Checks that [`Largest`] saw no allocation of 64 KiB or more on a marked
/// thread: the payloads left without an output buffer of their size (the
/// copied messages of [`owned_send_messages`] need a few KiB).
pub fn assert_payloads_not_copied() {
    let largest = LARGEST.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        largest < 64 << 10,
        "largest allocation while sending: {largest}"
    );
}

/// Checks the `i`th message an owned-send test received against what was
/// sent (sizes, not megabytes of contents, when they differ).
pub fn check_sent_message(i: usize, got: &ws_proto::Message, want: &ws_proto::Message) {
    use ws_proto::Message;
    assert!(
        got == want,
        "message {i} differs: got {}",
        match got {
            Message::Text(t) => format!("text of {} bytes", t.len()),
            Message::Binary(b) => format!("binary of {} bytes", b.len()),
            other => format!("{other:?}"),
        }
    );
}

/// Checks that an owned-send test ended with the sender's clean close
/// ("done").
pub fn check_done(got: ws_proto::Message) {
    match got {
        ws_proto::Message::Closed(info) => assert_eq!(
            (info.code, info.reason.as_str()),
            (ws_proto::CloseCode::NORMAL, "done")
        ),
        other => panic!("expected the close, got {other:?}"),
    }
}

/// For tests of how much memory a connection keeps: an allocator that
/// counts the bytes allocated and not yet freed, by every thread
/// ([`LIVE`]). Install it in a test binary of one test with
/// `#[global_allocator] static GLOBAL: Live = Live;`.
pub struct Live;

/// Bytes allocated through [`Live`] and not freed.
pub static LIVE: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

fn live_add(n: usize, sign: isize) {
    LIVE.fetch_add(sign * n as isize, std::sync::atomic::Ordering::Relaxed);
}

unsafe impl std::alloc::GlobalAlloc for Live {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        live_add(layout.size(), 1);
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        live_add(layout.size(), -1);
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        live_add(layout.size(), 1);
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        live_add(layout.size(), -1);
        live_add(new_size, 1);
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

/// Bytes live now ([`Live`]).
pub fn live_bytes() -> isize {
    LIVE.load(std::sync::atomic::Ordering::Relaxed)
}

/// How long the held-buffer tests let a connection keep buffers grown for
/// large messages (`Config::release_buffers_after`).
pub const HOLD: std::time::Duration = std::time::Duration::from_millis(300);

/// The default configuration with [`HOLD`].
pub fn hold_config() -> ws_proto::Config {
    let mut c = ws_proto::Config::default();
    c.release_buffers_after = HOLD;
    c
}
