//! Free loopback ports for local networks (devnets, tests, benchmarks): the one helper
//! every part of the workspace uses.
//!
//! Each function binds `n` sockets on 127.0.0.1 with port 0, holds them until every port
//! is chosen (so the `n` ports are distinct), then releases them for the caller's nodes
//! to bind. Another process could take a port in between; the node that then fails to
//! bind reports it.

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// `n` distinct free UDP addresses on 127.0.0.1 (QUIC).
pub fn free_udp(n: usize) -> io::Result<Vec<SocketAddr>> {
    let held: Vec<UdpSocket> = (0..n).map(|_| UdpSocket::bind(loopback())).collect::<Result<_, _>>()?;
    held.iter().map(UdpSocket::local_addr).collect()
}

/// `n` distinct free TCP addresses on 127.0.0.1 (HTTP).
pub fn free_tcp(n: usize) -> io::Result<Vec<SocketAddr>> {
    let held: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind(loopback())).collect::<Result<_, _>>()?;
    held.iter().map(TcpListener::local_addr).collect()
}

/// One free UDP address on 127.0.0.1; panics if none can be bound (tests and benches).
pub fn one_udp() -> SocketAddr {
    #[allow(clippy::unwrap_used)]
    free_udp(1).map(|v| v[0]).unwrap()
}

/// One free TCP address on 127.0.0.1; panics if none can be bound (tests and benches).
pub fn one_tcp() -> SocketAddr {
    #[allow(clippy::unwrap_used)]
    free_tcp(1).map(|v| v[0]).unwrap()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_are_distinct_and_bindable() {
        let udp = super::free_udp(8).unwrap();
        let mut ports: Vec<u16> = udp.iter().map(|a| a.port()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 8);
        assert!(udp.iter().all(|a| a.ip().is_loopback()));
        let tcp = super::free_tcp(3).unwrap();
        for a in &tcp {
            std::net::TcpListener::bind(a).unwrap();
        }
        std::net::UdpSocket::bind(super::one_udp()).unwrap();
    }
}
