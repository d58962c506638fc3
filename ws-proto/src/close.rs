//! Close status codes (RFC 6455 §7.4).

use std::fmt;

/// A close status code (RFC 6455 §7.4), with the registered codes as
/// constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: "normal closure, meaning that the purpose for which the connection
    /// was established has been fulfilled."
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: "an endpoint is "going away", such as a server going down or a
    /// browser having navigated away from a page."
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: "an endpoint is terminating the connection due to a protocol error."
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: the endpoint received a type of data it cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: reported locally when a Close frame carried no status code. Never
    /// sent on the wire.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: reported locally when the connection closed without a Close
    /// frame. Never sent on the wire.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: data within a message was not consistent with its type (invalid
    /// UTF-8 in a text message).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violates the endpoint's policy.
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: a message is too big to process.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected the server to negotiate an extension.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition (also used here for a
    /// keepalive timeout).
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: service restart (IANA registry).
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (IANA registry).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: bad gateway (IANA registry).
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);
    /// 1015: reported locally when the TLS handshake failed. Never sent on the
    /// wire.
    pub const TLS_HANDSHAKE: CloseCode = CloseCode(1015);

    /// Whether this code may appear in a Close frame on the wire.
    ///
    /// RFC 6455 §7.4.1 reserves 1004, and 1005, 1006 and 1015 "MUST NOT be set
    /// as a status code in a Close control frame by an endpoint"; codes below
    /// 1000 are "not used"; 1016-2999 are reserved for future revisions of the
    /// protocol. 1012-1014 are registered with IANA and accepted; 3000-4999
    /// belong to libraries, frameworks and applications.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
