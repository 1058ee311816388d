//! Which local user holds the other end of a loopback TCP connection, read from Linux's
//! `/proc/net/tcp` and `/proc/net/tcp6`, so a tunnel on 127.0.0.1 serves only its operator.
//!
//! A TCP socket carries no credentials (unlike a Unix socket's `SO_PEERCRED`), but the kernel
//! lists every socket with the uid that made it: the peer's socket is the row whose local
//! address is the peer's address and whose remote address is ours.

use std::net::{IpAddr, SocketAddr};

/// The uid owning the socket at `peer` connected to `ours`, if this machine lists it.
pub fn peer_uid(ours: SocketAddr, peer: SocketAddr) -> Option<u32> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .find_map(|text| uid_in_table(&text, ours, peer))
}

/// Finds the row for the socket at `peer` connected to `ours` in the text of a
/// `/proc/net/tcp{,6}` table and returns its uid.
pub fn uid_in_table(text: &str, ours: SocketAddr, peer: SocketAddr) -> Option<u32> {
    text.lines().skip(1).find_map(|row| {
        let fields: Vec<&str> = row.split_whitespace().collect();
        let local = parse_address(fields.get(1)?)?;
        let remote = parse_address(fields.get(2)?)?;
        (same(local, peer) && same(remote, ours))
            .then(|| fields.get(7)?.parse().ok())
            .flatten()
    })
}

/// Compares two addresses, an IPv4 one equal to its IPv4-mapped IPv6 form.
fn same(a: SocketAddr, b: SocketAddr) -> bool {
    let plain = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && plain(a.ip()) == plain(b.ip())
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): the address as the kernel prints
/// it, in 32-bit words of the machine's byte order.
fn parse_address(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..ip.len() / 8)
        .map(|i| {
            ip.get(i * 8..i * 8 + 8)
                .and_then(|w| u32::from_str_radix(w, 16).ok())
        })
        .collect::<Option<_>>()?;
    // The kernel prints each 32-bit word of the address as a number in its own byte order.
    let ip = match words.len() {
        1 => IpAddr::from(<[u8; 4]>::try_from(native_words(&words, 1)?).ok()?),
        4 => IpAddr::from(<[u8; 16]>::try_from(native_words(&words, 4)?).ok()?),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The bytes of `count` words as they lie in the kernel's memory.
fn native_words(words: &[u32], count: usize) -> Option<Vec<u8>> {
    (words.len() == count).then(|| words.iter().flat_map(|w| w.to_ne_bytes()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:08AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0 100 0 0 10 0
   1: 0100007F:D431 0100007F:08AE 01 00000000:00000000 00:00000000 00000000 65534        0 2 1 0 20 4 30 10 -1
   2: 0100007F:08AE 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 3 1 0 20 4 30 10 -1
";

    #[test]
    fn the_peers_row_names_its_uid() {
        if !cfg!(target_endian = "little") {
            return;
        }
        let ours: SocketAddr = "127.0.0.1:2222".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:54321".parse().unwrap();
        assert_eq!(uid_in_table(TABLE, ours, peer), Some(65534));
        let stranger: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(uid_in_table(TABLE, ours, stranger), None);
    }

    #[test]
    fn ipv4_mapped_addresses_match_their_ipv4_form() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:22".parse().unwrap();
        let plain: SocketAddr = "127.0.0.1:22".parse().unwrap();
        assert!(same(mapped, plain));
    }

    #[test]
    fn this_processs_own_connection_is_found_with_its_uid() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(
            peer_uid(accepted.local_addr().unwrap(), peer),
            Some(nix::unistd::geteuid().as_raw())
        );
    }
}
