// Package netguard keeps outbound connections off private networks (SSRF
// protection): provider base URLs and webhook targets are chosen by tenants,
// so without it a tenant could reach the cloud metadata service, the
// database or any other internal endpoint through Kalcifer.
//
// The check runs in the dialer's Control hook, on the address actually being
// connected to after name resolution, so a name that resolves to a public
// address when validated and to a private one when dialled (DNS rebinding)
// is still refused, as is every redirect target.
package netguard

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// ErrRefused is what every refusal wraps; test with errors.Is.
var ErrRefused = errors.New("refused to connect to private address")

// Error is a refused connection to Addr.
type Error struct {
	Addr netip.Addr
}

func (e *Error) Error() string {
	return fmt.Sprintf("refused to connect to private address %s (allow it with outbound_allow)", e.Addr)
}

// Is makes errors.Is(err, ErrRefused) hold for every *Error.
func (e *Error) Is(target error) bool { return target == ErrRefused }

// Guard refuses connections to non-public addresses unless they fall in one
// of its allowed prefixes. The zero Guard and a nil *Guard allow nothing
// private.
type Guard struct {
	allow []netip.Prefix
}

// New returns a guard that lets through the addresses inside allow, which
// is how operators reach their own internal SMTP relay or a local mock.
func New(allow []netip.Prefix) *Guard {
	g := &Guard{}
	for _, p := range allow {
		if !p.IsValid() {
			continue
		}
		// Addresses are unmapped before they are matched, so a prefix
		// written in the mapped form must be too or it would never match.
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		g.allow = append(g.allow, p.Masked())
	}
	return g
}

// Blocked ranges beyond what netip's predicates cover. Reserved and
// documentation ranges are included: nothing legitimate lives there, and
// some of them are routed internally by cloud providers.
var (
	blocked4 = prefixes(
		"0.0.0.0/8",       // "this network"; 0.0.0.0 reaches local listeners on Linux
		"10.0.0.0/8",      // RFC 1918
		"100.64.0.0/10",   // CGNAT, used for internal services by some clouds
		"127.0.0.0/8",     // loopback
		"169.254.0.0/16",  // link-local, including 169.254.169.254 metadata
		"172.16.0.0/12",   // RFC 1918
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // TEST-NET-1
		"192.88.99.0/24",  // deprecated 6to4 relay anycast
		"192.168.0.0/16",  // RFC 1918
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // TEST-NET-2
		"203.0.113.0/24",  // TEST-NET-3
		"224.0.0.0/4",     // multicast
		"240.0.0.0/4",     // reserved, including 255.255.255.255 broadcast
	)
	blocked6 = prefixes(
		"::/96",          // unspecified, loopback and the deprecated IPv4-compatible form
		"64:ff9b:1::/48", // local-use NAT64 (RFC 8215)
		"100::/64",       // discard-only
		"2001::/23",      // IETF protocol assignments, including Teredo tunnels to any IPv4
		"2001:db8::/32",  // documentation
		"3fff::/20",      // documentation (RFC 9637)
		"fc00::/7",       // unique local
		"fe80::/10",      // link-local
		"fec0::/10",      // deprecated site-local
		"ff00::/8",       // multicast
	)
	// Ranges whose addresses carry an IPv4 address that the network will
	// end up connecting to: that address is checked in their stead.
	nat64   = netip.MustParsePrefix("64:ff9b::/96")
	sixToFo = netip.MustParsePrefix("2002::/16")
)

func prefixes(ss ...string) []netip.Prefix {
	ps := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		ps[i] = netip.MustParsePrefix(s)
	}
	return ps
}

// Check returns an *Error when ip is not a public unicast address and no
// allowed prefix holds it.
func (g *Guard) Check(ip netip.Addr) error {
	if !ip.IsValid() {
		return &Error{Addr: ip}
	}
	// Prefix.Contains never matches a zoned address, so the zone must go
	// before any matching; it does not change where the packets go.
	ip = ip.WithZone("").Unmap()
	if g.allowed(ip) {
		return nil
	}
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() {
		return &Error{Addr: ip}
	}
	blocked := blocked6
	if ip.Is4() {
		blocked = blocked4
	}
	for _, p := range blocked {
		if p.Contains(ip) {
			return &Error{Addr: ip}
		}
	}
	if embedded, ok := embeddedV4(ip); ok {
		if err := g.Check(embedded); err != nil {
			return &Error{Addr: ip}
		}
	}
	return nil
}

func (g *Guard) allowed(ip netip.Addr) bool {
	if g == nil {
		return false
	}
	for _, p := range g.allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// embeddedV4 returns the IPv4 address a NAT64 or 6to4 address leads to.
func embeddedV4(ip netip.Addr) (netip.Addr, bool) {
	b := ip.As16()
	switch {
	case nat64.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFo.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// Control checks the address a socket is about to connect to; it has the
// signature of net.Dialer.Control, which runs after name resolution, once
// per address tried.
func (g *Guard) Control(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("netguard: %s address %q: %w", network, address, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("netguard: %s address %q is not an IP address: %w", network, address, err)
	}
	return g.Check(ip)
}

// dialer is the guarded dialer; its timeouts bound connection setup only.
func (g *Guard) dialer() *net.Dialer {
	return &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: g.Control}
}

// DialContext connects like net.Dialer.DialContext, refusing addresses the
// guard does not let through.
func (g *Guard) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return g.dialer().DialContext(ctx, network, address)
}

// maxRedirects bounds redirect chains so a loop cannot hold a sender.
const maxRedirects = 5

// HTTPClient returns a client whose every connection, redirects included,
// goes through the guard. timeout bounds each request whole (0: none);
// rootCAs verifies servers (nil: the system's roots). Proxies from the
// environment are ignored: a proxy would make the connection the guard sees
// the proxy's, not the target's.
func (g *Guard) HTTPClient(timeout time.Duration, rootCAs *x509.CertPool) *http.Client {
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            g.DialContext,
		ForceAttemptHTTP2:      true,
		TLSClientConfig:        &tls.Config{RootCAs: rootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  1 * time.Second,
		IdleConnTimeout:        90 * time.Second,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    16,
		MaxResponseHeaderBytes: 1 << 20,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects {
				return fmt.Errorf("stopped after %d redirects", maxRedirects)
			}
			// The dialer checks the target anyway; a literal address is
			// refused here already so the error names the redirect.
			if ip, err := netip.ParseAddr(strings.Trim(req.URL.Hostname(), "[]")); err == nil {
				if err := g.Check(ip); err != nil {
					return fmt.Errorf("redirect to %s: %w", req.URL.Redacted(), err)
				}
			}
			return nil
		},
	}
}

// ParsePrefixes reads a comma-separated list of CIDR prefixes and single
// addresses, the form of the outbound_allow setting. Blank entries are
// skipped.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		if strings.Contains(entry, "/") {
			p, err := netip.ParsePrefix(entry)
			if err != nil {
				return nil, fmt.Errorf("outbound_allow entry %q: %w", entry, err)
			}
			out = append(out, p.Masked())
			continue
		}
		ip, err := netip.ParseAddr(entry)
		if err != nil {
			return nil, fmt.Errorf("outbound_allow entry %q: %w", entry, err)
		}
		ip = ip.WithZone("")
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out, nil
}
