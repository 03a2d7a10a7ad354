// Package smtp sends email through an SMTP submission server.
package smtp

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/netguard"
)

// TLS modes.
const (
	// TLSStartTLS upgrades a plain connection with STARTTLS and refuses a
	// server that does not offer it, so a stripped STARTTLS cannot downgrade
	// the session to clear text.
	TLSStartTLS = "starttls"
	// TLSImplicit speaks TLS from the first byte (SMTPS).
	TLSImplicit = "implicit"
	// TLSNone sends in clear text; only for relays on the local host or
	// network.
	TLSNone = "none"
)

// Kind is the SMTP provider. SMTP has no idempotency key: a resent message
// carries the same Message-ID, but servers do not drop it for that, so a
// send whose outcome is unknown is not sent again.
var Kind = channels.Kind{
	Name:       "smtp",
	Channels:   []string{channels.Email},
	Idempotent: false,
	Secrets:    []string{"password"},
	New:        New,
}

// Config is an SMTP account.
type Config struct {
	Host string `json:"host"`
	// Port defaults to 465 for implicit TLS and 587 otherwise.
	Port     int    `json:"port"`
	Username string `json:"username"`
	Password string `json:"password"`
	// From is the sender used when a message names none.
	From string `json:"from"`
	// TLS is starttls (the default), implicit or none.
	TLS string `json:"tls"`
	// HeloName is the name the client gives in EHLO ("localhost" when
	// empty). With STARTTLS it names the client in the greeting after the
	// upgrade; the one before it says "localhost".
	HeloName string `json:"helo_name"`
}

// Timeouts per SMTP command and for the server's answer to the message.
// RFC 5321 allows minutes, but a send must finish within the dispatcher's
// claim, and the context's deadline cuts them shorter still.
const (
	commandTimeout    = 30 * time.Second
	submissionTimeout = 60 * time.Second
	dialTimeout       = 30 * time.Second
)

type provider struct {
	cfg  Config
	from *mail.Address
	deps channels.Deps
}

// New builds an SMTP provider from its configuration.
func New(config json.RawMessage, deps channels.Deps) (channels.Provider, error) {
	var cfg Config
	if err := channels.DecodeConfig(config, &cfg); err != nil {
		return nil, err
	}
	cfg.Host = strings.TrimSpace(cfg.Host)
	if err := channels.Required("host", cfg.Host, "from", cfg.From); err != nil {
		return nil, err
	}
	if strings.ContainsAny(cfg.Host, " /:@\r\n") && net.ParseIP(cfg.Host) == nil {
		return nil, errors.New("host must be a host name or IP address")
	}
	switch cfg.TLS {
	case "":
		cfg.TLS = TLSStartTLS
	case TLSStartTLS, TLSImplicit, TLSNone:
	default:
		return nil, fmt.Errorf("tls must be %q, %q or %q", TLSStartTLS, TLSImplicit, TLSNone)
	}
	switch {
	case cfg.Port == 0 && cfg.TLS == TLSImplicit:
		cfg.Port = 465
	case cfg.Port == 0:
		cfg.Port = 587
	case cfg.Port < 0 || cfg.Port > 65535:
		return nil, errors.New("port must be between 1 and 65535")
	}
	if cfg.Username != "" && cfg.Password == "" {
		return nil, errors.New("password is required with username")
	}
	if cfg.Username != "" && cfg.TLS == TLSNone {
		return nil, errors.New("username needs tls starttls or implicit: tls none would send the password in clear text")
	}
	if strings.ContainsAny(cfg.HeloName, " \t\r\n") {
		return nil, errors.New("helo_name must be a single host name")
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("from must be an email address: %w", err)
	}
	if err := deps.Require("smtp", false); err != nil {
		return nil, err
	}
	return &provider{cfg: cfg, from: from, deps: deps}, nil
}

// Send submits m over SMTP (RFC 5321, with STARTTLS per RFC 3207 and AUTH per
// RFC 4954) and returns its Message-ID.
// Library: https://pkg.go.dev/github.com/emersion/go-smtp
func (p *provider) Send(ctx context.Context, m channels.Message) (string, error) {
	e := m.Email
	if e == nil {
		return "", channels.Permanent("invalid_message", fmt.Errorf("delivery %s carries no email", m.DeliveryID))
	}
	msg, err := build(m, p.from, p.deps.Now())
	if err != nil {
		return "", channels.Permanent("invalid_message", err)
	}

	c, err := p.connect(ctx)
	if err != nil {
		return "", withContext(ctx, err)
	}
	defer c.Close()

	if err := p.auth(c); err != nil {
		return "", withContext(ctx, err)
	}

	var opts *gosmtp.MailOptions
	if !isASCII(msg.envelopeFrom) || !isASCII(msg.envelopeTo) {
		opts = &gosmtp.MailOptions{UTF8: true}
		if ok, _ := c.Extension("SMTPUTF8"); !ok {
			return "", channels.Permanent("smtputf8_unsupported",
				fmt.Errorf("server cannot take the non-ASCII address %q or %q: it lacks SMTPUTF8", msg.envelopeFrom, msg.envelopeTo))
		}
	}
	if err := c.Mail(msg.envelopeFrom, opts); err != nil {
		return "", withContext(ctx, classify("MAIL FROM", err, false))
	}
	if err := c.Rcpt(msg.envelopeTo, nil); err != nil {
		return "", withContext(ctx, classify("RCPT TO", err, false))
	}
	w, err := c.Data()
	if err != nil {
		return "", withContext(ctx, classify("DATA", err, false))
	}
	// From here the server may have the message: a broken connection
	// leaves unknown whether it queued it.
	if _, err := w.Write(msg.data); err != nil {
		return "", withContext(ctx, classify("write message", err, true))
	}
	if err := w.Close(); err != nil {
		return "", withContext(ctx, classify("end of message", err, true))
	}
	// The server took the message; a failed QUIT changes nothing.
	_ = c.Quit()
	return msg.id, nil
}

// client is an SMTP session whose connection closes when its context ends.
type client struct {
	*gosmtp.Client
	stop func() bool
}

func (c *client) Close() error {
	c.stop()
	return c.Client.Close()
}

// connect dials the server, secures the session as configured and greets.
func (p *provider) connect(ctx context.Context) (*client, error) {
	addr := net.JoinHostPort(p.cfg.Host, strconv.Itoa(p.cfg.Port))
	dial := p.deps.Dial
	if dial == nil {
		d := &net.Dialer{Timeout: dialTimeout}
		dial = d.DialContext
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		// Nothing reached the server.
		if errors.Is(err, netguard.ErrRefused) {
			return nil, channels.Permanent("refused", fmt.Errorf("connect to %s: %w", addr, err))
		}
		return nil, channels.Retryable("dial", 0, fmt.Errorf("connect to %s: %w", addr, err))
	}
	// go-smtp takes no context: closing the connection when ctx ends is
	// what interrupts a command in flight.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	fail := func(err error) (*client, error) {
		stop()
		conn.Close()
		return nil, err
	}
	tlsConfig := &tls.Config{ServerName: p.cfg.Host, RootCAs: p.deps.RootCAs, MinVersion: tls.VersionTLS12}

	var c *gosmtp.Client
	switch p.cfg.TLS {
	case TLSImplicit:
		tc := tls.Client(conn, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(channels.Retryable("tls", 0, fmt.Errorf("TLS handshake with %s: %w", addr, err)))
		}
		c = gosmtp.NewClient(tc)
	case TLSStartTLS:
		c, err = gosmtp.NewClientStartTLS(conn, tlsConfig)
		if err != nil {
			if err.Error() == errNoStartTLS {
				// A server that does not offer STARTTLS is misconfigured or
				// someone on the path stripped it: neither is worth sending
				// the credentials and message in clear text, nor retrying.
				return fail(channels.Permanent("starttls_unavailable",
					fmt.Errorf("%s does not offer STARTTLS, which tls %q requires", addr, TLSStartTLS)))
			}
			return fail(classify("STARTTLS with "+addr, err, false))
		}
	default:
		c = gosmtp.NewClient(conn)
	}
	c.CommandTimeout = commandTimeout
	c.SubmissionTimeout = submissionTimeout
	// Greeting now rather than in the first command surfaces a failed
	// STARTTLS handshake here, instead of as a missing extension.
	helo := p.cfg.HeloName
	if helo == "" {
		helo = "localhost"
	}
	if err := c.Hello(helo); err != nil {
		return fail(classify("EHLO", err, false))
	}
	return &client{Client: c, stop: stop}, nil
}

// errNoStartTLS is go-smtp's error for a server that does not offer
// STARTTLS; it exports no value to compare with.
const errNoStartTLS = "smtp: server doesn't support STARTTLS"

// auth logs in with PLAIN, or LOGIN where the server offers only that.
func (p *provider) auth(c *client) error {
	if p.cfg.Username == "" {
		return nil
	}
	if _, ok := c.TLSConnectionState(); !ok {
		// New refuses credentials without TLS; this guards that promise.
		return channels.Permanent("tls_required", errors.New("refusing to send credentials over a connection without TLS"))
	}
	var a sasl.Client
	switch {
	case c.SupportsAuth(sasl.Plain):
		a = sasl.NewPlainClient("", p.cfg.Username, p.cfg.Password)
	case c.SupportsAuth(sasl.Login):
		a = sasl.NewLoginClient(p.cfg.Username, p.cfg.Password)
	default:
		_, mechs := c.Extension("AUTH")
		return channels.Permanent("auth_unsupported", fmt.Errorf("server offers neither AUTH PLAIN nor LOGIN (offers %q)", mechs))
	}
	if err := c.Auth(a); err != nil {
		return classify("AUTH", err, false)
	}
	return nil
}

// classify reads an SMTP failure: a reply of the 4xx class may pass later and
// one of the 5xx class will not (RFC 5321 §4.2.1). Any other failure is the
// connection's, and leaves the message's fate unknown once its data was
// being sent.
func classify(stage string, err error, dataStarted bool) error {
	err = fmt.Errorf("%s: %w", stage, err)
	var se *gosmtp.SMTPError
	if errors.As(err, &se) {
		code := strconv.Itoa(se.Code)
		switch se.Code / 100 {
		case 4:
			return channels.Retryable(code, 0, err)
		case 5:
			return channels.Permanent(code, err)
		}
	}
	return &channels.Error{Retryable: true, Unsure: dataStarted, Err: err}
}

// withContext names the context's end as the cause of a failure it caused
// by closing the connection.
func withContext(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return err
	}
	var ce *channels.Error
	if errors.As(err, &ce) && ce.Retryable {
		ce.Err = fmt.Errorf("%w (%w)", ce.Err, context.Cause(ctx))
	}
	return err
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
