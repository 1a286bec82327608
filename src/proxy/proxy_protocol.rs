//! The PROXY protocol (HAProxy's, versions 1 and 2): a header a load balancer writes before
//! the client's bytes, carrying the client's address. With `--proxy-protocol` every
//! connection must start with one; anything else is refused.
//!
//! Parsing is pure ([`parse`] over a byte slice); [`read_header`] does the socket reads and
//! keeps whatever followed the header for the TLS or HTTP layer ([`Prefixed`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included (spec §2.1).
const V1_MAX: usize = 107;
/// Largest v2 header accepted: 16 fixed bytes plus addresses and TLVs.
const V2_MAX: usize = 16 + 2048;

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A proxied connection from this client address.
    Proxied(SocketAddr),
    /// `UNKNOWN` (v1) or `LOCAL` / non-IP (v2): the connection is the proxy's own (a health
    /// check); the peer address stands.
    Local,
}

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The bytes are not a PROXY header.
    #[error("not a PROXY protocol header")]
    NotProxy,
    /// A PROXY header that breaks the spec.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
}

/// Parses a header at the start of `buf`: `Ok(Some((header, length)))` when complete,
/// `Ok(None)` when more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, ProxyHeaderError> {
    let v2_prefix = buf.len().min(V2_SIGNATURE.len());
    if buf[..v2_prefix] == V2_SIGNATURE[..v2_prefix] && !buf.is_empty() {
        return parse_v2(buf);
    }
    let v1_prefix = buf.len().min(6);
    if buf[..v1_prefix] == b"PROXY "[..v1_prefix] {
        return parse_v1(buf);
    }
    Err(ProxyHeaderError::NotProxy)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(Header, usize)>, ProxyHeaderError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(ProxyHeaderError::Malformed("v1 line longer than 107 bytes"))
        } else {
            Ok(None)
        };
    };
    if end + 2 > V1_MAX {
        return Err(ProxyHeaderError::Malformed("v1 line longer than 107 bytes"));
    }
    let line = std::str::from_utf8(&buf[6..end])
        .map_err(|_| ProxyHeaderError::Malformed("v1 line is not ASCII"))?;
    let mut parts = line.split(' ');
    let header = match parts.next() {
        Some("UNKNOWN") => Header::Local,
        Some(family @ ("TCP4" | "TCP6")) => {
            let fields: Vec<&str> = parts.collect();
            let [src, _dst, sport, _dport] = fields[..] else {
                return Err(ProxyHeaderError::Malformed("v1 needs 4 address fields"));
            };
            let ip: IpAddr = src
                .parse()
                .map_err(|_| ProxyHeaderError::Malformed("v1 source address"))?;
            if ip.is_ipv4() != (family == "TCP4") {
                return Err(ProxyHeaderError::Malformed("v1 address family mismatch"));
            }
            let port = parse_port(sport)?;
            Header::Proxied(SocketAddr::new(ip, port))
        }
        _ => return Err(ProxyHeaderError::Malformed("v1 protocol family")),
    };
    Ok(Some((header, end + 2)))
}

fn parse_port(s: &str) -> Result<u16, ProxyHeaderError> {
    // No sign, no leading zeros (spec §2.1).
    if s.is_empty() || s.starts_with('+') || (s.len() > 1 && s.starts_with('0')) {
        return Err(ProxyHeaderError::Malformed("v1 port"));
    }
    s.parse()
        .map_err(|_| ProxyHeaderError::Malformed("v1 port"))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(Header, usize)>, ProxyHeaderError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let version_command = buf[12];
    if version_command >> 4 != 2 {
        return Err(ProxyHeaderError::Malformed("v2 version"));
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let total = 16 + len;
    if total > V2_MAX {
        return Err(ProxyHeaderError::Malformed("v2 header too long"));
    }
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[16..total];
    let header = match version_command & 0x0f {
        0x0 => Header::Local,
        0x1 => match buf[13] {
            // TCP over IPv4: src, dst, sport, dport.
            0x11 if body.len() >= 12 => {
                let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
                let port = u16::from_be_bytes([body[8], body[9]]);
                Header::Proxied(SocketAddr::new(ip.into(), port))
            }
            0x21 if body.len() >= 36 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[..16]);
                let port = u16::from_be_bytes([body[32], body[33]]);
                Header::Proxied(SocketAddr::new(Ipv6Addr::from(octets).into(), port))
            }
            0x11 | 0x21 => return Err(ProxyHeaderError::Malformed("v2 address block too short")),
            // UNSPEC, UDP, UNIX: keep the peer address (spec: ignore the addresses).
            _ => Header::Local,
        },
        _ => return Err(ProxyHeaderError::Malformed("v2 command")),
    };
    Ok(Some((header, total)))
}

/// Reads a PROXY header from `io`. Returns the header and the bytes read after it.
pub async fn read_header<I: AsyncRead + Unpin>(
    io: &mut I,
) -> Result<(Header, BytesMut), io::Error> {
    let mut buf = BytesMut::with_capacity(256);
    loop {
        match parse(&buf) {
            Ok(Some((header, len))) => {
                buf.advance(len);
                return Ok((header, buf));
            }
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
        if buf.len() >= V2_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                ProxyHeaderError::Malformed("header too long"),
            ));
        }
        if io.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// A stream with bytes already read from it put back in front.
pub struct Prefixed<I> {
    prefix: BytesMut,
    inner: I,
}

impl<I> Prefixed<I> {
    /// `inner`, reading `prefix` first.
    pub fn new(prefix: BytesMut, inner: I) -> Self {
        Prefixed { prefix, inner }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, b)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|_| panic!("{s}"))
    }

    #[test]
    fn v1_headers() {
        let ok = [
            (
                &b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET"[..],
                Header::Proxied(addr("192.0.2.1:56324")),
                45,
            ),
            (
                b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\n",
                Header::Proxied(addr("[2001:db8::1]:4000")),
                45,
            ),
            (b"PROXY UNKNOWN\r\n", Header::Local, 15),
            (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", Header::Local, 35),
        ];
        for (bytes, header, len) in ok {
            assert_eq!(parse(bytes), Ok(Some((header, len))), "{bytes:?}");
        }
        for partial in [&b"PRO"[..], b"PROXY TCP4 1.2.3.4", b"\r\n\r\n"] {
            assert_eq!(parse(partial), Ok(None), "{partial:?}");
        }
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"\x16\x03\x01",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse(&[b'P', b'R', b'O', b'X', b'Y', b' '].repeat(20)).is_err());
    }

    #[test]
    fn v2_headers() {
        let mut v4 = vec![192, 0, 2, 1, 198, 51, 100, 2];
        v4.extend_from_slice(&56324u16.to_be_bytes());
        v4.extend_from_slice(&443u16.to_be_bytes());
        let mut with_tlv = v4.clone();
        with_tlv.extend_from_slice(&[0x04, 0x00, 0x01, 0xaa]); // a NOOP TLV, skipped
        let mut v6 = [0u8; 36].to_vec();
        v6[15] = 1;
        v6[32..34].copy_from_slice(&8080u16.to_be_bytes());
        let cases = [
            (v2(1, 0x11, &v4), Header::Proxied(addr("192.0.2.1:56324"))),
            (
                v2(1, 0x11, &with_tlv),
                Header::Proxied(addr("192.0.2.1:56324")),
            ),
            (v2(1, 0x21, &v6), Header::Proxied(addr("[::1]:8080"))),
            (v2(0, 0x00, &[]), Header::Local),
            (v2(1, 0x31, &[0; 216]), Header::Local),
        ];
        for (bytes, header) in cases {
            let len = bytes.len();
            assert_eq!(parse(&bytes), Ok(Some((header, len))));
            assert_eq!(parse(&bytes[..len - 1]), Ok(None));
        }
        assert!(parse(&v2(1, 0x11, &v4[..6])).is_err());
        assert!(parse(&v2(2, 0x11, &v4)).is_err());
        let mut v3 = v2(1, 0x11, &v4);
        v3[12] = 0x31;
        assert!(parse(&v3).is_err());
    }

    #[tokio::test]
    async fn read_header_keeps_what_follows() {
        let mut bytes = b"PROXY TCP4 10.1.2.3 10.0.0.1 5000 80\r\n".to_vec();
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let mut input = &bytes[..];
        let (header, rest) = read_header(&mut input)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(header, Header::Proxied(addr("10.1.2.3:5000")));
        let mut stream = Prefixed::new(rest, input);
        let mut out = String::new();
        stream
            .read_to_string(&mut out)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, "GET / HTTP/1.1\r\n\r\n");
        let mut garbage = &b"GET / HTTP/1.1\r\n"[..];
        assert!(read_header(&mut garbage).await.is_err());
    }
}
