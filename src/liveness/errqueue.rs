//! ICMP "port unreachable" reports for an unconnected UDP socket (Linux).
//!
//! With `IP_RECVERR` (`IPV6_RECVERR`) set, the kernel queues every ICMP
//! error about a datagram this socket sent on the socket's error queue,
//! with the original destination as the message's address and the original
//! payload as its data; `recvmsg(MSG_ERRQUEUE)` reads them. Only errors
//! with `ee_errno == ECONNREFUSED` (port unreachable: the host is up, no
//! process listens) are handed out; the rest (host or net unreachable,
//! message too big, TTL exceeded) are drained and dropped.
//!
//! This is the only `unsafe` in the liveness module: `setsockopt` and
//! `recvmsg` through `libc`, which neither std, tokio nor socket2 wrap for
//! the error queue. Everything read back is parsed from plain byte buffers.

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

/// Control buffer size: one `cmsghdr` plus a `sock_extended_err` plus the
/// offender's address, with room to spare.
const CONTROL_LEN: usize = 256;

/// Turns on error-queue reports for `sock` (IPv4 or IPv6 by its address).
pub(super) fn enable(sock: &impl AsRawFd, ipv6: bool) -> io::Result<()> {
    let on: libc::c_int = 1;
    let (level, name) = if ipv6 {
        (libc::SOL_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::SOL_IP, libc::IP_RECVERR)
    };
    // SAFETY: the fd is open for the duration of the call (borrowed from a
    // live socket); the option value points to a c_int that outlives the
    // call and its exact size is passed.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads the error queue until a port-unreachable report: returns the
/// length of the original payload copied into `buf` and the original
/// destination. `WouldBlock` when the queue is empty (other reports are
/// dropped on the way).
pub(super) fn recv_refused(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    loop {
        let mut name = [0u8; 128];
        let mut control = [0u64; CONTROL_LEN / 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths);
        // every pointer set below refers to a local buffer that outlives the
        // recvmsg call, with its exact length.
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = name.as_mut_ptr().cast();
            msg.msg_namelen = name.len() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = CONTROL_LEN as _;
            let n = libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            (n as usize, msg.msg_controllen as usize)
        };
        let (len, control_len) = n;
        let control: Vec<u8> = control.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let errno = ee_errno(&control[..control_len.min(CONTROL_LEN)]);
        if errno != Some(libc::ECONNREFUSED as u32) {
            continue;
        }
        if let Some(to) = sockaddr(&name) {
            return Ok((len.min(buf.len()), to));
        }
    }
}

/// `ee_errno` of the first `IP_RECVERR`/`IPV6_RECVERR` control message.
fn ee_errno(control: &[u8]) -> Option<u32> {
    // cmsghdr: cmsg_len (usize), cmsg_level (i32), cmsg_type (i32), then
    // data aligned to usize; sock_extended_err starts with ee_errno (u32).
    const HDR: usize = size_of::<usize>() + 8;
    let align = size_of::<usize>();
    let mut at = 0;
    while at + HDR <= control.len() {
        let word = |o: usize, n: usize| control.get(at + o..at + o + n);
        let len = usize::from_ne_bytes(word(0, align)?.try_into().ok()?);
        let level = i32::from_ne_bytes(word(align, 4)?.try_into().ok()?);
        let kind = i32::from_ne_bytes(word(align + 4, 4)?.try_into().ok()?);
        if len < HDR {
            return None;
        }
        let ours = (level == libc::SOL_IP && kind == libc::IP_RECVERR)
            || (level == libc::SOL_IPV6 && kind == libc::IPV6_RECVERR);
        if ours {
            return Some(u32::from_ne_bytes(word(HDR, 4)?.try_into().ok()?));
        }
        at += len.div_ceil(align) * align;
    }
    None
}

/// A `sockaddr_in`/`sockaddr_in6` in its C layout.
fn sockaddr(b: &[u8; 128]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([b[0], b[1]]);
    let port = u16::from_be_bytes([b[2], b[3]]);
    match i32::from(family) {
        libc::AF_INET => {
            let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        libc::AF_INET6 => {
            let flow = u32::from_be_bytes(b[4..8].try_into().ok()?);
            let ip: [u8; 16] = b[8..24].try_into().ok()?;
            let scope = u32::from_ne_bytes(b[24..28].try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                flow,
                scope,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Probes to a port nobody listens on come back as reports with the
    /// original destination and payload, one per datagram, in order.
    #[tokio::test]
    async fn port_unreachable_is_reported_with_destination_and_payload() {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        enable(&sock, false).expect("IP_RECVERR");
        // A port that was just free: bind, note, close.
        let closed = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("free port");
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        for probe in [&b"first probe"[..], b"second"] {
            // A pending error fails the next send once; send again then.
            if sock.send_to(probe, closed).await.is_err() {
                sock.send_to(probe, closed).await.expect("send");
            }
            let mut buf = [0u8; 64];
            loop {
                match recv_refused(sock.as_raw_fd(), &mut buf) {
                    Ok((n, to)) => {
                        got.push((buf[..n].to_vec(), to));
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        assert!(tokio::time::Instant::now() < deadline, "no report");
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    }
                    Err(e) => panic!("error queue: {e}"),
                }
            }
        }
        assert_eq!(
            got,
            vec![
                (b"first probe".to_vec(), closed),
                (b"second".to_vec(), closed)
            ]
        );
    }
}
