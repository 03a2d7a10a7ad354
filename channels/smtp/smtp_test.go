package smtp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"log"
	"math/big"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/channels/providertest"
)

var fixedNow = time.Date(2025, 3, 14, 15, 9, 26, 0, time.FixedZone("CET", 3600))

// testCert is a self-signed certificate for mail.test, the host the
// provider is configured with; Dial sends it to the test server.
type testCert struct {
	tls  tls.Certificate
	pool *x509.CertPool
}

func newCert(t *testing.T) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mail.test"},
		DNSNames:              []string{"mail.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return testCert{tls: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool: pool}
}

// received is one message the test server took, with what it saw of the
// session that sent it.
type received struct {
	helo     string
	from     string
	to       []string
	data     []byte
	authUser string
	authPass string
	authMech string
	// tlsAtAuth says the connection was TLS when the client authenticated.
	tlsAtAuth bool
}

// backend is a go-smtp server backend that records what clients send and
// answers as the test sets it up.
type backend struct {
	user, pass string
	login      bool // offer LOGIN only, instead of PLAIN
	rcptErr    error
	dataErr    error
	// dropAfterData closes the connection once the message is read,
	// before the server answers it.
	dropAfterData bool
	// inData, when set, is closed once the message is read and the server
	// waits on release before answering.
	inData  chan struct{}
	release chan struct{}

	mu    sync.Mutex
	msgs  []received
	auths int
	mails int
}

func (b *backend) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	return &session{b: b, c: c}, nil
}

func (b *backend) messages() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]received(nil), b.msgs...)
}

type session struct {
	b   *backend
	c   *gosmtp.Conn
	cur received
}

func (s *session) AuthMechanisms() []string {
	if s.b.login {
		return []string{sasl.Login}
	}
	return []string{sasl.Plain}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	s.b.mu.Lock()
	s.b.auths++
	s.b.mu.Unlock()
	_, isTLS := s.c.TLSConnectionState()
	check := func(user, pass string) error {
		s.cur.authUser, s.cur.authPass, s.cur.authMech, s.cur.tlsAtAuth = user, pass, mech, isTLS
		if user != s.b.user || pass != s.b.pass {
			return gosmtp.ErrAuthFailed
		}
		return nil
	}
	if mech == sasl.Login {
		return &loginServer{check: check}, nil
	}
	return sasl.NewPlainServer(func(_, user, pass string) error { return check(user, pass) }), nil
}

func (s *session) Mail(from string, _ *gosmtp.MailOptions) error {
	if s.b.user != "" && s.cur.authUser == "" {
		return gosmtp.ErrAuthRequired
	}
	s.b.mu.Lock()
	s.b.mails++
	s.b.mu.Unlock()
	s.cur.from = from
	s.cur.helo = s.c.Hostname()
	return nil
}

func (s *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if s.b.rcptErr != nil {
		return s.b.rcptErr
	}
	s.cur.to = append(s.cur.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.b.inData != nil {
		close(s.b.inData)
		<-s.b.release
	}
	if s.b.dropAfterData {
		s.c.Conn().Close()
		return errors.New("dropped")
	}
	if s.b.dataErr != nil {
		return s.b.dataErr
	}
	s.cur.data = data
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, s.cur)
	s.b.mu.Unlock()
	return nil
}

func (s *session) Reset() {
	s.cur.from, s.cur.to, s.cur.data = "", nil, nil
}

func (s *session) Logout() error { return nil }

// loginServer is the server side of the LOGIN mechanism, which go-sasl
// implements for clients only.
type loginServer struct {
	step  int
	user  string
	check func(user, pass string) error
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	l.step++
	switch l.step {
	case 1:
		if len(response) > 0 { // initial response carries the user name
			l.user = string(response)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 2:
		l.user = string(response)
		return []byte("Password:"), false, nil
	default:
		return nil, true, l.check(l.user, string(response))
	}
}

// server modes.
const (
	offerStartTLS = "starttls"
	offerImplicit = "implicit"
	offerPlain    = "plain"
)

// startServer runs a go-smtp server on loopback and returns its address.
func startServer(t *testing.T, be *backend, cert testCert, mode string) string {
	t.Helper()
	srv := gosmtp.NewServer(be)
	srv.Domain = "mail.test"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.ErrorLog = log.New(io.Discard, "", 0)
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{cert.tls}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	switch mode {
	case offerStartTLS:
		srv.TLSConfig = tlsConfig
	case offerImplicit:
		srv.TLSConfig = tlsConfig
		ln = tls.NewListener(ln, tlsConfig)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// depsFor returns deps whose Dial connects to addr whatever the provider
// asks for, recording what it asked for.
func depsFor(addr string, cert testCert, dialed *[]string) channels.Deps {
	var mu sync.Mutex
	return channels.Deps{
		Dial: func(ctx context.Context, network, a string) (net.Conn, error) {
			mu.Lock()
			*dialed = append(*dialed, network+" "+a)
			mu.Unlock()
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
		RootCAs: cert.pool,
		Now:     func() time.Time { return fixedNow },
	}
}

func newProvider(t *testing.T, cfg map[string]any, deps channels.Deps) channels.Provider {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(raw, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func baseConfig() map[string]any {
	return map[string]any{
		"host":     "mail.test",
		"username": "kalcifer",
		"password": "s3cret",
		"from":     "Kalcifer <noreply@example.com>",
	}
}

// The inputs hold CRLF line ends: quoted-printable carries text as lines,
// so that is the form that comes back.
var (
	longLine = "Dies ist eine sehr lange Zeile mit Umlauten äöü und noch viel mehr Text, damit sie deutlich länger als sechsundsiebzig Zeichen ist — ja, wirklich."
	textBody = "Hallo Jörg,\r\n\r\n" + longLine + "\r\n.a line starting with a dot\r\nFrom the start of a line\r\nTrailing space \r\nEnd = fin"
	htmlBody = "<html><body><p>Hallo <b>Jörg</b>,</p><p>" + longLine + "</p><p>" + strings.Repeat("x", 200) + "</p></body></html>"
	subject  = "Grüße aus Köln – Ihre Bestellung №42 ist unterwegs, und dieser Betreff ist lang genug, um gefaltet zu werden"
)

func testMessage(key string) channels.Message {
	return channels.Message{
		DeliveryID: "dlv_123",
		TenantID:   "tnt_1",
		Key:        key,
		Channel:    channels.Email,
		Email: &channels.EmailMessage{
			ReplyTo: "Support Team <support@example.com>",
			To:      "Jörg Müller <joerg@example.org>",
			Subject: subject,
			HTML:    htmlBody,
			Text:    textBody,
		},
	}
}

func TestSendStartTLS(t *testing.T) {
	cert := newCert(t)
	be := &backend{user: "kalcifer", pass: "s3cret"}
	addr := startServer(t, be, cert, offerStartTLS)
	var dialed []string
	cfg := baseConfig()
	cfg["helo_name"] = "sender.example.com"
	p := newProvider(t, cfg, depsFor(addr, cert, &dialed))

	id1, err := p.Send(context.Background(), testMessage("key-1"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	id2, err := p.Send(context.Background(), testMessage("key-1"))
	if err != nil {
		t.Fatalf("second Send: %v", err)
	}
	id3, err := p.Send(context.Background(), testMessage("key-2"))
	if err != nil {
		t.Fatalf("third Send: %v", err)
	}
	if id1 != id2 {
		t.Errorf("resend of the same key got Message-ID %q, first %q", id2, id1)
	}
	if id1 == id3 {
		t.Errorf("different keys got the same Message-ID %q", id1)
	}
	if !regexp.MustCompile(`^<[0-9a-f]{32}@example\.com>$`).MatchString(id1) {
		t.Errorf("Message-ID %q is not <hash@from-domain>", id1)
	}
	if len(dialed) != 3 || dialed[0] != "tcp mail.test:587" {
		t.Errorf("dialed %q, want tcp mail.test:587 thrice", dialed)
	}

	msgs := be.messages()
	if len(msgs) != 3 {
		t.Fatalf("server received %d messages, want 3", len(msgs))
	}
	r := msgs[0]
	if r.from != "noreply@example.com" || len(r.to) != 1 || r.to[0] != "joerg@example.org" {
		t.Errorf("envelope MAIL FROM %q RCPT TO %q", r.from, r.to)
	}
	if r.authMech != sasl.Plain || r.authUser != "kalcifer" || r.authPass != "s3cret" {
		t.Errorf("auth %s %q/%q, want PLAIN kalcifer/s3cret", r.authMech, r.authUser, r.authPass)
	}
	if !r.tlsAtAuth {
		t.Error("client authenticated before TLS was up")
	}
	if r.helo != "sender.example.com" {
		t.Errorf("EHLO name %q, want sender.example.com", r.helo)
	}

	msg := checkMessage(t, r.data, id1)
	if got := msg.Header.Get("Content-Type"); !strings.HasPrefix(got, "multipart/alternative;") {
		t.Fatalf("Content-Type %q, want multipart/alternative", got)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for i, want := range []struct{ typ, body string }{{"text/plain", textBody}, {"text/html", htmlBody}} {
		part, err := mr.NextRawPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		checkPart(t, part.Header.Get("Content-Type"), part.Header.Get("Content-Transfer-Encoding"), part, want.typ, want.body)
	}
	if _, err := mr.NextRawPart(); err != io.EOF {
		t.Errorf("after two parts: %v, want EOF", err)
	}
	if !bytes.Equal(msgs[0].data, msgs[1].data) {
		t.Error("a resend of the same delivery differs from the first send")
	}
}

// checkMessage parses data and checks the headers every message carries.
func checkMessage(t *testing.T, data []byte, id string) *mail.Message {
	t.Helper()
	for i, line := range strings.Split(string(data), "\r\n") {
		if len(line) > 78 {
			t.Errorf("line %d is %d characters long: %q", i, len(line), line)
		}
		if strings.ContainsAny(line, "\r\n") {
			t.Errorf("line %d has a bare line break: %q", i, line)
		}
	}
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("parse message: %v\n%s", err, data)
	}
	h := msg.Header
	dec := new(mime.WordDecoder)
	if got, err := dec.DecodeHeader(h.Get("Subject")); err != nil || got != subject {
		t.Errorf("Subject decodes to %q (%v), want %q", got, err, subject)
	}
	if raw := h.Get("Subject"); !strings.Contains(raw, "=?utf-8?") {
		t.Errorf("non-ASCII Subject not encoded: %q", raw)
	}
	if from, err := h.AddressList("From"); err != nil || len(from) != 1 || from[0].Name != "Kalcifer" || from[0].Address != "noreply@example.com" {
		t.Errorf("From %v (%v)", from, err)
	}
	if to, err := h.AddressList("To"); err != nil || len(to) != 1 || to[0].Name != "Jörg Müller" || to[0].Address != "joerg@example.org" {
		t.Errorf("To %v (%v)", to, err)
	}
	if rt, err := h.AddressList("Reply-To"); err != nil || len(rt) != 1 || rt[0].Name != "Support Team" || rt[0].Address != "support@example.com" {
		t.Errorf("Reply-To %v (%v)", rt, err)
	}
	if date, err := h.Date(); err != nil || !date.Equal(fixedNow) {
		t.Errorf("Date %v (%v), want %v", date, err, fixedNow)
	}
	if got := h.Get("Message-ID"); got != id {
		t.Errorf("Message-ID %q, Send returned %q", got, id)
	}
	if got := h.Get("MIME-Version"); got != "1.0" {
		t.Errorf("MIME-Version %q", got)
	}
	if got := h.Get("X-Kalcifer-Delivery-Id"); got != "dlv_123" {
		t.Errorf("X-Kalcifer-Delivery-Id %q", got)
	}
	return msg
}

// checkPart checks one body is UTF-8 quoted-printable of the given type
// and decodes to want.
func checkPart(t *testing.T, contentType, cte string, body io.Reader, typ, want string) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != typ || params["charset"] != "utf-8" {
		t.Errorf("Content-Type %q, want %s; charset=utf-8", contentType, typ)
	}
	if cte != "quoted-printable" {
		t.Errorf("%s Content-Transfer-Encoding %q", typ, cte)
	}
	got, err := io.ReadAll(quotedprintable.NewReader(body))
	if err != nil {
		t.Fatalf("decode %s: %v", typ, err)
	}
	if string(got) != want {
		t.Errorf("%s decodes to\n%q\nwant\n%q", typ, got, want)
	}
}

func TestSendSinglePart(t *testing.T) {
	cert := newCert(t)
	for _, tc := range []struct {
		name, text, html, typ, want string
	}{
		{"html only", "", htmlBody, "text/html", htmlBody},
		{"text only", textBody, "", "text/plain", textBody},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := &backend{user: "kalcifer", pass: "s3cret"}
			addr := startServer(t, be, cert, offerStartTLS)
			var dialed []string
			p := newProvider(t, baseConfig(), depsFor(addr, cert, &dialed))
			m := testMessage("k")
			m.Email.Text, m.Email.HTML = tc.text, tc.html
			id, err := p.Send(context.Background(), m)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			msgs := be.messages()
			if len(msgs) != 1 {
				t.Fatalf("server received %d messages", len(msgs))
			}
			msg := checkMessage(t, msgs[0].data, id)
			checkPart(t, msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body, tc.typ, tc.want)
		})
	}
}

func TestSendImplicitTLS(t *testing.T) {
	cert := newCert(t)
	be := &backend{user: "kalcifer", pass: "s3cret"}
	addr := startServer(t, be, cert, offerImplicit)
	var dialed []string
	cfg := baseConfig()
	cfg["tls"] = "implicit"
	p := newProvider(t, cfg, depsFor(addr, cert, &dialed))
	if _, err := p.Send(context.Background(), testMessage("k")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if len(dialed) != 1 || dialed[0] != "tcp mail.test:465" {
		t.Errorf("dialed %q, want tcp mail.test:465", dialed)
	}
	if msgs := be.messages(); len(msgs) != 1 || !msgs[0].tlsAtAuth {
		t.Fatalf("server received %+v, want one message authenticated over TLS", msgs)
	}
}

func TestSendLogin(t *testing.T) {
	cert := newCert(t)
	be := &backend{user: "kalcifer", pass: "s3cret", login: true}
	addr := startServer(t, be, cert, offerStartTLS)
	var dialed []string
	p := newProvider(t, baseConfig(), depsFor(addr, cert, &dialed))
	if _, err := p.Send(context.Background(), testMessage("k")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	msgs := be.messages()
	if len(msgs) != 1 || msgs[0].authMech != sasl.Login || msgs[0].authUser != "kalcifer" || msgs[0].authPass != "s3cret" {
		t.Fatalf("server received %+v, want LOGIN as kalcifer", msgs)
	}
}

func TestSendNoTLSLocalRelay(t *testing.T) {
	cert := newCert(t)
	be := &backend{}
	addr := startServer(t, be, cert, offerPlain)
	var dialed []string
	p := newProvider(t, map[string]any{"host": "relay.local", "port": 25, "tls": "none", "from": "noreply@example.com"},
		depsFor(addr, cert, &dialed))
	if _, err := p.Send(context.Background(), testMessage("k")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if msgs := be.messages(); len(msgs) != 1 || msgs[0].authUser != "" {
		t.Fatalf("server received %+v, want one message without auth", msgs)
	}
}

func TestSendErrors(t *testing.T) {
	cert := newCert(t)
	for _, tc := range []struct {
		name      string
		be        *backend
		mode      string
		password  string
		code      string
		retryable bool
		unsure    bool
		// sent says the server got as far as MAIL FROM.
		sent bool
	}{
		{name: "rcpt rejected", mode: offerStartTLS, be: &backend{rcptErr: &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}},
			code: "550", sent: true},
		{name: "rcpt deferred", mode: offerStartTLS, be: &backend{rcptErr: &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "try again later"}},
			code: "451", retryable: true, sent: true},
		{name: "bad password", mode: offerStartTLS, be: &backend{}, password: "wrong", code: "535"},
		{name: "no starttls", mode: offerPlain, be: &backend{}, code: "starttls_unavailable"},
		{name: "message rejected", mode: offerStartTLS, be: &backend{dataErr: &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 6, 0}, Message: "spam"}},
			code: "554", sent: true},
		{name: "message deferred", mode: offerStartTLS, be: &backend{dataErr: &gosmtp.SMTPError{Code: 452, EnhancedCode: gosmtp.EnhancedCode{4, 3, 1}, Message: "disk full"}},
			code: "452", retryable: true, sent: true},
		{name: "connection lost after data", mode: offerStartTLS, be: &backend{dropAfterData: true},
			retryable: true, unsure: true, sent: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.be.user, tc.be.pass = "kalcifer", "s3cret"
			addr := startServer(t, tc.be, cert, tc.mode)
			var dialed []string
			cfg := baseConfig()
			if tc.password != "" {
				cfg["password"] = tc.password
			}
			p := newProvider(t, cfg, depsFor(addr, cert, &dialed))
			_, err := p.Send(context.Background(), testMessage("k"))
			checkErr(t, err, tc.code, tc.retryable, tc.unsure)
			tc.be.mu.Lock()
			mails, auths := tc.be.mails, tc.be.auths
			tc.be.mu.Unlock()
			if (mails > 0) != tc.sent {
				t.Errorf("server saw %d MAIL FROM, want sent=%v", mails, tc.sent)
			}
			if tc.mode == offerPlain && auths > 0 {
				t.Error("credentials went to a server without TLS")
			}
		})
	}
}

func checkErr(t *testing.T, err error, code string, retryable, unsure bool) {
	t.Helper()
	providertest.CheckError(t, err, providertest.Want{Code: code, Retryable: retryable, Unsure: unsure})
}

func TestSendDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := baseConfig()
	cfg["host"], cfg["port"] = "127.0.0.1", port
	// No Dial in deps: the provider falls back to its own dialer.
	p := newProvider(t, cfg, providertest.DepsAt(nil, fixedNow))
	_, err = p.Send(context.Background(), testMessage("k"))
	checkErr(t, err, "dial", true, false)
}

func TestSendCanceledDuringData(t *testing.T) {
	cert := newCert(t)
	be := &backend{user: "kalcifer", pass: "s3cret", inData: make(chan struct{}), release: make(chan struct{})}
	addr := startServer(t, be, cert, offerStartTLS)
	defer close(be.release)
	var dialed []string
	p := newProvider(t, baseConfig(), depsFor(addr, cert, &dialed))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-be.inData
		cancel()
	}()
	_, err := p.Send(ctx, testMessage("k"))
	checkErr(t, err, "", true, true)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not name the cancellation", err)
	}
}

func TestSendBadMessage(t *testing.T) {
	p := newProvider(t, baseConfig(), channels.Deps{
		Dial: func(context.Context, string, string) (net.Conn, error) {
			t.Fatal("dialed for a message that cannot be sent")
			return nil, nil
		},
		Now: func() time.Time { return fixedNow },
	})
	for name, m := range map[string]channels.Message{
		"no email":   {DeliveryID: "d"},
		"bad to":     {Email: &channels.EmailMessage{To: "not an address", Text: "x"}},
		"bad from":   {Email: &channels.EmailMessage{From: "nope", To: "a@example.com", Text: "x"}},
		"no content": {Email: &channels.EmailMessage{To: "a@example.com"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := p.Send(context.Background(), m)
			checkErr(t, err, "invalid_message", false, false)
		})
	}
}

func TestNewValidates(t *testing.T) {
	providertest.CheckNew(t, New, channels.Deps{Now: time.Now}, []providertest.ConfigCase{
		{`{"from":"a@example.com"}`, "host is required"},
		{`{"host":"mail.test"}`, "from is required"},
		{`{"host":"mail.test","from":"nope"}`, "from must be"},
		{`{"host":"mail.test","from":"a@example.com","tls":"ssl"}`, "tls must be"},
		{`{"host":"mail.test","from":"a@example.com","port":70000}`, "port must be"},
		{`{"host":"mail.test","from":"a@example.com","username":"u"}`, "password is required"},
		{`{"host":"mail.test","from":"a@example.com","username":"u","password":"p","tls":"none"}`, "username needs tls"},
		{`{"host":"mail.test","from":"a@example.com","helo_name":"a b"}`, "helo_name"},
		{`{"host":"mail.test:25","from":"a@example.com"}`, "host must be"},
		{`{"host":"mail.test","from":"a@example.com","hots":"x"}`, "unknown field"},
		// The minimal configuration.
		{`{"host":"mail.test","from":"a@example.com"}`, ""},
	})
}

func TestHeaderFolding(t *testing.T) {
	var b bytes.Buffer
	header(&b, "Subject", "short")
	if b.String() != "Subject: short\r\n" {
		t.Errorf("short header %q", b.String())
	}
	b.Reset()
	value := strings.TrimSpace(strings.Repeat("word ", 40))
	header(&b, "Subject", value)
	msg, err := mail.ReadMessage(strings.NewReader(b.String() + "\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.Header.Get("Subject"); got != value {
		t.Errorf("folded header unfolds to %q, want %q", got, value)
	}
	for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\r\n"), "\r\n") {
		if len(line) > 78 {
			t.Errorf("line of %d characters: %q", len(line), line)
		}
	}
}

func FuzzBuild(f *testing.F) {
	f.Add("Grüße", "text\r\nline", "<p>html</p>", "k", "Name <a@example.com>")
	f.Add("a\r\nBcc: x@example.com", "", "x", "", "a@example.com")
	from, _ := mail.ParseAddress("Kalcifer <noreply@example.com>")
	f.Fuzz(func(t *testing.T, subj, text, html, key, to string) {
		m := channels.Message{Key: key, DeliveryID: key, Email: &channels.EmailMessage{To: to, Subject: subj, Text: text, HTML: html}}
		msg, err := build(m, from, fixedNow)
		if err != nil {
			return
		}
		parsed, err := mail.ReadMessage(bytes.NewReader(msg.data))
		if err != nil {
			t.Fatalf("built message does not parse: %v", err)
		}
		if len(parsed.Header["Bcc"]) > 0 || len(parsed.Header["Subject"]) != 1 {
			t.Fatalf("header injection: %v", parsed.Header)
		}
		if got := parsed.Header.Get("Message-ID"); got != msg.id {
			t.Fatalf("Message-ID %q, want %q", got, msg.id)
		}
	})
}

func TestSendUTF8AddressNeedsSMTPUTF8(t *testing.T) {
	cert := newCert(t)
	be := &backend{user: "kalcifer", pass: "s3cret"}
	addr := startServer(t, be, cert, offerStartTLS)
	var dialed []string
	p := newProvider(t, baseConfig(), depsFor(addr, cert, &dialed))
	m := testMessage("k")
	m.Email.To = "jörg@example.org"
	_, err := p.Send(context.Background(), m)
	checkErr(t, err, "smtputf8_unsupported", false, false)
	be.mu.Lock()
	defer be.mu.Unlock()
	if be.mails != 0 {
		t.Error("MAIL FROM sent to a server that cannot take the address")
	}
}
