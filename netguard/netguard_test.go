package netguard

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func TestCheck(t *testing.T) {
	refused := []string{
		"127.0.0.1", "127.0.0.2", "127.255.255.255", "::1",
		"10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
		"169.254.169.254", "169.254.0.1", "fe80::1", "fe80::1%eth0",
		"fc00::1", "fd12:3456:789a::1",
		"0.0.0.0", "0.1.2.3", "::",
		"100.64.1.1", "100.127.255.254",
		"224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1", "ff02::1", "ff0e::1",
		"192.0.2.1", "198.51.100.7", "203.0.113.9", "198.18.0.1", "2001:db8::1", "3fff::1",
		// Mapped and tunnelled forms of the above.
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0",
		"::ffff:100.64.1.1", "::ffff:192.168.0.1",
		"64:ff9b::10.0.0.1", "64:ff9b::127.0.0.1", "64:ff9b::169.254.169.254", "64:ff9b:1::1",
		"2002:a00:1::1",     // 6to4 of 10.0.0.1
		"2002:7f00:1::1",    // 6to4 of 127.0.0.1
		"2001:0:4136::1",    // Teredo
		"::127.0.0.1",       // IPv4-compatible
		"fec0::1", "100::1", // site-local, discard
	}
	allowed := []string{
		"8.8.8.8", "1.1.1.1", "93.184.216.34", "100.63.255.255", "100.128.0.0", "172.32.0.1", "169.255.0.1",
		"2606:4700:4700::1111", "2001:4860:4860::8888", "::ffff:8.8.8.8", "64:ff9b::8.8.8.8", "2002:808:808::1",
	}
	g := New(nil)
	for _, s := range refused {
		ip := netip.MustParseAddr(s)
		err := g.Check(ip)
		if !errors.Is(err, ErrRefused) {
			t.Errorf("Check(%s) = %v, want refused", s, err)
			continue
		}
		var ne *Error
		if !errors.As(err, &ne) {
			t.Errorf("Check(%s) error %T is not *Error", s, err)
		}
	}
	for _, s := range allowed {
		if err := g.Check(netip.MustParseAddr(s)); err != nil {
			t.Errorf("Check(%s) = %v, want allowed", s, err)
		}
	}
	if err := g.Check(netip.Addr{}); !errors.Is(err, ErrRefused) {
		t.Errorf("Check(invalid) = %v, want refused", err)
	}
}

func TestErrorMessage(t *testing.T) {
	err := New(nil).Check(netip.MustParseAddr("10.0.0.1"))
	want := "refused to connect to private address 10.0.0.1 (allow it with outbound_allow)"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %q", err, want)
	}
	// The mapped form is reported unmapped, as it will be connected to.
	err = New(nil).Check(netip.MustParseAddr("::ffff:10.0.0.1"))
	if err == nil || err.Error() != want {
		t.Fatalf("mapped error = %v, want %q", err, want)
	}
}

func TestAllowList(t *testing.T) {
	allow, err := ParsePrefixes(" 10.1.0.0/16, 127.0.0.1 ,, fd00::/8, ::ffff:192.168.7.0/120")
	if err != nil {
		t.Fatal(err)
	}
	g := New(allow)
	cases := map[string]bool{
		"10.1.2.3":          true,
		"::ffff:10.1.2.3":   true,
		"64:ff9b::10.1.2.3": true,
		"10.2.0.1":          false,
		"127.0.0.1":         true,
		"127.0.0.2":         false,
		"fd00::5":           true,
		"fd00::5%lo":        true,
		"fc00::5":           false,
		"192.168.7.9":       true,
		"192.168.8.9":       false,
		"169.254.169.254":   false,
		"8.8.8.8":           true,
	}
	for s, ok := range cases {
		err := g.Check(netip.MustParseAddr(s))
		if (err == nil) != ok {
			t.Errorf("Check(%s) = %v, want allowed=%v", s, err, ok)
		}
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes("10.0.0.1/8,::1,  192.168.0.1 ")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("192.168.0.1/32"),
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("prefix %d = %v, want %v", i, got[i], want[i])
		}
	}
	if got, err := ParsePrefixes(""); err != nil || len(got) != 0 {
		t.Errorf("empty: %v, %v", got, err)
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0.0/8,nope", "1.2.3"} {
		if _, err := ParsePrefixes(bad); err == nil || !strings.Contains(err.Error(), "outbound_allow") {
			t.Errorf("ParsePrefixes(%q) error = %v, want one naming outbound_allow", bad, err)
		}
	}
}

func TestControl(t *testing.T) {
	g := New(nil)
	if err := g.Control("tcp4", "8.8.8.8:443", nil); err != nil {
		t.Errorf("public: %v", err)
	}
	if err := g.Control("tcp6", "[::ffff:127.0.0.1]:80", nil); !errors.Is(err, ErrRefused) {
		t.Errorf("mapped loopback: %v", err)
	}
	if err := g.Control("tcp", "localhost:80", nil); err == nil {
		t.Error("a name reached Control and was let through")
	}
}

func TestDialLoopback(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()

	_, err := New(nil).HTTPClient(5*time.Second, nil).Get(srv.URL)
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("GET %s without allow: %v, want refused", srv.URL, err)
	}
	if !strings.Contains(err.Error(), "refused to connect to private address 127.0.0.1") {
		t.Errorf("error does not name the address: %v", err)
	}

	// A name is resolved first and its address checked, so localhost does
	// not get around the guard.
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	conn, err := New(nil).DialContext(context.Background(), "tcp", net.JoinHostPort("localhost", strconv.Itoa(port)))
	if err == nil {
		conn.Close()
		t.Fatal("dial localhost was let through")
	}
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("dial localhost: %v, want refused", err)
	}

	allow, err := ParsePrefixes("127.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := New(allow).HTTPClient(5*time.Second, nil).Get(srv.URL)
	if err != nil {
		t.Fatalf("GET with 127.0.0.0/8 allowed: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Errorf("body = %q", body)
	}
}

func TestRedirectRechecked(t *testing.T) {
	var target string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target, http.StatusFound)
	}))
	defer srv.Close()
	allow := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	client := New(allow).HTTPClient(5*time.Second, nil)

	for _, target = range []string{"http://169.254.169.254/latest/meta-data/", "http://127.0.0.2:1/", "http://[::1]:1/"} {
		_, err := client.Get(srv.URL)
		if !errors.Is(err, ErrRefused) {
			t.Errorf("redirect to %s: %v, want refused", target, err)
		}
	}

	// Without the redirect the allowed server is reached.
	target = "/"
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatalf("allowed server: %v", err)
	}
	resp.Body.Close()
}

func TestRedirectLimit(t *testing.T) {
	var hops int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hops++
		http.Redirect(w, r, "/again", http.StatusFound)
	}))
	defer srv.Close()
	client := New([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}).HTTPClient(5*time.Second, nil)
	_, err := client.Get(srv.URL)
	if err == nil || !strings.Contains(err.Error(), "stopped after 5 redirects") {
		t.Fatalf("err = %v, want redirect limit", err)
	}
	if hops != 6 {
		t.Errorf("server saw %d requests, want 6 (1 + 5 redirects)", hops)
	}
}

func TestHTTPClientTransport(t *testing.T) {
	c := New(nil).HTTPClient(7*time.Second, nil)
	tr, ok := c.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("transport %T", c.Transport)
	}
	if !tr.ForceAttemptHTTP2 || tr.Proxy != nil || tr.DialContext == nil || c.Timeout != 7*time.Second {
		t.Errorf("transport not configured: http2=%v proxy=%v dial=%v timeout=%v",
			tr.ForceAttemptHTTP2, tr.Proxy != nil, tr.DialContext != nil, c.Timeout)
	}
}

// privateByNetip is the property the guard must keep: nothing netip calls
// non-public ever passes without an allow list.
func privateByNetip(ip netip.Addr) bool {
	u := ip.Unmap()
	return u.IsLoopback() || u.IsPrivate() || u.IsLinkLocalUnicast() || u.IsUnspecified() || u.IsMulticast() ||
		ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() || ip.IsMulticast()
}

func checkProperty(t interface{ Fatalf(string, ...any) }, ip netip.Addr) {
	if privateByNetip(ip) && New(nil).Check(ip) == nil {
		t.Fatalf("Check(%s) allowed a non-public address", ip)
	}
}

func TestCheckProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		var ip netip.Addr
		switch rapid.IntRange(0, 3).Draw(rt, "form") {
		case 0:
			ip = netip.AddrFrom4([4]byte(rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(rt, "v4")))
		case 1:
			ip = netip.AddrFrom16([16]byte(rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(rt, "v6")))
		case 2: // mapped v4
			b := rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(rt, "mapped")
			ip = netip.AddrFrom16(netip.AddrFrom4([4]byte(b)).As16())
		default: // a non-public v4 network with random host bits, plain or mapped
			nets := []string{"10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4", "0.0.0.0/8"}
			p := netip.MustParsePrefix(rapid.SampledFrom(nets).Draw(rt, "net"))
			b := p.Addr().As4()
			r := rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(rt, "host")
			for i := range b {
				hostBits := max(0, min(8, (i+1)*8-p.Bits()))
				mask := byte(1<<hostBits - 1)
				b[i] = b[i]&^mask | r[i]&mask
			}
			ip = netip.AddrFrom4(b)
			if rapid.Bool().Draw(rt, "map") {
				ip = netip.AddrFrom16(ip.As16())
			}
			if New(nil).Check(ip) == nil {
				rt.Fatalf("Check(%s) allowed an address in %s", ip, p)
			}
		}
		checkProperty(rt, ip)
	})
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "::1", "::ffff:10.0.0.1", "fe80::1", "8.8.8.8", "64:ff9b::a00:1", "ff02::1"} {
		f.Add(netip.MustParseAddr(s).AsSlice())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ip, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		checkProperty(t, ip)
	})
}

func FuzzParsePrefixes(f *testing.F) {
	f.Add("10.0.0.0/8, ::1, 192.168.0.1")
	f.Add(",,")
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParsePrefixes(s)
		if err != nil {
			return
		}
		for _, p := range ps {
			if !p.IsValid() || p != p.Masked() {
				t.Fatalf("ParsePrefixes(%q) gave %v", s, p)
			}
		}
	})
}
