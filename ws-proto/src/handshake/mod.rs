//! placeholder until the handshake module lands
pub mod http;
