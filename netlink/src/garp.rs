//! Gratuitous ARP: an ARP request for our own address, broadcast on the
//! link, so neighbours update their caches when an address moves to a new
//! MAC (RFC 5227 section 3 calls it an ARP announcement). Sent on an
//! AF_PACKET socket, see packet(7).
//!
//! IPv6 needs no counterpart here: with `ndisc_notify` set the kernel sends
//! an unsolicited neighbour advertisement once duplicate address detection
//! completes (net/ipv6/addrconf.c).

use std::io;
use std::mem::size_of;
use std::net::Ipv4Addr;

use crate::types::MacAddr;

const ETH_P_ARP: u16 = 0x0806;

/// The 42-byte Ethernet frame of an ARP announcement of `ip` at `mac`.
pub fn announcement(mac: MacAddr, ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]); // broadcast
    f[6..12].copy_from_slice(&mac.0);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // htype Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // ptype IPv4
    f[18] = 6; // hlen
    f[19] = 4; // plen
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // op request
    f[22..28].copy_from_slice(&mac.0); // sender MAC
    f[28..32].copy_from_slice(&ip.octets()); // sender IP
                                             // target MAC stays zero
    f[38..42].copy_from_slice(&ip.octets()); // target IP = sender IP
    f
}

/// Sends one ARP announcement of `ip` on the link `ifindex` of the calling
/// thread's network namespace.
pub fn send_gratuitous_arp(ifindex: u32, mac: MacAddr, ip: Ipv4Addr) -> io::Result<()> {
    let frame = announcement(mac, ip);
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_ARP.to_be()),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ARP.to_be();
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: fd is our open socket; frame and sll outlive the call and the
    // lengths passed are theirs.
    let sent = unsafe {
        libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    let err = (sent < 0).then(io::Error::last_os_error);
    // SAFETY: fd is ours and closed exactly once.
    unsafe { libc::close(fd) };
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_layout() {
        let f = announcement(
            "02:00:00:00:00:a1".parse().unwrap(),
            Ipv4Addr::new(10, 99, 0, 3),
        );
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1]);
        assert_eq!(&f[28..32], &[10, 99, 0, 3]);
        assert_eq!(&f[38..42], &[10, 99, 0, 3]);
        assert_eq!(&f[32..38], &[0; 6]);
    }
}
