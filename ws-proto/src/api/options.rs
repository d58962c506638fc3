//! Client and server options, mirroring `WebSocketRequestOptions` and
//! `WebSocketServerConfig` of the `@ohos.net.webSocket` API.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::Config;
use crate::handshake::client::ClientRequest;

use super::Error;

/// The longest URL a client accepts, in characters (the spec's limit since
/// API 15).
pub const MAX_URL_LEN: usize = 2048;

/// A client certificate for mutual TLS (`ClientCert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// PEM file with the certificate chain.
    pub cert_path: PathBuf,
    /// PEM file with the private key: PKCS#8 (plain or encrypted), PKCS#1
    /// or SEC1.
    pub key_path: PathBuf,
    /// Password of an encrypted PKCS#8 key (`ENCRYPTED PRIVATE KEY`).
    pub key_password: Option<String>,
}

/// An explicit HTTP proxy (`HttpProxy`): the client tunnels through it with
/// HTTP CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProxy {
    /// Proxy host name or IP address.
    pub host: String,
    /// Proxy port.
    pub port: u16,
    /// User for `Proxy-Authorization: Basic`.
    pub username: Option<String>,
    /// Password for `Proxy-Authorization: Basic`.
    pub password: Option<String>,
    /// Hosts reached directly, in `no_proxy` syntax: `example.com` (and its
    /// subdomains), `.example.com`, `*.example.com`, an IP address, an
    /// optional `:port`, or `*` for every host.
    pub exclusions: Vec<String>,
}

impl HttpProxy {
    /// A proxy at `host:port` without credentials or exclusions.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        HttpProxy {
            host: host.into(),
            port,
            username: None,
            password: None,
            exclusions: Vec::new(),
        }
    }
}

/// Which proxy the client uses (`ProxyConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Proxy {
    /// The system's proxy: the `https_proxy` (for `wss`) or `http_proxy`
    /// (for `ws`) environment variable, else `all_proxy` (upper-case names
    /// too), minus the hosts in `no_proxy`. The default, as in the spec.
    #[default]
    System,
    /// Connect directly.
    NoProxy,
    /// This proxy.
    Http(HttpProxy),
}

/// Options of a client connection (`WebSocketRequestOptions`, plus what a
/// demanding user expects: Origin, several subprotocols, timeouts, limits).
///
/// Unlike the spec's reference implementation, a `wss` client verifies the
/// server's certificate chain *and* its host name unless
/// [`skip_server_cert_verification`](Self::skip_server_cert_verification) is
/// set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Extra request headers (`header`).
    pub headers: Vec<(String, String)>,
    /// PEM file of CA certificates to trust instead of the system's store
    /// (`caPath`).
    pub ca_path: Option<PathBuf>,
    /// Client certificate (`clientCert`).
    pub client_cert: Option<ClientCert>,
    /// Proxy (`proxy`); default: the system's.
    pub proxy: Proxy,
    /// Offered subprotocols, in order of preference (`protocol`).
    pub protocols: Vec<String>,
    /// Accept any server certificate and host name
    /// (`skipServerCertVerification`). Only for testing.
    pub skip_server_cert_verification: bool,
    /// `Origin` header.
    pub origin: Option<String>,
    /// Limit for DNS, TCP connect and the proxy tunnel. Default 30 s.
    pub connect_timeout: Option<Duration>,
    /// Limit for the TLS and WebSocket handshakes. Default 30 s.
    pub handshake_timeout: Option<Duration>,
    /// Limits and timers of the connection.
    pub config: Config,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            headers: Vec::new(),
            ca_path: None,
            client_cert: None,
            proxy: Proxy::System,
            protocols: Vec::new(),
            skip_server_cert_verification: false,
            origin: None,
            connect_timeout: Some(Duration::from_secs(30)),
            handshake_timeout: Some(Duration::from_secs(30)),
            config: Config::default(),
        }
    }
}

impl ClientOptions {
    /// The request for `url` with these options, checked before any I/O:
    /// the URL (at most [`MAX_URL_LEN`] characters, `ws`/`wss`, a host, no
    /// fragment: 2302001) and every header and subprotocol name (401).
    pub fn request(&self, url: &str) -> Result<ClientRequest, Error> {
        if url.chars().count() > MAX_URL_LEN {
            return Err(Error::Url(format!("longer than {MAX_URL_LEN} characters")));
        }
        let mut request = ClientRequest::new(url)?;
        for p in &self.protocols {
            request = request.protocol(p.clone());
        }
        if let Some(o) = &self.origin {
            request = request.origin(o.clone());
        }
        for (n, v) in &self.headers {
            request = request.header(n, v)?;
        }
        Ok(request)
    }
}

/// A server certificate (`ServerCert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCert {
    /// PEM file with the certificate chain.
    pub cert_path: PathBuf,
    /// PEM file with the private key.
    pub key_path: PathBuf,
}

/// Options of a server (`WebSocketServerConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Address to listen on (`serverIP`); default 0.0.0.0.
    pub ip: IpAddr,
    /// Port to listen on (`serverPort`); 0 picks a free one.
    pub port: u16,
    /// TLS certificate and key (`serverCert`); plain TCP without.
    pub cert: Option<ServerCert>,
    /// With TLS: require a client certificate issued by a CA in this PEM
    /// file (mutual TLS). Not in the spec; `None` (the default) asks for no
    /// client certificate.
    pub client_ca: Option<PathBuf>,
    /// Subprotocol the server speaks (`protocol`): chosen when the client
    /// offers it.
    pub protocol: Option<String>,
    /// Most connections at once (`maxConcurrentClientsNumber`); default 10.
    /// Past it a new connection is answered `503 Service Unavailable`.
    pub max_clients: usize,
    /// Most connections from one IP address (`maxConnectionsForOneClient`);
    /// default 10. Past it a new connection is answered `429 Too Many
    /// Requests`.
    pub max_connections_per_ip: usize,
    /// Time a client has to complete the opening handshake (TLS included);
    /// default 10 s. A slow or silent client cannot hold a slot longer.
    pub handshake_timeout: Duration,
    /// Limits and timers of each connection.
    pub config: Config,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            ip: IpAddr::from([0, 0, 0, 0]),
            port: 0,
            cert: None,
            client_ca: None,
            protocol: None,
            max_clients: 10,
            max_connections_per_ip: 10,
            handshake_timeout: Duration::from_secs(10),
            config: Config::default(),
        }
    }
}
