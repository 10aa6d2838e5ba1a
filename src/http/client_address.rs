//! Which address a request comes from, behind reverse proxies oplata trusts.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// The proxies whose forwarding header is believed: addresses or networks.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Reads `10.0.0.0/8`, `127.0.0.1`, `::1`…; the first entry that is neither is returned.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|entry| {
                IpNet::from_str(entry)
                    .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
                    .map_err(|_| entry.clone())
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|net| net.contains(&address))
    }
}

/// An IPv4 address carried as IPv6 (`::ffff:a.b.c.d`) is the IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address. The TCP peer is the client unless it is a trusted proxy; then the
/// forwarding header (`X-Forwarded-For` style, each proxy appending the address it saw) is read
/// from the right, and the first address that is not a trusted proxy is the client's. Entries
/// left of it were written by the client itself and are never believed.
pub fn client_address(
    peer: Option<IpAddr>,
    forwarded: Option<&str>,
    trusted: &TrustedProxies,
) -> Option<IpAddr> {
    let peer = peer.map(canonical);
    let Some(forwarded) = forwarded.filter(|_| peer.is_some_and(|p| trusted.trusts(p))) else {
        return peer;
    };
    for entry in forwarded.rsplit(',') {
        match IpAddr::from_str(entry.trim()) {
            Ok(address) if trusted.trusts(address) => continue,
            Ok(address) => return Some(canonical(address)),
            // An unreadable entry: nothing to its left can be trusted either.
            Err(_) => return peer,
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn proxies() -> TrustedProxies {
        TrustedProxies::parse(&["127.0.0.1".into(), "10.0.0.0/8".into()]).expect("valid")
    }

    #[test]
    fn the_client_cannot_choose_its_address_by_writing_the_header_itself() {
        let trusted = proxies();
        // The proxy appended the address it saw; the client wrote the first entry.
        let forged = "1.2.3.4, 203.0.113.7";
        assert_eq!(
            client_address(Some(ip("127.0.0.1")), Some(forged), &trusted),
            Some(ip("203.0.113.7"))
        );
        // Two trusted proxies in a row are skipped.
        assert_eq!(
            client_address(
                Some(ip("10.0.0.2")),
                Some("1.2.3.4, 198.51.100.9, 10.0.0.1"),
                &trusted
            ),
            Some(ip("198.51.100.9"))
        );
    }

    #[test]
    fn a_header_from_an_untrusted_peer_is_ignored() {
        assert_eq!(
            client_address(Some(ip("198.51.100.9")), Some("1.2.3.4"), &proxies()),
            Some(ip("198.51.100.9"))
        );
        assert_eq!(
            client_address(Some(ip("127.0.0.1")), None, &proxies()),
            Some(ip("127.0.0.1"))
        );
    }

    #[test]
    fn garbage_or_only_proxies_in_the_header_leave_the_peer() {
        let trusted = proxies();
        assert_eq!(
            client_address(Some(ip("127.0.0.1")), Some("1.2.3.4, nonsense"), &trusted),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(
            client_address(Some(ip("127.0.0.1")), Some("10.1.1.1"), &trusted),
            Some(ip("127.0.0.1"))
        );
        assert!(TrustedProxies::parse(&["not-an-address".into()]).is_err());
    }
}
