//! A server's table of connections and its admission limits.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::net::{IpAddr, SocketAddr};

use super::events::ClientConnection;
use super::options::ServerOptions;
use super::Error;

/// Why a new connection is refused, with the HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// 503 (too many clients) or 429 (too many from one address).
    pub status: u16,
    /// A short text for the response body.
    pub reason: &'static str,
}

/// The connections of a server: admission against `max_clients` and
/// `max_connections_per_ip` (handshakes in progress count), ids in accept
/// order, and a handle `T` per established connection (the adapter's
/// sender).
#[derive(Debug)]
pub struct ConnectionTable<T> {
    max_clients: usize,
    max_per_ip: usize,
    live: HashMap<u64, (ClientConnection, T), BuildHasherDefault<IdHasher>>,
    per_ip: HashMap<IpAddr, usize>,
    total: usize,
    next_id: u64,
}

/// Hashes the table's ids for the lookup that every `send` to a client
/// makes. The table hands the ids out in sequence, so no peer chooses them
/// and SipHash's defence against chosen keys buys nothing here; one
/// multiply by an odd constant spreads them over the buckets (a
/// permutation of the low bits, which pick the bucket, and mixed high bits,
/// which the map's tags use).
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

const ID_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(ID_MIX);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(ID_MIX);
    }
}

impl<T: Clone> ConnectionTable<T> {
    /// An empty table with the limits of `options`.
    pub fn new(options: &ServerOptions) -> Self {
        ConnectionTable {
            max_clients: options.max_clients,
            max_per_ip: options.max_connections_per_ip,
            live: HashMap::default(),
            per_ip: HashMap::new(),
            total: 0,
            next_id: 1,
        }
    }

    /// Admits a new TCP connection from `peer`, which then counts against
    /// the limits until [`release`](Self::release); or says how to refuse
    /// it.
    pub fn admit(&mut self, peer: SocketAddr) -> Result<ClientConnection, Refusal> {
        if self.total >= self.max_clients {
            return Err(Refusal {
                status: 503,
                reason: "too many clients",
            });
        }
        let n = self.per_ip.entry(peer.ip()).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(Refusal {
                status: 429,
                reason: "too many connections from this address",
            });
        }
        *n += 1;
        self.total += 1;
        let id = self.next_id;
        self.next_id += 1;
        Ok(ClientConnection { id, addr: peer })
    }

    /// Registers an established connection's handle.
    pub fn insert(&mut self, conn: ClientConnection, handle: T) {
        self.live.insert(conn.id, (conn, handle));
    }

    /// Unregisters a connection's handle (it stays counted until
    /// [`release`](Self::release)).
    pub fn remove(&mut self, conn: &ClientConnection) {
        self.live.remove(&conn.id);
    }

    /// The connection is gone: unregister it and free its slot.
    pub fn release(&mut self, conn: &ClientConnection) {
        self.live.remove(&conn.id);
        self.total = self.total.saturating_sub(1);
        let ip = conn.addr.ip();
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// The handle of a live connection, or [`Error::NoSuchConnection`]
    /// (2302006).
    pub fn get(&self, conn: &ClientConnection) -> Result<T, Error> {
        match self.live.get(&conn.id) {
            Some((c, h)) if c == conn => Ok(h.clone()),
            _ => Err(Error::NoSuchConnection),
        }
    }

    /// The live connections, in accept order.
    pub fn list(&self) -> Vec<ClientConnection> {
        let mut v: Vec<_> = self.live.values().map(|(c, _)| *c).collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// Every live connection's handle.
    pub fn handles(&self) -> Vec<T> {
        self.live.values().map(|(_, h)| h.clone()).collect()
    }
}

impl ServerOptions {
    /// Checks the options before anything is bound: limits of at least 1
    /// (401).
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_clients == 0 || self.max_connections_per_ip == 0 {
            return Err(Error::InvalidParameter(
                "connection limits must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// The error for a failed `bind`: 2302004 when the address is not one of
/// this machine's, 2302005 otherwise (port in use, no permission).
pub fn bind_error(e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::AddrNotAvailable => Error::ListenAddress(e),
        _ => Error::ListenPort(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
        (ip, port).into()
    }

    #[test]
    fn limits_ids_and_release() {
        let o = ServerOptions {
            max_clients: 3,
            max_connections_per_ip: 2,
            ..Default::default()
        };
        let mut t: ConnectionTable<&'static str> = ConnectionTable::new(&o);
        let a = t.admit(addr([127, 0, 0, 1], 1)).unwrap();
        let b = t.admit(addr([127, 0, 0, 1], 2)).unwrap();
        assert_eq!(t.admit(addr([127, 0, 0, 1], 3)).unwrap_err().status, 429);
        let c = t.admit(addr([127, 0, 0, 2], 1)).unwrap();
        assert_eq!(t.admit(addr([127, 0, 0, 3], 1)).unwrap_err().status, 503);
        assert_eq!((a.id, b.id, c.id), (1, 2, 3));
        t.insert(b, "b");
        t.insert(a, "a");
        assert_eq!(t.list(), [a, b]);
        assert_eq!(t.get(&a).unwrap(), "a");
        assert!(matches!(t.get(&c), Err(Error::NoSuchConnection)));
        t.release(&a);
        assert_eq!(t.list(), [b]);
        // The slot and the per-address count are free again.
        let d = t.admit(addr([127, 0, 0, 1], 4)).unwrap();
        assert_eq!(d.id, 4);
        assert_eq!(t.handles(), ["b"]);
    }

    #[test]
    fn many_connections_are_found_listed_and_released() {
        let o = ServerOptions {
            max_clients: 20_000,
            max_connections_per_ip: 20_000,
            ..Default::default()
        };
        let mut t: ConnectionTable<u64> = ConnectionTable::new(&o);
        let conns: Vec<_> = (0..10_000u16)
            .map(|p| t.admit(addr([127, 0, 0, 1], p)).unwrap())
            .collect();
        for c in conns.iter().rev() {
            t.insert(*c, c.id * 7);
        }
        for c in &conns {
            assert_eq!(t.get(c).unwrap(), c.id * 7);
        }
        for c in conns.iter().step_by(2) {
            t.release(c);
        }
        let left: Vec<_> = conns.iter().skip(1).step_by(2).copied().collect();
        assert_eq!(t.list(), left);
        assert!(matches!(t.get(&conns[0]), Err(Error::NoSuchConnection)));
        // Same id, another address: not that connection.
        let mut other = conns[1];
        other.addr = addr([127, 0, 0, 2], 1);
        assert!(matches!(t.get(&other), Err(Error::NoSuchConnection)));
        assert_eq!(t.handles().len(), 5_000);
    }

    #[test]
    fn options_and_bind_errors() {
        let mut o = ServerOptions::default();
        assert!(o.validate().is_ok());
        o.max_clients = 0;
        assert_eq!(o.validate().unwrap_err().code().code(), 401);
        assert_eq!(
            bind_error(io::ErrorKind::AddrNotAvailable.into())
                .code()
                .code(),
            2_302_004
        );
        assert_eq!(
            bind_error(io::ErrorKind::AddrInUse.into()).code().code(),
            2_302_005
        );
    }
}
