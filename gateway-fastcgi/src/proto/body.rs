//! Record bodies with a fixed layout: `FCGI_BEGIN_REQUEST` with its role
//! and flags (spec §5.1) and `FCGI_END_REQUEST` with its statuses (§5.5).

use std::fmt;

use super::record::{
    FCGI_AUTHORIZER, FCGI_CANT_MPX_CONN, FCGI_FILTER, FCGI_KEEP_CONN, FCGI_OVERLOADED,
    FCGI_REQUEST_COMPLETE, FCGI_RESPONDER, FCGI_UNKNOWN_ROLE,
};

/// The role an `FCGI_BEGIN_REQUEST` asks the application to play (§6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `FCGI_RESPONDER` (1): produce the response to an HTTP request.
    Responder,
    /// `FCGI_AUTHORIZER` (2): decide whether a request may proceed.
    Authorizer,
    /// `FCGI_FILTER` (3): a responder that also receives a data file on `FCGI_DATA`.
    Filter,
}

impl Role {
    /// The role with this wire value, if FastCGI 1.0 defines one.
    pub fn from_u16(value: u16) -> Option<Role> {
        match value {
            FCGI_RESPONDER => Some(Role::Responder),
            FCGI_AUTHORIZER => Some(Role::Authorizer),
            FCGI_FILTER => Some(Role::Filter),
            _ => None,
        }
    }

    /// The wire value.
    pub fn as_u16(self) -> u16 {
        match self {
            Role::Responder => FCGI_RESPONDER,
            Role::Authorizer => FCGI_AUTHORIZER,
            Role::Filter => FCGI_FILTER,
        }
    }

    /// The spec's name without its prefix: `RESPONDER`, `AUTHORIZER` or
    /// `FILTER` (the value libfcgi puts in its `FCGI_ROLE` parameter).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Responder => "RESPONDER",
            Role::Authorizer => "AUTHORIZER",
            Role::Filter => "FILTER",
        }
    }
}

impl From<Role> for u16 {
    fn from(role: Role) -> u16 {
        role.as_u16()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `protocolStatus` of an `FCGI_END_REQUEST` (§5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolStatus {
    /// `FCGI_REQUEST_COMPLETE` (0): normal end.
    RequestComplete,
    /// `FCGI_CANT_MPX_CONN` (1): rejected, the connection carries another request.
    CantMpxConn,
    /// `FCGI_OVERLOADED` (2): rejected, out of capacity.
    Overloaded,
    /// `FCGI_UNKNOWN_ROLE` (3): rejected, the role is not supported.
    UnknownRole,
}

impl ProtocolStatus {
    /// The status with this wire value, if FastCGI 1.0 defines one.
    pub fn from_u8(value: u8) -> Option<ProtocolStatus> {
        match value {
            FCGI_REQUEST_COMPLETE => Some(ProtocolStatus::RequestComplete),
            FCGI_CANT_MPX_CONN => Some(ProtocolStatus::CantMpxConn),
            FCGI_OVERLOADED => Some(ProtocolStatus::Overloaded),
            FCGI_UNKNOWN_ROLE => Some(ProtocolStatus::UnknownRole),
            _ => None,
        }
    }

    /// The wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            ProtocolStatus::RequestComplete => FCGI_REQUEST_COMPLETE,
            ProtocolStatus::CantMpxConn => FCGI_CANT_MPX_CONN,
            ProtocolStatus::Overloaded => FCGI_OVERLOADED,
            ProtocolStatus::UnknownRole => FCGI_UNKNOWN_ROLE,
        }
    }
}

impl From<ProtocolStatus> for u8 {
    fn from(status: ProtocolStatus) -> u8 {
        status.as_u8()
    }
}

/// The body of an `FCGI_BEGIN_REQUEST` record (§5.1):
///
/// ```text
/// +--------+--------+-------+--------------------+
/// | roleB1 | roleB0 | flags | reserved (5 bytes) |
/// +--------+--------+-------+--------------------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeginRequestBody {
    /// The role's wire value; see [`Role::from_u16`].
    pub role: u16,
    /// Flags; only [`FCGI_KEEP_CONN`] is defined.
    pub flags: u8,
}

impl BeginRequestBody {
    /// Length of the body on the wire.
    pub const LEN: usize = 8;

    /// Reads the body from a record's content, which must be exactly 8 bytes.
    pub fn parse(content: &[u8]) -> Option<BeginRequestBody> {
        let bytes: &[u8; Self::LEN] = content.try_into().ok()?;
        let [role1, role0, flags, ..] = *bytes;
        Some(BeginRequestBody {
            role: u16::from_be_bytes([role1, role0]),
            flags,
        })
    }

    /// Whether [`FCGI_KEEP_CONN`] is set: the web server keeps the connection
    /// after this request (§5.1).
    pub fn keep_conn(&self) -> bool {
        self.flags & FCGI_KEEP_CONN != 0
    }

    /// The 8 wire bytes.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let [role1, role0] = self.role.to_be_bytes();
        [role1, role0, self.flags, 0, 0, 0, 0, 0]
    }
}

/// The body of an `FCGI_END_REQUEST` record (§5.5):
///
/// ```text
/// +--------------+--------------+--------------+--------------+----------------+--------------------+
/// | appStatusB3  | appStatusB2  | appStatusB1  | appStatusB0  | protocolStatus | reserved (3 bytes) |
/// +--------------+--------------+--------------+--------------+----------------+--------------------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndRequestBody {
    /// The application's exit status (CGI-style; 0 means success).
    pub app_status: u32,
    /// The protocol status's wire value; see [`ProtocolStatus::from_u8`].
    pub protocol_status: u8,
}

impl EndRequestBody {
    /// Length of the body on the wire.
    pub const LEN: usize = 8;

    /// Reads the body from a record's content, which must be exactly 8 bytes.
    pub fn parse(content: &[u8]) -> Option<EndRequestBody> {
        let bytes: &[u8; Self::LEN] = content.try_into().ok()?;
        let [s3, s2, s1, s0, protocol_status, ..] = *bytes;
        Some(EndRequestBody {
            app_status: u32::from_be_bytes([s3, s2, s1, s0]),
            protocol_status,
        })
    }

    /// The 8 wire bytes.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let [s3, s2, s1, s0] = self.app_status.to_be_bytes();
        [s3, s2, s1, s0, self.protocol_status, 0, 0, 0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_statuses_round_trip() {
        for role in [Role::Responder, Role::Authorizer, Role::Filter] {
            assert_eq!(Role::from_u16(role.as_u16()), Some(role));
        }
        assert_eq!(Role::from_u16(0), None);
        assert_eq!(Role::from_u16(4), None);
        assert_eq!(Role::Filter.to_string(), "FILTER");
        for value in 0..=3 {
            assert_eq!(ProtocolStatus::from_u8(value).map(u8::from), Some(value));
        }
        assert_eq!(ProtocolStatus::from_u8(4), None);
    }

    /// The header layout, big-endian fields, reserved byte ignored.

    #[test]
    fn begin_and_end_bodies() {
        let body = BeginRequestBody::parse(b"\x00\x01\x01\x00\x00\x00\x00\x00").unwrap();
        assert_eq!(Role::from_u16(body.role), Some(Role::Responder));
        assert!(body.keep_conn());
        assert!(
            !BeginRequestBody {
                role: 1,
                flags: 0xfe
            }
            .keep_conn()
        );
        assert_eq!(body.to_bytes(), *b"\x00\x01\x01\x00\x00\x00\x00\x00");
        assert_eq!(
            BeginRequestBody::parse(b"\x00\x01\x01\x00\x00\x00\x00"),
            None
        );
        assert_eq!(BeginRequestBody::parse(&[0; 9]), None);

        let end = EndRequestBody::parse(b"\x00\x00\x01\x02\x03\x00\x00\x00").unwrap();
        assert_eq!(end.app_status, 0x102);
        assert_eq!(
            ProtocolStatus::from_u8(end.protocol_status),
            Some(ProtocolStatus::UnknownRole)
        );
        assert_eq!(end.to_bytes(), *b"\x00\x00\x01\x02\x03\x00\x00\x00");
        assert_eq!(EndRequestBody::parse(&[]), None);
    }
}
