//! Which proxy to use, and the HTTP CONNECT tunnel as a sans-IO step.

use std::fmt;
use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use super::options::{HttpProxy, Proxy};
use crate::error::HandshakeError;
use crate::handshake::http::{parse_response, write_header, HeadScanner};

/// The proxy refused or botched the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy answered CONNECT with a non-2xx status (407: it wants
    /// credentials).
    Status {
        /// HTTP status.
        status: u16,
        /// Reason phrase.
        reason: String,
    },
    /// The proxy's answer was not HTTP, or too large.
    Malformed(HandshakeError),
    /// The proxy URL in the environment could not be understood.
    BadProxyUrl(String),
    /// The proxy closed the connection before answering.
    Closed,
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Status { status, reason } => write!(f, "proxy answered {status} {reason}"),
            ProxyError::Malformed(e) => write!(f, "bad proxy answer: {e}"),
            ProxyError::BadProxyUrl(u) => write!(f, "bad proxy URL {u:?}"),
            ProxyError::Closed => f.write_str("proxy closed the connection"),
        }
    }
}

impl std::error::Error for ProxyError {}

/// Decides whether to reach `host:port` through a proxy.
///
/// `env` reads an environment variable (the adapters pass
/// `|k| std::env::var(k).ok()`; tests pass a map). For [`Proxy::System`]:
/// `https_proxy` for `wss` (`tls`), `http_proxy` for `ws`, else
/// `all_proxy`, lower case first, then upper case (`HTTP_PROXY` is ignored,
/// as curl does, because CGI sets it from a request header); the hosts in
/// `no_proxy` are reached directly.
pub fn select(
    proxy: &Proxy,
    host: &str,
    port: u16,
    tls: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<HttpProxy>, ProxyError> {
    match proxy {
        Proxy::NoProxy => Ok(None),
        Proxy::Http(p) => Ok((!excluded(&p.exclusions, host, port)).then(|| p.clone())),
        Proxy::System => {
            let get = |names: &[&str]| {
                names
                    .iter()
                    .filter_map(|n| env(n))
                    .find(|v| !v.trim().is_empty())
            };
            let url = if tls {
                get(&["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"])
            } else {
                get(&["http_proxy", "all_proxy", "ALL_PROXY"])
            };
            let Some(url) = url else { return Ok(None) };
            let mut p = parse_proxy_url(&url)?;
            p.exclusions = get(&["no_proxy", "NO_PROXY"])
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            Ok((!excluded(&p.exclusions, host, port)).then_some(p))
        }
    }
}

/// Parses `http://user:pass@host:port` or `host:port` (port default 80 for
/// `http`, 1080 without a scheme, as curl does).
pub fn parse_proxy_url(s: &str) -> Result<HttpProxy, ProxyError> {
    let bad = || ProxyError::BadProxyUrl(s.to_owned());
    let with_scheme = if s.contains("://") {
        s.to_owned()
    } else {
        format!("http://{s}")
    };
    let url = url::Url::parse(&with_scheme).map_err(|_| bad())?;
    if url.scheme() != "http" {
        // Only plain HTTP proxies (CONNECT over TCP) are supported.
        return Err(bad());
    }
    let host = url.host_str().ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = url
        .port()
        .unwrap_or(if s.contains("://") { 80 } else { 1080 });
    let user = percent_decode(url.username());
    Ok(HttpProxy {
        host: host.to_owned(),
        port,
        username: (!user.is_empty()).then_some(user),
        password: url.password().map(percent_decode),
        exclusions: Vec::new(),
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `host:port` matches an exclusion (`no_proxy` syntax).
pub fn excluded(exclusions: &[String], host: &str, port: u16) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    exclusions.iter().any(|e| {
        let e = e.trim().to_ascii_lowercase();
        if e == "*" {
            return true;
        }
        // An optional port: "example.com:8080", "[::1]:80".
        let (name, eport) = split_port(&e);
        if eport.is_some_and(|p| p != port) {
            return false;
        }
        let name = name
            .trim_start_matches("*.")
            .trim_start_matches('.')
            .trim_end_matches('.');
        if name.is_empty() {
            return false;
        }
        if let (Ok(a), Ok(b)) = (name.parse::<IpAddr>(), host.parse::<IpAddr>()) {
            return a == b;
        }
        host == name || host.ends_with(&format!(".{name}"))
    })
}

fn split_port(e: &str) -> (&str, Option<u16>) {
    if let Some(rest) = e.strip_prefix('[') {
        // [v6]:port or [v6]
        return match rest.split_once(']') {
            Some((addr, tail)) => (addr, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (e, None),
        };
    }
    match e.rsplit_once(':') {
        // More than one colon: a bare IPv6 address.
        Some((name, p)) if !name.contains(':') => match p.parse() {
            Ok(p) => (name, Some(p)),
            Err(_) => (e, None),
        },
        _ => (e, None),
    }
}

/// The HTTP CONNECT exchange (RFC 9110 §9.3.6) as a sans-IO step: write
/// [`request`](Self::request) to the proxy, feed its answer to
/// [`handle_data`](Self::handle_data) until the tunnel is up; then the TLS or
/// WebSocket handshake runs through the same socket.
#[derive(Debug)]
pub struct ProxyConnect {
    request: Vec<u8>,
    scanner: HeadScanner,
    max_head: usize,
    max_headers: usize,
}

impl ProxyConnect {
    /// A CONNECT to `host:port` through `proxy`, with `Proxy-Authorization:
    /// Basic` when it has a user.
    pub fn new(host: &str, port: u16, proxy: &HttpProxy) -> Self {
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut request = Vec::with_capacity(128);
        request.extend_from_slice(format!("CONNECT {authority} HTTP/1.1\r\n").as_bytes());
        write_header(&mut request, "Host", &authority);
        if let Some(user) = &proxy.username {
            let creds = format!("{user}:{}", proxy.password.as_deref().unwrap_or(""));
            write_header(
                &mut request,
                "Proxy-Authorization",
                &format!("Basic {}", BASE64.encode(creds)),
            );
        }
        request.extend_from_slice(b"\r\n");
        ProxyConnect {
            request,
            scanner: HeadScanner::default(),
            max_head: 16 << 10,
            max_headers: 64,
        }
    }

    /// The CONNECT request bytes.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// Feeds the proxy's answer. `Ok(None)`: more is needed. `Ok(Some(rest))`:
    /// the tunnel is up; `rest` are bytes that already came through it (they
    /// belong to the next handshake).
    pub fn handle_data(&mut self, data: &[u8]) -> Result<Option<Vec<u8>>, ProxyError> {
        let Some(head) = self
            .scanner
            .push(data, self.max_head)
            .map_err(ProxyError::Malformed)?
        else {
            return Ok(None);
        };
        let resp = parse_response(&head.bytes, self.max_headers).map_err(ProxyError::Malformed)?;
        if (200..300).contains(&resp.status) {
            Ok(Some(head.rest))
        } else {
            Err(ProxyError::Status {
                status: resp.status,
                reason: resp.reason,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn system_proxy_follows_the_environment() {
        let e = env(&[
            ("http_proxy", "http://user:p%40ss@proxy.local:3128"),
            ("https_proxy", "secure.local:8443"),
            (
                "no_proxy",
                "localhost, .internal.example, 10.0.0.1, example.org:9000",
            ),
        ]);
        let p = select(&Proxy::System, "example.com", 80, false, &e)
            .unwrap()
            .unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.local", 3128));
        assert_eq!(
            (p.username.as_deref(), p.password.as_deref()),
            (Some("user"), Some("p@ss"))
        );
        let p = select(&Proxy::System, "example.com", 443, true, &e)
            .unwrap()
            .unwrap();
        assert_eq!((p.host.as_str(), p.port), ("secure.local", 8443));
        for (host, port) in [
            ("localhost", 80),
            ("a.internal.example", 80),
            ("10.0.0.1", 80),
            ("example.org", 9000),
        ] {
            assert_eq!(
                select(&Proxy::System, host, port, false, &e).unwrap(),
                None,
                "{host}:{port}"
            );
        }
        assert!(select(&Proxy::System, "example.org", 80, false, &e)
            .unwrap()
            .is_some());
        assert!(select(&Proxy::System, "notinternal.example", 80, false, &e)
            .unwrap()
            .is_some());
        // No variables: direct.
        assert_eq!(
            select(&Proxy::System, "example.com", 80, false, &env(&[])).unwrap(),
            None
        );
        // all_proxy as a fallback; HTTP_PROXY ignored.
        let e = env(&[
            ("HTTP_PROXY", "http://evil:1"),
            ("ALL_PROXY", "http://all:2"),
        ]);
        assert_eq!(
            select(&Proxy::System, "h", 80, false, &e)
                .unwrap()
                .unwrap()
                .host,
            "all"
        );
        assert!(matches!(
            select(
                &Proxy::System,
                "h",
                80,
                false,
                &env(&[("http_proxy", "socks5://x:1")])
            ),
            Err(ProxyError::BadProxyUrl(_))
        ));
    }

    #[test]
    fn explicit_and_no_proxy() {
        let mut p = HttpProxy::new("127.0.0.1", 8888);
        p.exclusions = vec!["*.skip.test".into(), "[::1]".into()];
        let proxy = Proxy::Http(p.clone());
        assert_eq!(
            select(&proxy, "example.com", 80, false, &env(&[])).unwrap(),
            Some(p)
        );
        assert_eq!(
            select(&proxy, "a.skip.test", 80, false, &env(&[])).unwrap(),
            None
        );
        assert_eq!(select(&proxy, "::1", 80, false, &env(&[])).unwrap(), None);
        assert_eq!(
            select(
                &Proxy::NoProxy,
                "x",
                80,
                false,
                &env(&[("http_proxy", "p:1")])
            )
            .unwrap(),
            None
        );
        assert!(excluded(&["*".into()], "anything", 1));
    }

    #[test]
    fn connect_exchange() {
        let mut p = HttpProxy::new("proxy", 3128);
        p.username = Some("aladdin".into());
        p.password = Some("opensesame".into());
        let mut c = ProxyConnect::new("example.com", 443, &p);
        let req = String::from_utf8(c.request().to_vec()).unwrap();
        assert_eq!(
            req,
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\
             Proxy-Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l\r\n\r\n"
        );
        assert_eq!(
            c.handle_data(b"HTTP/1.1 200 Connection established\r\n")
                .unwrap(),
            None
        );
        assert_eq!(
            c.handle_data(b"\r\n\x16\x03").unwrap(),
            Some(b"\x16\x03".to_vec())
        );
        let mut c = ProxyConnect::new("::1", 80, &HttpProxy::new("p", 1));
        assert!(c.request().starts_with(b"CONNECT [::1]:80 HTTP/1.1\r\n"));
        assert_eq!(
            c.handle_data(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"),
            Err(ProxyError::Status {
                status: 407,
                reason: "Proxy Authentication Required".into()
            })
        );
    }
}
