//! SSRF guard for tenant-supplied webhook URLs: a static check at
//! subscription time and a resolver that drops forbidden addresses at
//! connection time, so DNS rebinding cannot reach an internal address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use url::{Host, Url};

/// Longest URL accepted: long enough for any real endpoint, short enough to
/// keep stored subscriptions and log lines small.
pub const MAX_URL_LEN: usize = 2048;

/// Why a URL, an address or an allow-list entry was refused. Messages name
/// the host or address (useful to the tenant) but never a query string.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SsrfError {
    #[error("bad entry {0:?} in the webhook allow-list: expected a CIDR such as 10.0.0.0/8")]
    BadAllowEntry(String),
    #[error("URL is {0} bytes long; at most 2048 are accepted")]
    TooLong(usize),
    #[error("not a valid URL: {0}")]
    BadUrl(#[from] url::ParseError),
    #[error("URL scheme {0:?} is not allowed; use http or https")]
    Scheme(String),
    #[error("URLs with a user name or password are not allowed")]
    Userinfo,
    #[error("URL has no host")]
    NoHost,
    #[error("address {0} is in a private, loopback, link-local or reserved range")]
    ForbiddenAddress(IpAddr),
    #[error("host {0} is a loopback name")]
    ForbiddenName(String),
    #[error("host {host} resolves only to forbidden addresses ({addrs})")]
    AllForbidden { host: String, addrs: String },
    #[error("could not resolve host {host}: {reason}")]
    Resolve { host: String, reason: String },
}

/// Which destinations deliveries may reach. Everything public is allowed;
/// internal ranges only when an operator lists them (e.g. `127.0.0.0/8` for
/// tests, a partner network for an on-premises receiver).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    allow: Vec<IpNet>,
}

impl Policy {
    /// A policy allowing exactly these extra networks.
    #[must_use]
    pub fn new(allow: Vec<IpNet>) -> Policy {
        Policy { allow }
    }

    /// Parses the value of `PATCHLINE_WEBHOOK_ALLOW`: comma-separated CIDRs,
    /// a bare address meaning that one host. Unset or blank allows nothing
    /// extra; empty items (a trailing comma) are ignored.
    pub fn from_env_value(value: Option<&str>) -> Result<Policy, SsrfError> {
        let mut allow = Vec::new();
        for entry in value
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => match entry.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => return Err(SsrfError::BadAllowEntry(entry.to_owned())),
                },
            };
            allow.push(net);
        }
        Ok(Policy { allow })
    }

    /// The operator's extra networks.
    #[must_use]
    pub fn allow_list(&self) -> &[IpNet] {
        &self.allow
    }

    /// Whether a connection to `ip` is permitted: allow-listed, or not in any
    /// internal, special-purpose or embedding range (see [`is_forbidden`]).
    #[must_use]
    pub fn ip_allowed(&self, ip: IpAddr) -> bool {
        if self.allow.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        // An IPv4-mapped address is the IPv4 host on a dual-stack socket, so
        // an allow-listed IPv4 network covers its mapped form too.
        if let IpAddr::V6(v6) = ip
            && let Some(v4) = v6.to_ipv4_mapped()
            && self.allow.iter().any(|n| n.contains(&IpAddr::V4(v4)))
        {
            return true;
        }
        !is_forbidden(ip)
    }

    /// Static checks for a URL given at subscription time: http(s) only, no
    /// user info, a host, at most [`MAX_URL_LEN`] bytes, and IP-literal hosts
    /// (in any spelling the URL standard normalises, e.g. `0x7f.1`) allowed.
    /// Names other than `localhost` are checked again at each connection by
    /// [`GuardedResolver`].
    pub fn check_url(&self, url: &str) -> Result<Url, SsrfError> {
        if url.len() > MAX_URL_LEN {
            return Err(SsrfError::TooLong(url.len()));
        }
        let parsed = Url::parse(url)?;
        self.check_parsed(&parsed)?;
        Ok(parsed)
    }

    /// [`Policy::check_url`] for an already parsed URL (the sender re-checks
    /// stored URLs, since the policy may have changed since subscription).
    pub fn check_parsed(&self, url: &Url) -> Result<(), SsrfError> {
        if url.as_str().len() > MAX_URL_LEN {
            return Err(SsrfError::TooLong(url.as_str().len()));
        }
        match url.scheme() {
            "http" | "https" => {}
            other => return Err(SsrfError::Scheme(other.to_owned())),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(SsrfError::Userinfo);
        }
        match url.host() {
            None => Err(SsrfError::NoHost),
            Some(Host::Ipv4(v4)) => self.check_ip(IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => self.check_ip(IpAddr::V6(v6)),
            Some(Host::Domain(name)) => {
                // RFC 6761: `localhost` and `*.localhost` are loopback
                // whatever DNS says; refuse them early with a clear message.
                let name = name.trim_end_matches('.');
                let loopback = name == "localhost" || name.ends_with(".localhost");
                if loopback
                    && !self.ip_allowed(IpAddr::V4(Ipv4Addr::LOCALHOST))
                    && !self.ip_allowed(IpAddr::V6(Ipv6Addr::LOCALHOST))
                {
                    return Err(SsrfError::ForbiddenName(name.to_owned()));
                }
                Ok(())
            }
        }
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), SsrfError> {
        if self.ip_allowed(ip) {
            Ok(())
        } else {
            Err(SsrfError::ForbiddenAddress(ip))
        }
    }

    /// Keeps the allowed addresses; fails when none is left.
    pub fn filter_addrs(
        &self,
        host: &str,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, SsrfError> {
        let (ok, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
            addrs.into_iter().partition(|a| self.ip_allowed(a.ip()));
        if !ok.is_empty() {
            return Ok(ok);
        }
        if refused.is_empty() {
            return Err(SsrfError::Resolve {
                host: host.to_owned(),
                reason: "no addresses".into(),
            });
        }
        let addrs = refused
            .iter()
            .map(|a| a.ip().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Err(SsrfError::AllForbidden {
            host: host.to_owned(),
            addrs,
        })
    }
}

/// `ip` lies in a range a webhook must not reach by default: the IANA
/// special-purpose registries (RFC 6890 and successors) less the few blocks
/// that are ordinary global unicast, plus IPv6 forms that embed a forbidden
/// IPv4 address.
#[must_use]
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_forbidden(v4),
        IpAddr::V6(v6) => v6_forbidden(v6),
    }
}

/// (network, prefix length) pairs, checked by masking.
const V4_FORBIDDEN: &[([u8; 4], u32)] = &[
    ([0, 0, 0, 0], 8),       // "this network", incl. unspecified 0.0.0.0
    ([10, 0, 0, 0], 8),      // RFC 1918
    ([100, 64, 0, 0], 10),   // carrier-grade NAT, RFC 6598
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local, incl. cloud metadata 169.254.169.254
    ([172, 16, 0, 0], 12),   // RFC 1918
    ([192, 0, 0, 0], 24),    // IETF protocol assignments (incl. 192.0.0.170 NAT64 discovery)
    ([192, 0, 2, 0], 24),    // TEST-NET-1
    ([192, 88, 99, 0], 24),  // former 6to4 relay anycast
    ([192, 168, 0, 0], 16),  // RFC 1918
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // TEST-NET-2
    ([203, 0, 113, 0], 24),  // TEST-NET-3
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, incl. broadcast 255.255.255.255
];

fn v4_forbidden(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    V4_FORBIDDEN.iter().any(|&(net, len)| {
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        bits & mask == u32::from_be_bytes(net) & mask
    })
}

fn v6_in(bits: u128, net: u128, len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    bits & mask == net & mask
}

fn v6_forbidden(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    // IPv4-mapped ::ffff:a.b.c.d reaches the IPv4 host on dual-stack sockets.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_forbidden(v4);
    }
    // NAT64 well-known prefix 64:ff9b::/96: a translator forwards to the
    // embedded IPv4 address, which must itself be allowed.
    if v6_in(bits, 0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96) {
        return v4_forbidden(embedded_v4(bits));
    }
    // 6to4 2002:V4ADDR::/48: a relay forwards to the embedded address.
    if v6_in(bits, 0x2002_0000_0000_0000_0000_0000_0000_0000, 16) {
        #[allow(clippy::cast_possible_truncation)] // bits 80..112 hold the IPv4 address
        return v4_forbidden(Ipv4Addr::from((bits >> 80) as u32));
    }
    // Only global unicast 2000::/3 is reachable. This refuses in one go
    // ::/128, ::1, the deprecated IPv4-compatible ::/96 (no legitimate
    // receiver uses it), 100::/64 discard, 64:ff9b:1::/48 local NAT64,
    // 5f00::/16 SRv6, fc00::/7 unique-local, fe80::/10 link-local, fec0::/10
    // site-local and ff00::/8 multicast.
    if !v6_in(bits, 0x2000_0000_0000_0000_0000_0000_0000_0000, 3) {
        return true;
    }
    const V6_FORBIDDEN_IN_GLOBAL: &[(u128, u32)] = &[
        (0x2001_0000_0000_0000_0000_0000_0000_0000, 23), // IETF protocol assignments, incl. Teredo 2001::/32
        (0x2001_0db8_0000_0000_0000_0000_0000_0000, 32), // documentation
        (0x3fff_0000_0000_0000_0000_0000_0000_0000, 20), // documentation, RFC 9637
    ];
    V6_FORBIDDEN_IN_GLOBAL
        .iter()
        .any(|&(net, len)| v6_in(bits, net, len))
}

#[allow(clippy::cast_possible_truncation)] // the low 32 bits are the address
fn embedded_v4(bits: u128) -> Ipv4Addr {
    Ipv4Addr::from(bits as u32)
}

/// A `reqwest` resolver that resolves with the system resolver and drops
/// every forbidden address, failing when none remains. Checking the address
/// actually connected to (not only the name at subscription time) is what
/// defeats DNS rebinding.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<Policy>,
}

impl GuardedResolver {
    #[must_use]
    pub fn new(policy: Policy) -> GuardedResolver {
        GuardedResolver {
            policy: Arc::new(policy),
        }
    }

    /// Resolves `host` and returns its allowed addresses; usable at
    /// subscription time too, for an early answer.
    pub async fn resolve_allowed(&self, host: &str) -> Result<Vec<IpAddr>, SsrfError> {
        let addrs = lookup(&self.policy, host).await?;
        Ok(addrs.into_iter().map(|a| a.ip()).collect())
    }
}

async fn lookup(policy: &Policy, host: &str) -> Result<Vec<SocketAddr>, SsrfError> {
    // Port 0: reqwest substitutes the URL's port afterwards.
    let found = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| SsrfError::Resolve {
            host: host.to_owned(),
            reason: e.to_string(),
        })?;
    policy.filter_addrs(host, found)
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // The error stays a typed `SsrfError` inside reqwest's error
            // chain, so the sender can tell a refusal from a network fault.
            let addrs = lookup(&policy, &host).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn none() -> Policy {
        Policy::default()
    }

    #[test]
    fn forbidden_ipv4() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "169.254.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.170",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!none().ip_allowed(ip(s)), "{s} should be refused");
        }
    }

    #[test]
    fn public_ipv4_allowed() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.255.255",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.3.1",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert!(none().ip_allowed(ip(s)), "{s} should be allowed");
        }
    }

    #[test]
    fn forbidden_ipv6() {
        for s in [
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::ffff:0.0.0.0",
            "::127.0.0.1",
            "::8.8.8.8", // IPv4-compatible is deprecated: refused whatever it embeds
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::192.168.0.1",
            "64:ff9b:1::8.8.8.8",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:0101:1::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:db8::1",
            "3fff::1",
            "100::1",
            "5f00::1",
            "fc00::1",
            "fd12:3456:789a::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff05::1:3",
        ] {
            assert!(!none().ip_allowed(ip(s)), "{s} should be refused");
        }
    }

    #[test]
    fn public_ipv6_allowed() {
        for s in [
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:0808:0808::1",
            "2001:200::1",
        ] {
            assert!(none().ip_allowed(ip(s)), "{s} should be allowed");
        }
    }

    #[test]
    fn allow_list_opens_ranges_and_their_mapped_forms() {
        let p =
            Policy::from_env_value(Some("127.0.0.0/8, 10.1.2.0/24,::1/128,192.168.5.5,")).unwrap();
        assert!(p.ip_allowed(ip("127.0.0.1")));
        assert!(p.ip_allowed(ip("::ffff:127.0.0.1")));
        assert!(p.ip_allowed(ip("10.1.2.3")));
        assert!(!p.ip_allowed(ip("10.1.3.3")));
        assert!(p.ip_allowed(ip("::1")));
        assert!(p.ip_allowed(ip("192.168.5.5")));
        assert!(!p.ip_allowed(ip("192.168.5.6")));
        assert!(!p.ip_allowed(ip("169.254.169.254")));
        assert_eq!(p.allow_list().len(), 4);
        // Host bits in a CIDR are tolerated (truncated to the network).
        let p = Policy::from_env_value(Some("10.9.9.9/8")).unwrap();
        assert!(p.ip_allowed(ip("10.0.0.1")));
    }

    #[test]
    fn allow_list_parsing() {
        assert_eq!(Policy::from_env_value(None).unwrap(), Policy::default());
        assert_eq!(
            Policy::from_env_value(Some("  ")).unwrap(),
            Policy::default()
        );
        for bad in ["10.0.0.0/33", "localhost", "10.0.0/8", "::1/129", "*"] {
            let e = Policy::from_env_value(Some(&format!("127.0.0.0/8,{bad}"))).unwrap_err();
            assert_eq!(e, SsrfError::BadAllowEntry(bad.to_owned()));
            assert!(e.to_string().contains(bad));
        }
    }

    #[test]
    fn check_url_static_rules() {
        let p = none();
        assert!(
            p.check_url("https://hooks.example.com/patchline?x=1")
                .is_ok()
        );
        assert!(p.check_url("http://8.8.8.8:8080/x").is_ok());
        assert!(p.check_url("http://[2606:4700:4700::1111]/").is_ok());
        let refused = |u: &str| p.check_url(u).unwrap_err();
        assert_eq!(
            refused("ftp://example.com/"),
            SsrfError::Scheme("ftp".into())
        );
        assert_eq!(
            refused("file:///etc/passwd"),
            SsrfError::Scheme("file".into())
        );
        assert_eq!(
            refused("gopher://example.com/"),
            SsrfError::Scheme("gopher".into())
        );
        assert_eq!(refused("https://user:pw@example.com/"), SsrfError::Userinfo);
        assert_eq!(refused("https://user@example.com/"), SsrfError::Userinfo);
        assert!(matches!(refused("not a url"), SsrfError::BadUrl(_)));
        assert!(matches!(refused("http://"), SsrfError::BadUrl(_)));
        assert!(matches!(
            refused("http://exa mple.com/"),
            SsrfError::BadUrl(_)
        ));
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert_eq!(refused(&long), SsrfError::TooLong(long.len()));
    }

    #[test]
    fn check_url_refuses_internal_literals_in_every_spelling() {
        let p = none();
        let cases = [
            ("http://127.0.0.1/", "127.0.0.1"),
            ("http://127.1/", "127.0.0.1"),
            ("http://0x7f.1/", "127.0.0.1"),
            ("http://0x7f000001/", "127.0.0.1"),
            ("http://2130706433/", "127.0.0.1"),
            ("http://017700000001/", "127.0.0.1"),
            ("http://0/", "0.0.0.0"),
            ("http://0.0.0.0:8080/", "0.0.0.0"),
            ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
            ("http://[::1]/", "::1"),
            ("http://[::]/", "::"),
            ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1"),
            ("http://[::ffff:7f00:1]/", "::ffff:127.0.0.1"),
            ("http://[::ffff:a9fe:a9fe]/", "::ffff:169.254.169.254"),
            ("http://[64:ff9b::7f00:1]/", "64:ff9b::7f00:1"),
            ("http://[2002:7f00:1::]/", "2002:7f00:1::"),
            ("http://[fe80::1]/", "fe80::1"),
            ("http://[fd00::1]/", "fd00::1"),
            ("https://10.0.0.1/", "10.0.0.1"),
            ("https://100.64.1.1/", "100.64.1.1"),
            ("https://255.255.255.255/", "255.255.255.255"),
            ("https://224.0.0.1/", "224.0.0.1"),
        ];
        for (url, addr) in cases {
            assert_eq!(
                p.check_url(url).unwrap_err(),
                SsrfError::ForbiddenAddress(ip(addr)),
                "{url}"
            );
        }
    }

    #[test]
    fn localhost_names() {
        let p = none();
        for u in [
            "http://localhost/",
            "http://LOCALHOST:8080/",
            "http://api.localhost/",
            "http://localhost./",
        ] {
            assert!(
                matches!(p.check_url(u), Err(SsrfError::ForbiddenName(_))),
                "{u}"
            );
        }
        let open = Policy::from_env_value(Some("127.0.0.0/8")).unwrap();
        assert!(open.check_url("http://localhost:8080/hook").is_ok());
        assert!(open.check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(
            open.check_url("http://[::ffff:127.0.0.1]:8080/hook")
                .is_ok()
        );
    }

    #[test]
    fn filter_drops_forbidden_and_fails_when_nothing_is_left() {
        let p = none();
        let sa = |s: &str| SocketAddr::new(ip(s), 0);
        let kept = p
            .filter_addrs(
                "rebind.example",
                [sa("127.0.0.1"), sa("93.184.216.34"), sa("::1")],
            )
            .unwrap();
        assert_eq!(kept, [sa("93.184.216.34")]);
        let e = p
            .filter_addrs("rebind.example", [sa("127.0.0.1"), sa("10.0.0.1")])
            .unwrap_err();
        assert_eq!(
            e,
            SsrfError::AllForbidden {
                host: "rebind.example".into(),
                addrs: "127.0.0.1, 10.0.0.1".into()
            }
        );
        assert!(matches!(
            p.filter_addrs("x", []),
            Err(SsrfError::Resolve { .. })
        ));
    }

    #[tokio::test]
    async fn resolver_refuses_localhost_unless_allowed() {
        let guarded = GuardedResolver::new(none());
        let e = guarded.resolve_allowed("localhost").await.unwrap_err();
        assert!(matches!(e, SsrfError::AllForbidden { .. }), "{e:?}");

        let open =
            GuardedResolver::new(Policy::from_env_value(Some("127.0.0.0/8,::1/128")).unwrap());
        let addrs = open.resolve_allowed("localhost").await.unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(IpAddr::is_loopback));
    }

    #[tokio::test]
    async fn resolver_through_the_reqwest_trait() {
        use reqwest::dns::Resolve as _;
        let guarded = GuardedResolver::new(none());
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let err = guarded.resolve(name).await.err().unwrap();
        assert!(err.downcast_ref::<SsrfError>().is_some(), "{err}");
    }
}
